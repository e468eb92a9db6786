"""Scenario: the validated, immutable description of one generation (docs/casualty-model.md#the-scenario).

``load_scenario(name_or_path)`` or ``Scenario.from_dict(data)`` validate everything once, fill in the defaults,
normalise share tables, and raise :class:`ScenarioError` with messages that name the field, the bad value and
what is allowed. The validated scenario is what a run stores in its manifest and hashes (canonical JSON).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from core import reference
from core.capacity.plan import MedicalPlan, parse as parse_plan
from core.schema import CATEGORIES, TRIAGES, WARFARE_TYPES

INTENSITIES = ("low", "medium", "high", "extreme")
TEMPOS = ("sustained", "escalating", "surge", "declining", "intermittent")
POSTURES = ("doctrinal", "realistic", "contested")
SPECIAL_EVENT_TYPES = ("major_offensive", "ambush", "mass_casualty")
ENVIRONMENT_CONDITIONS = ("rain", "fog", "storm", "extreme_heat", "extreme_cold", "dust_storm",
                          "night_operations", "mountainous_terrain", "urban_debris")
MAX_PATIENTS = 100_000_000
MAX_DAYS = 180
MAX_FRONTS = 20
MAX_SEED = 2**63 - 1
MAX_NAME_LEN = 200
MAX_DESCRIPTION_LEN = 2000
MAX_SPECIAL_EVENTS = 500
MAX_ENVIRONMENT = 200
MAX_TEMPO_ANCHORS = 1000
MAX_ANCHOR = 1e6            # a tempo anchor is a relative weight: 1e6 to 1 is already more than any scenario needs
MIN_FRONT_SHARE = 1e-6      # of all casualties: a smaller front would get no patient and no arrivals to draw from
# times stay where every format and library reads them (a run's times end at start + 180 days + 60 days' follow-up)
EARLIEST_START = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST_START = datetime(2200, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
MAX_DEPTH = 16              # a scenario nests 6 levels at most (medical_plan.fronts.<front>.r2_basic.count)
MAX_FILE_BYTES = 16 << 20   # a scenario file is a few KB; anything this large is not one
MAX_SHOWN_PROBLEMS = 10     # an error message lists this many problems, then counts the rest
MAX_PROBLEM_LEN = 300       # and shows each in at most this many characters


class ScenarioError(ValueError):
    """One or more problems with a scenario; ``str()`` is a single line of bounded length listing the first
    ``MAX_SHOWN_PROBLEMS`` (each cut to ``MAX_PROBLEM_LEN`` characters) and counting the rest; ``problems`` has
    them all."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = [_one_line(p) for p in problems[:MAX_SHOWN_PROBLEMS]]
        if len(problems) > MAX_SHOWN_PROBLEMS:
            shown.append(f"and {len(problems) - MAX_SHOWN_PROBLEMS:,} more problem(s)")
        super().__init__("; ".join(shown))


def _one_line(text: str) -> str:
    """A problem as printable one-line text of bounded length (no newline, no lone surrogate)."""
    text = " ".join(str(text).split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_PROBLEM_LEN else text[:MAX_PROBLEM_LEN - 3] + "..."


@dataclass(frozen=True)
class Front:
    name: str
    casualty_share: float
    nationality_mix: dict[str, float]
    warfare_types: dict[str, float] | None = None
    force_size: int | None = None
    utc_offset_h: int = 0


@dataclass(frozen=True)
class SpecialEvent:
    type: str
    day: int | None = None          # 1-based day of the scenario; None = drawn from the seed
    hour: int | None = None         # local hour 0..23; None = drawn from the type's usual hours
    size: int | None = None         # patients; None = the type's default
    size_share: float | None = None  # alternative to size: share of all patients
    front: str | None = None        # None = the front with the largest casualty share
    warfare_type: str | None = None  # None = the type's usual mix or the front's dominant type


@dataclass(frozen=True)
class Environment:
    condition: str
    fronts: str | tuple[str, ...] = "all"
    days: str | tuple[int, int] = "all"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    patients: int
    days: int
    start: datetime
    follow_up_h: int
    seed: int
    category_mix: dict[str, float]
    warfare_types: dict[str, float]
    intensity: str
    tempo: str | tuple[float, ...]
    dnbi_tempo: str | tuple[float, ...] | None
    special_events: tuple[SpecialEvent, ...]
    environment: tuple[Environment, ...]
    fronts: tuple[Front, ...]
    evacuation_posture: str
    mascal_threshold: int
    allow_partners: bool
    triage_override: dict[str, dict[str, float]] = field(default_factory=dict)
    care_quality: float = 1.0
    medical_plan: MedicalPlan | None = None  # None: an unconstrained health system (as before plans existed)

    # --- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base: dict[str, Any] | None = None) -> "Scenario":
        """Validate ``data`` (fields it leaves out come from ``base``, by default the default scenario)."""
        _check_depth(data)
        if not isinstance(data, dict):
            raise ScenarioError([f"a scenario must be a JSON object, got {type(data).__name__}"])
        merged = dict(reference.default_scenario() if base is None else base)
        merged.update(data)
        return _Validator(merged).build()

    def with_overrides(self, **changes: Any) -> "Scenario":
        """A copy with some fields changed, validated again (e.g. ``patients=`` or ``seed=`` from the CLI)."""
        data = self.to_dict()
        data.update({k: v for k, v in changes.items() if v is not None})
        return Scenario.from_dict(data, base=data)

    # --- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = self.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        d["tempo"] = list(self.tempo) if isinstance(self.tempo, tuple) else self.tempo
        d["dnbi_tempo"] = list(self.dnbi_tempo) if isinstance(self.dnbi_tempo, tuple) else self.dnbi_tempo
        d["environment"] = [dict(env) for env in d["environment"]]
        for env in d["environment"]:
            for key in ("fronts", "days"):
                if isinstance(env[key], tuple):
                    env[key] = list(env[key])
        d["special_events"] = [{k: v for k, v in e.items() if v is not None} for e in d["special_events"]]
        d["fronts"] = [{k: v for k, v in f.items() if v is not None} for f in d["fronts"]]
        # without a plan the scenario's JSON (and sha256) is what it was before plans existed
        if self.medical_plan is None:
            del d["medical_plan"]
        else:
            d["medical_plan"] = self.medical_plan.to_dict()
        return d

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def horizon(self) -> datetime:
        """Nothing happens after this: the window end plus the follow-up."""
        return self.end + timedelta(hours=self.follow_up_h)

    def nations(self) -> list[str]:
        return sorted({n for f in self.fronts for n in f.nationality_mix})

    # --- force-size mode (docs/casualty-model.md#force-size-mode) -----------------------------------------------------------------
    @property
    def force_size(self) -> int | None:
        """Troops on all fronts, when every front gives its force size; else None."""
        sizes = [f.force_size for f in self.fronts]
        return sum(sizes) if all(s is not None for s in sizes) else None

    def implied_rate(self) -> float | None:
        """Casualties per 1,000 troops per day that ``patients`` implies (a plausibility hint), or None."""
        force = self.force_size
        return None if force is None else self.patients / (force / 1000) / self.days

    def force_size_estimate(self) -> dict[str, Any]:
        """Battle and DNBI casualties per front that the published daily rates give for this force and length."""
        if self.force_size is None:
            missing = [f"fronts[{i}] '{f.name}'" for i, f in enumerate(self.fronts) if f.force_size is None]
            raise ScenarioError([f"force-size mode needs force_size (100 to 500,000) on every front; "
                                 f"missing on {', '.join(missing)}"])
        rates = reference.arrivals()["force_size"]
        wia = rates["wia_per_1000_day"] * rates["intensity_factor"][self.intensity]
        fronts = [{"front": f.name, "force_size": f.force_size,
                   "bi": f.force_size / 1000 * wia * self.days,
                   "dnbi": f.force_size / 1000 * rates["dnbi_per_1000_day"] * self.days} for f in self.fronts]
        bi, dnbi = sum(f["bi"] for f in fronts), sum(f["dnbi"] for f in fronts)
        return {"patients": max(1, round(bi + dnbi)), "bi": bi, "dnbi": dnbi, "fronts": fronts,
                "wia_per_1000_day": wia, "dnbi_per_1000_day": rates["dnbi_per_1000_day"]}

    def from_force_size(self) -> "Scenario":
        """This scenario with N, the BI share and the fronts' casualty shares from force sizes and daily rates.

        The disease, non-battle injury and stress categories keep their proportions to each other."""
        est = self.force_size_estimate()
        total = est["bi"] + est["dnbi"]
        dnbi_mix = {k: v for k, v in self.category_mix.items() if k != "BI"}
        dnbi_sum = sum(dnbi_mix.values())
        if dnbi_sum <= 0:
            dnbi_mix, dnbi_sum = {"DIS": 1.0}, 1.0
        mix = {"BI": est["bi"] / total, **{k: est["dnbi"] / total * v / dnbi_sum for k, v in dnbi_mix.items()}}
        data = self.to_dict()
        for front, f in zip(data["fronts"], est["fronts"]):
            front["casualty_share"] = (f["bi"] + f["dnbi"]) / total
        data.update(patients=est["patients"], category_mix=mix)
        return Scenario.from_dict(data, base=data)


def load_scenario(name_or_path: str | Path | None = None) -> Scenario:
    """A preset id (``presets`` lists them), ``default``, or the path of a scenario JSON file."""
    if name_or_path is None or str(name_or_path) == "default":
        return Scenario.from_dict({})
    key = str(name_or_path)
    presets = reference.presets()
    if key in presets:
        return preset(key)
    path = Path(key)
    try:
        if not path.exists():
            raise ScenarioError([f"scenario '{key}' is neither a preset ({', '.join(['default', *presets])}) "
                                 f"nor an existing JSON file"])
        if not path.is_file():  # a FIFO would wait for a writer for ever, a device never ends
            raise ScenarioError([f"scenario file {path} is not a regular file"])
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError([f"cannot read scenario file {path}: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError([f"scenario file {path} is larger than {MAX_FILE_BYTES >> 20} MB: not a scenario"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"scenario file {path} is not UTF-8 text (byte {exc.start})"]) from None
    return Scenario.from_dict(_loads(text, f"scenario file {path} is "))


def preset(preset_id: str) -> Scenario:
    presets = reference.presets()
    if preset_id not in presets:
        raise ScenarioError([f"unknown preset '{preset_id}' (allowed: {', '.join(presets)})"])
    data = {k: v for k, v in presets[preset_id].items() if k != "_patients_from_force_size"}
    data.setdefault("description", f"Preset {preset_id}")
    scenario = Scenario.from_dict(data)
    # a preset sized by its force: N, the battle-injury share and front shares from the published daily rates
    return scenario.from_force_size() if presets[preset_id].get("_patients_from_force_size") else scenario


def parse_json(text: str) -> Scenario:
    """A scenario from JSON text (an upload, an import); errors are ScenarioError."""
    return Scenario.from_dict(_loads(text, ""))


def _loads(text: str, where: str) -> Any:
    """JSON text as Python values; anything JSON cannot hold sensibly is a ScenarioError (``where``: e.g.
    "scenario file x.json is ", put before "not valid JSON")."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError([f"{where}not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    except RecursionError:
        raise ScenarioError([f"{where}not a scenario: values nested more than {MAX_DEPTH} levels deep"]) from None
    except ValueError:  # Python reads no integer of more than 4,300 digits from text
        raise ScenarioError([f"{where}not a scenario: it holds a number of more than 4,300 digits"]) from None


def _check_depth(data: Any) -> None:
    """Refuse values nested deeper than any scenario (checked without recursion, before anything reads them)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ScenarioError([f"not a scenario: values nested more than {MAX_DEPTH} levels deep"])
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


# --- validation -------------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    """A value as it appears in a message: short, one line, whatever it is."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a whole number of about {int(value.bit_length() * 0.30103):,} digits"
    if isinstance(value, str):
        text = repr(value[:80])  # escapes control characters and lone surrogates
    elif isinstance(value, (list, dict)) and len(value) > 20:
        text = f"a {'list' if isinstance(value, list) else 'object'} of {len(value):,} entries"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (ValueError, RecursionError, TypeError):
            text = f"a {type(value).__name__}"
    text = _one_line(text)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(value: Any) -> bool:
    """A JSON number that is a real number (an int of any size, or a float that is neither NaN nor infinite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _normalised(shares: dict) -> dict:
    """Shares scaled to sum 1 and rounded to 12 decimals: validating a validated scenario changes nothing,
    so its canonical JSON and sha256 are stable."""
    total = sum(shares.values())
    scale = 1.0 if abs(total - 1.0) <= 1e-9 else total
    return {k: round(v / scale, 12) for k, v in shares.items()}


class _Validator:
    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.problems: list[str] = []

    def bad(self, where: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{where}: {_fmt(value)} is not allowed ({allowed})")

    # scalar helpers return None on error after recording it
    def integer(self, where: str, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            self.bad(where, value, f"a whole number from {low:,} to {high:,}")
            return None
        value = int(value)
        if not low <= value <= high:
            self.bad(where, value, f"a whole number from {low:,} to {high:,}")
            return None
        return value

    def number(self, where: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float | None:
        ok = _finite(value)  # an int of any size compares exactly below; float() only once it is in range
        if ok:
            ok = (value > low if low_open else value >= low) and value <= high
        if not ok:
            lower = f"more than {low}" if low_open else f"at least {low}"
            self.bad(where, value, f"a number {lower} and at most {high}")
            return None
        return float(value)

    def unknown_fields(self, where: str, given: dict, allowed: tuple[str, ...]) -> None:
        extra = [k for k in given if k not in allowed]
        if extra:
            shown = ", ".join(_fmt(k) for k in extra[:5]) + (f" and {len(extra) - 5:,} more" if len(extra) > 5 else "")
            self.problems.append(f"{where}: unknown field(s) {shown} (allowed: {', '.join(allowed)})")

    def choice(self, where: str, value: Any, allowed: tuple[str, ...]) -> str | None:
        if value not in allowed:
            self.bad(where, value, "one of " + ", ".join(allowed))
            return None
        return value

    def text(self, where: str, value: Any, max_len: int, *, required: bool = True) -> str | None:
        if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_len:
            self.bad(where, value, f"a text of 1 to {max_len} characters" if required else
                     f"a text of at most {max_len} characters")
            return None
        if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
            self.bad(where, value, "text without control characters")
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no file, database or browser can hold it
            self.bad(where, value, "valid Unicode text (it holds a lone surrogate)")
            return None
        return value.strip() if required else value

    def shares(self, where: str, value: Any, allowed: tuple[str, ...] | None, *, exact_sum: bool,
               allowed_hint: str | None = None) -> dict[str, float] | None:
        """A share table: non-negative numbers, at least one positive; normalised to sum 1."""
        if not isinstance(value, dict) or not value:
            self.bad(where, value, "an object of name: share with at least one positive share")
            return None
        out: dict[str, float] = {}
        unknown = [key for key in value if allowed is not None and key not in allowed]
        if unknown:  # one problem for them all: a table of 200,000 unknown codes is still one line
            more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
            self.problems.append(f"{where}: {', '.join(map(_fmt, unknown[:5]))}{more} "
                                 f"{'is' if len(unknown) == 1 else 'are'} not allowed "
                                 f"({allowed_hint or ('keys from ' + ', '.join(allowed))})")
            return None
        for key, share in value.items():
            num = self.number(f"{where}.{key}", share, 0.0, 1e9)
            if num is not None:
                out[key] = num
        if len(out) != len(value):
            return None
        total = sum(out.values())
        if total <= 0:
            self.problems.append(f"{where}: every share is 0 (at least one must be positive)")
            return None
        if exact_sum and abs(total - 1.0) > 1e-6:
            hint = " (give fractions, not percent)" if abs(total - 100) < 1e-6 else ""
            self.problems.append(f"{where}: shares sum to {total:g}, they must sum to 1{hint}")
            return None
        return {k: v for k, v in _normalised(out).items() if v > 0 or not exact_sum}

    def tempo(self, where: str, value: Any) -> str | tuple[float, ...] | None:
        if isinstance(value, str):
            return self.choice(where, value, TEMPOS)
        if isinstance(value, list) and 2 <= len(value) <= MAX_TEMPO_ANCHORS and all(
                _finite(v) and 0 < v <= MAX_ANCHOR for v in value):
            return tuple(float(v) for v in value)
        self.bad(where, value, "one of " + ", ".join(TEMPOS) + f", or a list of 2 to {MAX_TEMPO_ANCHORS:,} "
                 f"positive anchors of at most {MAX_ANCHOR:,.0f}")
        return None

    def build(self) -> Scenario:
        d = self.data
        known = set(Scenario.__dataclass_fields__)
        for key in d:
            if not isinstance(key, str) or (key not in known and not key.startswith("_")):
                self.problems.append(f"unknown field {_fmt(key)} (allowed: {', '.join(sorted(known))})")
        name = self.text("name", d.get("name"), MAX_NAME_LEN)
        description = self.text("description", d.get("description", ""), MAX_DESCRIPTION_LEN, required=False)
        patients = self.integer("patients", d.get("patients"), 1, MAX_PATIENTS)
        days = self.integer("days", d.get("days"), 1, MAX_DAYS)
        follow_up = self.integer("follow_up_h", d.get("follow_up_h"), 0, 1440)
        seed = self.integer("seed", d.get("seed"), 0, MAX_SEED)
        start = self.start(d.get("start"))
        mix = self.shares("category_mix", d.get("category_mix"), CATEGORIES, exact_sum=True)
        if mix is not None:
            mix = {c: mix.get(c, 0.0) for c in CATEGORIES}
        types = self.shares("warfare_types", d.get("warfare_types"), WARFARE_TYPES, exact_sum=False,
                            allowed_hint="warfare types are " + ", ".join(WARFARE_TYPES))
        intensity = self.choice("intensity", d.get("intensity"), INTENSITIES)
        tempo = self.tempo("tempo", d.get("tempo"))
        dnbi_tempo = None if d.get("dnbi_tempo") is None else self.tempo("dnbi_tempo", d.get("dnbi_tempo"))
        posture = self.choice("evacuation_posture", d.get("evacuation_posture"), POSTURES)
        threshold = self.integer("mascal_threshold", d.get("mascal_threshold"), 2, 500)
        allow_partners = d.get("allow_partners", False)
        if not isinstance(allow_partners, bool):
            self.bad("allow_partners", allow_partners, "true or false")
            allow_partners = False
        care_quality = self.number("care_quality", d.get("care_quality", 1.0), 0.0, 5.0, low_open=True)
        fronts = self.fronts(d.get("fronts"), allow_partners, types)
        front_names = [f.name for f in fronts] if fronts else []
        events = self.special_events(d.get("special_events", []), days, front_names)
        env = self.environment(d.get("environment", []), days, front_names)
        override = self.triage_override(d.get("triage_override") or {})
        plan = None
        if fronts:  # the plan's fronts are the scenario's fronts
            plan = parse_plan(d.get("medical_plan"), front_names, self.problems, _fmt)
        if self.problems:
            raise ScenarioError(self.problems)
        return Scenario(name=name, description=description, patients=patients, days=days, start=start,
                        follow_up_h=follow_up, seed=seed, category_mix=mix, warfare_types=types,
                        intensity=intensity, tempo=tempo, dnbi_tempo=dnbi_tempo, special_events=events,
                        environment=env, fronts=fronts, evacuation_posture=posture,
                        mascal_threshold=threshold, allow_partners=allow_partners, triage_override=override,
                        care_quality=care_quality, medical_plan=plan)

    def start(self, value: Any) -> datetime | None:
        allowed = (f"an ISO 8601 UTC timestamp from {EARLIEST_START:%Y-%m-%d} to {LATEST_START:%Y-%m-%d}, "
                   f"such as 2025-06-01T00:00:00Z")
        if isinstance(value, str) and len(value) <= 64:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                parsed = parsed.astimezone(timezone.utc).replace(microsecond=0)
            except (ValueError, OverflowError):  # not a time, or one whose UTC time is before year 1
                parsed = None
            if parsed is not None and EARLIEST_START <= parsed <= LATEST_START:
                return parsed
        self.bad("start", value, allowed)
        return None

    def fronts(self, value: Any, allow_partners: bool, types: dict | None) -> tuple[Front, ...] | None:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_FRONTS:
            self.bad("fronts", value, f"a list of 1 to {MAX_FRONTS} fronts")
            return None
        nato, partners = reference.nato_codes(), reference.partner_codes()
        allowed = nato | partners if allow_partners else nato
        hint = ("ISO 3166-1 alpha-3 codes of the 32 NATO nations"
                + (f" or partners {', '.join(sorted(partners))}" if allow_partners else
                   f"; partners {', '.join(sorted(partners))} need allow_partners: true"))
        out, seen, total = [], set(), 0.0
        for i, f in enumerate(value):
            where = f"fronts[{i}]"
            if not isinstance(f, dict):
                self.bad(where, f, "an object with name, casualty_share and nationality_mix")
                continue
            self.unknown_fields(where, f, tuple(Front.__dataclass_fields__))
            name = self.text(f"{where}.name", f.get("name"), 100)
            if name is not None:
                if name in seen:
                    self.bad(f"{where}.name", name, "front names must be unique")
                seen.add(name)
            share = self.number(f"{where}.casualty_share", f.get("casualty_share"), 0.0, 1e9, low_open=True)
            mix = self.shares(f"{where}.nationality_mix", f.get("nationality_mix"), tuple(sorted(allowed)),
                              exact_sum=False, allowed_hint=hint)
            ftypes = None
            if f.get("warfare_types") is not None:
                ftypes = self.shares(f"{where}.warfare_types", f.get("warfare_types"), WARFARE_TYPES,
                                     exact_sum=False, allowed_hint="warfare types are " + ", ".join(WARFARE_TYPES))
            force = None
            if f.get("force_size") is not None:
                force = self.integer(f"{where}.force_size", f.get("force_size"), 100, 500_000)
            offset = self.integer(f"{where}.utc_offset_h", f.get("utc_offset_h", 0), -12, 14)
            if None not in (name, share, mix, offset):
                total += share
                out.append(Front(name=name, casualty_share=share, nationality_mix=mix, warfare_types=ftypes,
                                 force_size=force, utc_offset_h=offset))
        if len(out) != len(value):
            return None
        shares = _normalised({i: f.casualty_share for i, f in enumerate(out)})
        small = [f"fronts[{i}]" for i, share in shares.items() if share < MIN_FRONT_SHARE]
        if small:
            self.problems.append(f"{', '.join(small)}: casualty_share is too small next to the other fronts' (each "
                                 f"front needs at least {MIN_FRONT_SHARE:g} of all casualties)")
            return None
        return tuple(replace(f, casualty_share=shares[i]) for i, f in enumerate(out))

    def special_events(self, value: Any, days: int | None, fronts: list[str]) -> tuple[SpecialEvent, ...]:
        if not isinstance(value, list) or len(value) > MAX_SPECIAL_EVENTS:
            self.bad("special_events", value, f"a list of at most {MAX_SPECIAL_EVENTS} events")
            return ()
        out = []
        for i, e in enumerate(value):
            where = f"special_events[{i}]"
            if not isinstance(e, dict):
                self.bad(where, e, "an object with a type")
                continue
            self.unknown_fields(where, e, tuple(SpecialEvent.__dataclass_fields__))
            kind = self.choice(f"{where}.type", e.get("type"), SPECIAL_EVENT_TYPES)
            day = None if e.get("day") is None else self.integer(f"{where}.day", e["day"], 1, days or MAX_DAYS)
            hour = None if e.get("hour") is None else self.integer(f"{where}.hour", e["hour"], 0, 23)
            size = None if e.get("size") is None else self.integer(f"{where}.size", e["size"], 1, MAX_PATIENTS)
            share = None if e.get("size_share") is None else self.number(
                f"{where}.size_share", e["size_share"], 0.0, 1.0, low_open=True)
            if size is not None and share is not None:
                self.problems.append(f"{where}: give size or size_share, not both")
            front = e.get("front")
            if front is not None and front not in fronts:
                self.bad(f"{where}.front", front, "a front name of this scenario: " + ", ".join(fronts))
            wtype = e.get("warfare_type")
            if wtype is not None:
                self.choice(f"{where}.warfare_type", wtype, WARFARE_TYPES)
            out.append(SpecialEvent(type=kind, day=day, hour=hour, size=size, size_share=share, front=front,
                                    warfare_type=wtype))
        return tuple(out)

    def environment(self, value: Any, days: int | None, fronts: list[str]) -> tuple[Environment, ...]:
        if not isinstance(value, list) or len(value) > MAX_ENVIRONMENT:
            self.bad("environment", value, f"a list of at most {MAX_ENVIRONMENT} {{condition, fronts, days}}")
            return ()
        out = []
        for i, e in enumerate(value):
            where = f"environment[{i}]"
            if isinstance(e, str):
                e = {"condition": e}
            if not isinstance(e, dict):
                self.bad(where, e, "an object with a condition")
                continue
            self.unknown_fields(where, e, tuple(Environment.__dataclass_fields__))
            cond = self.choice(f"{where}.condition", e.get("condition"), ENVIRONMENT_CONDITIONS)
            f = e.get("fronts", "all")
            if f != "all":
                if not isinstance(f, list) or not f or any(x not in fronts for x in f):
                    self.bad(f"{where}.fronts", f, '"all" or a list of front names: ' + ", ".join(fronts))
                else:
                    f = tuple(f)
            dr = e.get("days", "all")
            if dr != "all":
                ok = (isinstance(dr, list) and len(dr) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                     for x in dr)
                      and 1 <= dr[0] <= dr[1] <= (days or MAX_DAYS))
                if not ok:
                    self.bad(f"{where}.days", dr, f'"all" or [first, last] with 1 <= first <= last <= {days}')
                else:
                    dr = (dr[0], dr[1])
            out.append(Environment(condition=cond, fronts=f, days=dr))
        return tuple(out)

    def triage_override(self, value: Any) -> dict[str, dict[str, float]]:
        from core.schema import MECHANISMS
        if not isinstance(value, dict):
            self.bad("triage_override", value, "an object of category or mechanism: {T1..T4: share}")
            return {}
        out = {}
        keys = CATEGORIES + tuple(m for m in MECHANISMS if m != "none")
        for key, row in value.items():
            if key not in keys:
                self.bad("triage_override", key, "keys are categories (" + ", ".join(CATEGORIES)
                         + ") or mechanisms (" + ", ".join(keys[len(CATEGORIES):]) + ")")
                continue
            shares = self.shares(f"triage_override.{key}", row, TRIAGES, exact_sum=True)
            if shares is not None:
                out[key] = {t: shares.get(t, 0.0) for t in TRIAGES}
        return out
