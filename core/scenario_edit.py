"""Turn the Scenario page's widget values into a Scenario and back (no Streamlit here).

The page holds a *form*: plain values (numbers, strings, percent shares, lists of table rows) that map one to one
onto widgets. ``form_from_scenario`` fills it from a Scenario; ``scenario_from_form`` builds and validates the
Scenario, normalising percent shares (or saying why they cannot be), and returns every problem at once with
the form section it belongs to, so the page can show it next to the widget that caused it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from core.capacity.plan import FACILITY_FIELDS, default_plan_dict
from core.scenario import SPECIAL_EVENT_TYPES, Scenario, ScenarioError
from core.schema import CATEGORIES, MECHANISMS, TRIAGES, WARFARE_TYPES

CUSTOM_TEMPO = "custom anchors"
SAME_TEMPO = "same as battle injuries"
OVERRIDE_KEYS = CATEGORIES + tuple(m for m in MECHANISMS if m != "none")

# form fields held by simple widgets (the page keys them "sc_<field>")
SIMPLE_FIELDS = ("name", "description", "patients", "days", "start_date", "start_hour", "follow_up_h", "seed",
                 "intensity", "tempo", "tempo_anchors", "dnbi_tempo", "evacuation_posture", "mascal_threshold",
                 "allow_partners", "care_quality", "force_mode",
                 *(f"cat_{c}" for c in CATEGORIES), *(f"wt_{w}" for w in WARFARE_TYPES))
TABLES = ("fronts", "nations", "special_events", "environment", "triage_override")
TABLE_COLUMNS = {
    "fronts": ("name", "casualty_share", "force_size", "utc_offset_h"),
    "nations": ("front", "nation", "share"),
    "special_events": ("type", "day", "hour", "size", "size_share", "front", "warfare_type"),
    "environment": ("condition", "fronts", "first_day", "last_day"),
    "triage_override": ("applies_to", *TRIAGES),
}
SECTIONS = {  # the first part of a validation problem -> the form section showing it
    "name": "basics", "description": "basics", "patients": "basics", "days": "basics", "start": "basics",
    "follow_up_h": "basics", "seed": "basics", "category_mix": "category", "warfare_types": "warfare",
    "intensity": "tempo", "tempo": "tempo", "dnbi_tempo": "tempo", "fronts": "fronts", "nations": "fronts",
    "special_events": "events", "environment": "environment", "evacuation_posture": "care",
    "mascal_threshold": "care", "allow_partners": "care", "care_quality": "care", "triage_override": "care",
    "medical_plan": "plan",
}
# the medical plan's fields, grouped as the page shows them
PLAN_FRONT_FIELDS = ("r1_teams", "ground_ambulances", "ambulance_litters", "helicopters", "helicopter_litters")
PLAN_FACILITY_KINDS = ("r2_basic", "r2_enhanced")
STRATEGIC_FIELDS = ("interval_h", "seats")
# field names in the words a planner reads (validation messages, labels)
WORDS = {
    "name": "Name", "description": "Description", "patients": "Patients", "days": "Days",
    "follow_up_h": "Follow-up (hours)", "seed": "Seed", "start": "Start", "start_hour": "Start hour (UTC)",
    "category_mix": "Casualty mix", "warfare_types": "Warfare types", "intensity": "Intensity", "tempo": "Tempo",
    "dnbi_tempo": "Tempo (disease and non-battle)", "evacuation_posture": "Evacuation posture",
    "mascal_threshold": "MASCAL threshold", "allow_partners": "allow partner nations", "care_quality": "Care quality",
    "triage_override": "Triage override", "special_events": "Special event", "environment": "Environment row",
    "fronts": "fronts", "nationality_mix": "nations", "casualty_share": "casualty share", "force_size": "force size",
    "utc_offset_h": "UTC offset", "warfare_type": "warfare type", "size_share": "size share",
    "first_day": "first day", "last_day": "last day", "medical_plan": "Medical plan",
    "r1_teams": "Role 1 treatment teams", "r2_basic": "Role 2 Basic", "r2_enhanced": "Role 2 Enhanced",
    "r3": "Role 3", "strategic_evacuation": "strategic evacuation", "count": "number of facilities",
    "operating_tables": "operating tables", "resuscitation_beds": "resuscitation beds", "icu_beds": "ICU beds",
    "holding_beds": "holding beds", "surgical_teams_day": "surgical teams by day",
    "surgical_teams_night": "surgical teams by night", "ground_ambulances": "ground ambulances",
    "ambulance_litters": "litters per ambulance", "helicopters": "helicopters",
    "helicopter_litters": "litters per helicopter", "interval_h": "hours between sorties", "seats": "seats per sortie",
}
CATEGORY_WORDS = {"BI": "battle injury", "NBI": "non-battle injury", "DIS": "disease", "BSI": "battle stress"}


@dataclass
class Edit:
    """The outcome of turning a form into a scenario."""

    scenario: Scenario | None
    problems: dict[str, list[str]] = field(default_factory=dict)  # section -> one-line problems
    notes: dict[str, list[str]] = field(default_factory=dict)     # section -> what was normalised and how

    @property
    def error(self) -> str | None:
        """All problems as one line (None when the scenario is valid)."""
        lines = [p for ps in self.problems.values() for p in ps]
        return "; ".join(lines) if lines else None

    def add(self, kind: str, section: str, text: str) -> None:
        getattr(self, kind).setdefault(section, []).append(text)


def section_of(problem: str, front_names: list[str] = ()) -> str:
    """The form section a validation problem belongs to; a medical plan problem goes to the part of the plan
    that shows the field ("plan.<front>.<r2_basic|r2_enhanced|front>", "plan.r3", "plan.strategic", "plan")."""
    if problem.startswith("medical_plan"):
        return _plan_section(problem, front_names)
    head = problem.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0].strip()
    if head.startswith("unknown field"):
        return "basics"
    return SECTIONS.get(head, "basics")


def _plan_section(problem: str, front_names) -> str:
    path = problem.split(": ", 1)[0]
    for name in sorted(front_names, key=len, reverse=True):  # front names may hold dots
        prefix = f"medical_plan.fronts.{name}"
        if path == prefix or path.startswith(prefix + "."):
            rest = path[len(prefix) + 1:]
            kind = rest.split(".", 1)[0]
            return f"plan.{name}.{kind if kind in PLAN_FACILITY_KINDS else 'front'}"
    if path.startswith("medical_plan.r3"):
        return "plan.r3"
    if path.startswith("medical_plan.strategic_evacuation"):
        return "plan.strategic"
    return "plan"


_SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?:\.[a-z_]+)*\b")
PHRASES = {"allow_partners: true": "'Allow partner nations' switched on"}


def _words(token: str) -> str:
    """A field name (or a dotted path of them) in words."""
    parts = token.split(".")
    if len(parts) == 2 and parts[1] == "count":
        return f"number of {_words(parts[0])} facilities"
    return " ".join(WORDS.get(t, t.replace("_", " ")) for t in parts)


def _explain(text: str) -> str:
    for phrase, words in PHRASES.items():
        text = text.replace(phrase, words)
    return _SNAKE.sub(lambda m: _words(m.group(0)), text)


def plain_problem(problem: str, front_names: list[str] = ()) -> str:
    """A validation problem in the words a planner reads: the field path ("special_events[0].day",
    "medical_plan.fronts.North.r2_enhanced.operating_tables") as words ("Special event 1, day", "Medical plan,
    North, Role 2 Enhanced: operating tables"), and snake_case names in the explanation as words."""
    path, sep, rest = problem.partition(": ")
    is_path = path.startswith("medical_plan.fronts.") or re.fullmatch(r"[a-z_0-9.\[\]]+", path)
    if not sep or not is_path:  # already in words ("Nations of front 'North': ...")
        return _explain(problem)
    parts: list[str] = []
    if path.startswith("medical_plan.fronts."):
        tail = path[len("medical_plan.fronts."):]
        name = next((n for n in sorted(front_names, key=len, reverse=True)
                     if tail == n or tail.startswith(n + ".")), tail.split(".", 1)[0])
        parts = ["Medical plan", name] + [_words(t) for t in tail[len(name) + 1:].split(".") if t]
    else:
        for token in path.split("."):
            m = re.fullmatch(r"([a-z_]+)\[(\d+)\]", token)
            if m and m.group(1) == "fronts":
                i = int(m.group(2))
                parts.append(f"Front {front_names[i] if i < len(front_names) else i + 1}")
            else:
                parts.append(f"{_words(m.group(1))} {int(m.group(2)) + 1}" if m else _words(token))
    head = ", ".join(parts)
    head = head[:1].upper() + head[1:]
    return f"{head}: {_explain(rest)}"


# --- scenario -> form --------------------------------------------------------------------------------------

def _pct(x: float) -> float:
    return x * 100


def form_from_scenario(sc: Scenario) -> dict[str, Any]:
    """Widget values for a scenario: shares as percent, tables as lists of row dicts (TABLE_COLUMNS)."""
    tempo_custom = isinstance(sc.tempo, tuple)
    dnbi = sc.dnbi_tempo
    form: dict[str, Any] = {
        "name": sc.name, "description": sc.description, "patients": sc.patients, "days": sc.days,
        "start_date": sc.start.date(), "start_hour": sc.start.hour, "follow_up_h": sc.follow_up_h, "seed": sc.seed,
        "intensity": sc.intensity, "tempo": CUSTOM_TEMPO if tempo_custom else sc.tempo,
        "tempo_anchors": ", ".join(f"{v:g}" for v in sc.tempo) if tempo_custom else "",
        "dnbi_tempo": SAME_TEMPO if dnbi is None else CUSTOM_TEMPO if isinstance(dnbi, tuple) else dnbi,
        "evacuation_posture": sc.evacuation_posture, "mascal_threshold": sc.mascal_threshold,
        "allow_partners": sc.allow_partners, "care_quality": sc.care_quality, "force_mode": False,
        **{f"cat_{c}": _pct(sc.category_mix.get(c, 0.0)) for c in CATEGORIES},
        # relative weights, the largest shown as 1
        **{f"wt_{w}": sc.warfare_types.get(w, 0.0) / max(sc.warfare_types.values()) for w in WARFARE_TYPES},
        # what the widgets do not show is kept as it was
        "dnbi_anchors": list(dnbi) if isinstance(dnbi, tuple) else None,
        "front_warfare": {f.name: dict(f.warfare_types) for f in sc.fronts if f.warfare_types},
        # None: no plan (unlimited care); else the scenario's medical_plan object
        "medical_plan": None if sc.medical_plan is None else sc.medical_plan.to_dict(),
    }
    form["fronts"] = [{"name": f.name, "casualty_share": _pct(f.casualty_share), "force_size": f.force_size,
                       "utc_offset_h": f.utc_offset_h} for f in sc.fronts]
    form["nations"] = [{"front": f.name, "nation": code, "share": _pct(share)}
                       for f in sc.fronts for code, share in f.nationality_mix.items()]
    form["special_events"] = [{"type": e.type, "day": e.day, "hour": e.hour, "size": e.size,
                               "size_share": None if e.size_share is None else _pct(e.size_share),
                               "front": e.front, "warfare_type": e.warfare_type} for e in sc.special_events]
    form["environment"] = [{"condition": e.condition,
                            "fronts": e.fronts if isinstance(e.fronts, str) else ", ".join(e.fronts),
                            "first_day": None if e.days == "all" else e.days[0],
                            "last_day": None if e.days == "all" else e.days[1]} for e in sc.environment]
    form["triage_override"] = [{"applies_to": key, **{t: _pct(row.get(t, 0.0)) for t in TRIAGES}}
                               for key, row in sc.triage_override.items()]
    return form


# --- form -> scenario --------------------------------------------------------------------------------------

def _num(value: Any) -> float | None:
    """A number from a widget or table cell; None for empty cells (None, NaN, '')."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _int(value: Any) -> int | None:
    x = _num(value)
    return None if x is None else int(round(x))


def _blank(row: dict) -> bool:
    return all(v is None or v == "" or (isinstance(v, float) and math.isnan(v)) for v in row.values())


def normalise_shares(shares: dict[str, Any], what: str,
                     names: dict[str, str] | None = None) -> tuple[dict[str, float] | None, str | None, str | None]:
    """Percent shares -> fractions summing to 1. Returns (fractions, note, problem): the note says how shares
    that did not sum to 100 % were scaled; the problem says why they cannot be (negative, all zero). ``what``
    names the shares for a reader ("Casualty mix"); ``names``: how to call each key in the note."""
    names = names or {}
    values = {k: _num(v) or 0.0 for k, v in shares.items()}
    negative = [f"{names.get(k, k)} {v:g} %" for k, v in values.items() if v < 0]
    if negative:
        return None, None, f"{what}: {', '.join(negative)} is negative (shares are 0 % or more)"
    total = sum(values.values())
    if total <= 0:
        return None, None, (f"{what}: every share is 0 %, so they cannot be scaled to 100 % "
                            "(give at least one a positive share)")
    # shares that add up to 100 % are taken as they are (dividing by a total of 99.999... would change the
    # scenario's canonical form, and so its sha256, on a mere round trip through the form)
    fractions = {k: v / (100 if abs(total - 100) <= 1e-6 else total) for k, v in values.items()}
    note = None
    if abs(total - 100) > 0.01:
        scaled = ", ".join(f"{names.get(k, k)} {v * 100:.1f} %" for k, v in fractions.items() if v > 0)
        note = f"{what} adds up to {total:,.4g} %, scaled to 100 % ({scaled})"
    return fractions, note, None


def _tempo(choice: str, anchors: str, what: str, edit: Edit) -> Any:
    if choice != CUSTOM_TEMPO:
        return choice
    parts = [p for p in str(anchors or "").replace(";", ",").split(",") if p.strip()]
    values = [_num(p.strip()) for p in parts]
    if len(values) < 2 or any(v is None or v <= 0 for v in values):
        edit.add("problems", "tempo", f"{WORDS.get(what, what)}: {anchors!r} is not allowed (at least 2 positive numbers separated "
                                      "by commas, e.g. 1, 2, 4, 2: relative casualties from the first to the "
                                      "last day)")
        return "sustained"
    return values


def scenario_from_form(form: dict[str, Any]) -> Edit:
    """Build and validate the scenario the form describes; every problem is reported at once, by section."""
    edit = Edit(scenario=None)
    data: dict[str, Any] = {}
    for key in ("name", "description", "patients", "days", "follow_up_h", "seed", "intensity",
                "evacuation_posture", "mascal_threshold", "allow_partners", "care_quality"):
        data[key] = form.get(key)
    for key in ("patients", "days", "follow_up_h", "seed", "mascal_threshold"):
        data[key] = _int(data[key]) if _num(data[key]) is not None else data[key]
    day = form.get("start_date")
    day = day.date() if isinstance(day, datetime) else day
    hour = _int(form.get("start_hour"))
    if hour is None or not 0 <= hour <= 23:
        edit.add("problems", "basics", f"Start hour (UTC): {form.get('start_hour')!r} is not allowed (a whole number "
                                       "from 0 to 23)" if hour is None else
                 f"Start hour (UTC): {hour:,} is not allowed (a whole number from 0 to 23)")
        hour = 0
    data["start"] = (f"{day:%Y-%m-%d}T{hour:02d}:00:00Z" if isinstance(day, date) else day)

    mix, note, problem = normalise_shares({c: form.get(f"cat_{c}") for c in CATEGORIES}, "Casualty mix",
                                          CATEGORY_WORDS)
    data["category_mix"] = mix if mix is not None else {c: 0.25 for c in CATEGORIES}
    for kind, text in (("notes", note), ("problems", problem)):
        if text:
            edit.add(kind, "category", text)
    weights = {w: _num(form.get(f"wt_{w}")) or 0.0 for w in WARFARE_TYPES}
    if not any(v > 0 for v in weights.values()):
        edit.add("problems", "warfare", "Warfare types: every weight is 0 (give at least one warfare type a weight)")
        weights = {"conventional": 1.0}
    data["warfare_types"] = {w: v for w, v in weights.items() if v > 0}

    data["tempo"] = _tempo(form.get("tempo", "sustained"), form.get("tempo_anchors", ""), "tempo", edit)
    dnbi = form.get("dnbi_tempo", SAME_TEMPO)
    if dnbi == SAME_TEMPO:
        data["dnbi_tempo"] = None
    elif dnbi == CUSTOM_TEMPO:
        data["dnbi_tempo"] = form.get("dnbi_anchors") or None
    else:
        data["dnbi_tempo"] = dnbi

    data["fronts"] = _fronts(form, edit)
    data["special_events"] = _events(form.get("special_events") or [], edit)
    data["environment"] = _environment(form.get("environment") or [], edit)
    data["triage_override"] = _overrides(form.get("triage_override") or [], edit)
    data["medical_plan"] = form.get("medical_plan")

    names = [f["name"] for f in data["fronts"]]
    try:
        scenario = Scenario.from_dict(data)
        if form.get("force_mode"):
            scenario = scenario.from_force_size()
    except ScenarioError as exc:
        said = {p for ps in edit.problems.values() for p in ps}
        for p in exc.problems:
            if _said_already(p, data["fronts"], edit):
                continue
            text = plain_problem(p, names)
            if text not in said:
                edit.add("problems", section_of(p, names), text)
        return edit
    if edit.problems:
        return edit
    edit.scenario = scenario
    return edit


def _said_already(problem: str, fronts: list[dict], edit: Edit) -> bool:
    """A front without usable nations is reported once, by the form (not again as an empty nationality mix)."""
    m = re.match(r"fronts\[(\d+)\]\.nationality_mix: \{\} ", problem)
    return bool(m) and int(m.group(1)) < len(fronts) and any(
        p.startswith("Nations of front") for p in edit.problems.get("fronts", []))


# --- the medical plan ---------------------------------------------------------------------------------------

def plan_for(front_names: list[str], plan: dict | None = None) -> dict:
    """A whole medical plan object for these fronts: what ``plan`` gives, the brigade laydown for the rest
    (a front the plan does not know, a field it leaves out)."""
    base = default_plan_dict(front_names)
    plan = plan or {}
    given = plan.get("fronts") or {}
    out = {"fronts": {}, "r3": {**base["r3"], **(plan.get("r3") or {})},
           "strategic_evacuation": {**base["strategic_evacuation"], **(plan.get("strategic_evacuation") or {})}}
    for name in front_names:
        mine = given.get(name) or {}
        front = {**base["fronts"][name], **{k: v for k, v in mine.items() if k not in PLAN_FACILITY_KINDS}}
        for kind in PLAN_FACILITY_KINDS:
            front[kind] = {**base["fronts"][name][kind], **(mine.get(kind) or {})}
        out["fronts"][name] = front
    return out


def plan_value(plan: dict, front: str | None, kind: str | None, name: str):
    """One number of a plan object: a front's field (kind None), a front's facility field, or a theatre field
    (front None, kind "r3" or "strategic_evacuation")."""
    where = plan["fronts"][front] if front is not None else plan
    return where[name] if kind is None else where[kind][name]


def set_plan_value(plan: dict, front: str | None, kind: str | None, name: str, value) -> None:
    where = plan["fronts"][front] if front is not None else plan
    if kind is None:
        where[name] = value
    else:
        where[kind][name] = value


def plan_fields(front_names: list[str]) -> list[tuple[str | None, str | None, str]]:
    """Every number of a plan for these fronts, as (front, kind, field)."""
    out = []
    for name in front_names:
        out += [(name, None, f) for f in PLAN_FRONT_FIELDS]
        out += [(name, kind, f) for kind in PLAN_FACILITY_KINDS for f in FACILITY_FIELDS]
    out += [(None, "r3", f) for f in FACILITY_FIELDS]
    out += [(None, "strategic_evacuation", f) for f in STRATEGIC_FIELDS]
    return out


def _fronts(form: dict, edit: Edit) -> list[dict]:
    rows = [r for r in form.get("fronts") or [] if not _blank(r)]
    nations = [r for r in form.get("nations") or [] if not _blank(r)]
    if not rows:
        edit.add("problems", "fronts", "Fronts: there is no front (add at least one row with a name, a casualty "
                                       "share and nations)")
        return []
    names = [str(r.get("name") or "").strip() for r in rows]
    shares, note, problem = normalise_shares({n or f"row {i + 1}": r.get("casualty_share")
                                              for i, (n, r) in enumerate(zip(names, rows))}, "Front casualty shares")
    if note:
        edit.add("notes", "fronts", note)
    if problem:
        edit.add("problems", "fronts", problem)
    orphans = sorted({str(r.get("front")) for r in nations if r.get("front") not in names})
    if orphans:
        edit.add("problems", "fronts", f"Nations: front {', '.join(orphans)} is not in the fronts table "
                                       f"(fronts are {', '.join(n for n in names if n)})")
    out = []
    for i, (name, row) in enumerate(zip(names, rows)):
        mix_rows = [r for r in nations if r.get("front") == name and name]
        codes = [str(r.get("nation") or "").strip().upper() for r in mix_rows]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            edit.add("problems", "fronts", f"Nations of front {name!r}: {', '.join(dupes)} appears more than once "
                                           "(one row per nation)")
        mix, mix_note, mix_problem = normalise_shares({c: r.get("share") for c, r in zip(codes, mix_rows)},
                                                      f"Nations of front {name!r}")
        if not mix_rows:
            mix_problem = f"Nations of front {name or i + 1!r}: none given (add rows with this front and a nation)"
        if mix_note:
            edit.add("notes", "fronts", mix_note)
        if mix_problem:
            edit.add("problems", "fronts", mix_problem)
        front = {"name": name, "casualty_share": (shares or {}).get(name or f"row {i + 1}") or 1.0,
                 "nationality_mix": mix or {}, "utc_offset_h": _int(row.get("utc_offset_h")) or 0}
        if _num(row.get("force_size")) is not None:
            front["force_size"] = _int(row.get("force_size"))
        if name in (form.get("front_warfare") or {}):
            front["warfare_types"] = form["front_warfare"][name]
        out.append(front)
    return out


def _events(rows: list[dict], edit: Edit) -> list[dict]:
    out = []
    for i, r in enumerate(r for r in rows if not _blank(r)):
        e: dict[str, Any] = {"type": r.get("type")}
        for key in ("day", "hour", "size"):
            if _num(r.get(key)) is not None:
                e[key] = _int(r.get(key))
        if _num(r.get("size_share")) is not None:
            e["size_share"] = _num(r.get("size_share")) / 100
        for key in ("front", "warfare_type"):
            if r.get(key):
                e[key] = r.get(key)
        if e["type"] not in SPECIAL_EVENT_TYPES:
            edit.add("problems", "events", f"Special event {i + 1}, type: {e['type']!r} is not allowed "
                                           f"(one of {', '.join(SPECIAL_EVENT_TYPES)})")
        out.append(e)
    return out


def _environment(rows: list[dict], edit: Edit) -> list[dict]:
    out = []
    for r in (r for r in rows if not _blank(r)):
        fronts = str(r.get("fronts") or "all").strip()
        e: dict[str, Any] = {"condition": r.get("condition"),
                             "fronts": "all" if fronts.lower() == "all" else
                             [f.strip() for f in fronts.split(",") if f.strip()]}
        first, last = _int(r.get("first_day")), _int(r.get("last_day"))
        if first is not None or last is not None:
            e["days"] = [first if first is not None else 1, last if last is not None else first]
        out.append(e)
    return out


def _overrides(rows: list[dict], edit: Edit) -> dict:
    out = {}
    for r in (r for r in rows if not _blank(r)):
        key = r.get("applies_to")
        if key not in OVERRIDE_KEYS:
            edit.add("problems", "care", f"Triage override: {key!r} is not allowed (a category "
                                         f"{', '.join(CATEGORIES)} or a mechanism)")
            continue
        shares, note, problem = normalise_shares({t: r.get(t) for t in TRIAGES},
                                                 f"Triage override for {CATEGORY_WORDS.get(key, key.replace('_', ' '))}")
        if note:
            edit.add("notes", "care", note)
        if problem:
            edit.add("problems", "care", problem)
            continue
        out[key] = shares
    return out
