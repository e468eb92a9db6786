"""Scenario: the validated, immutable description of one generation (DOMAIN.md §2).

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


class ScenarioError(ValueError):
    """One or more problems with a scenario; ``str()`` is a single line listing them all."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


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

    # --- force-size mode (DOMAIN.md §3.8) -----------------------------------------------------------------
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
    if not path.exists():
        raise ScenarioError([f"scenario '{key}' is neither a preset ({', '.join(['default', *presets])}) "
                             f"nor an existing JSON file"])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"cannot read scenario file {path}: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise ScenarioError([f"scenario file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                             f"column {exc.colno}"]) from None
    return Scenario.from_dict(data)


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
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError([f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    return Scenario.from_dict(data)


# --- validation -------------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (value > low if low_open else value >= low) and value <= high
        if not ok:
            lower = f"more than {low}" if low_open else f"at least {low}"
            self.bad(where, value, f"a number {lower} and at most {high}")
            return None
        return float(value)

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
        return value.strip() if required else value

    def shares(self, where: str, value: Any, allowed: tuple[str, ...] | None, *, exact_sum: bool,
               allowed_hint: str | None = None) -> dict[str, float] | None:
        """A share table: non-negative numbers, at least one positive; normalised to sum 1."""
        if not isinstance(value, dict) or not value:
            self.bad(where, value, "an object of name: share with at least one positive share")
            return None
        out: dict[str, float] = {}
        for key, share in value.items():
            if allowed is not None and key not in allowed:
                self.bad(f"{where}", key, allowed_hint or ("keys from " + ", ".join(allowed)))
                continue
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
        if isinstance(value, list) and len(value) >= 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                for v in value):
            return tuple(float(v) for v in value)
        self.bad(where, value, "one of " + ", ".join(TEMPOS) + ", or a list of at least 2 positive anchors")
        return None

    def build(self) -> Scenario:
        d = self.data
        known = set(Scenario.__dataclass_fields__)
        for key in d:
            if key not in known and not key.startswith("_"):
                self.problems.append(f"unknown field '{key}' (allowed: {', '.join(sorted(known))})")
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
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                parsed = None
            if parsed is not None:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                return parsed.astimezone(timezone.utc).replace(microsecond=0)
        self.bad("start", value, "an ISO 8601 UTC timestamp such as 2025-06-01T00:00:00Z")
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
            extra = set(f) - set(Front.__dataclass_fields__)
            if extra:
                self.problems.append(f"{where}: unknown field(s) {', '.join(sorted(extra))} "
                                     f"(allowed: {', '.join(Front.__dataclass_fields__)})")
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
        return tuple(replace(f, casualty_share=shares[i]) for i, f in enumerate(out))

    def special_events(self, value: Any, days: int | None, fronts: list[str]) -> tuple[SpecialEvent, ...]:
        if not isinstance(value, list):
            self.bad("special_events", value, "a list of events")
            return ()
        out = []
        for i, e in enumerate(value):
            where = f"special_events[{i}]"
            if not isinstance(e, dict):
                self.bad(where, e, "an object with a type")
                continue
            extra = set(e) - set(SpecialEvent.__dataclass_fields__)
            if extra:
                self.problems.append(f"{where}: unknown field(s) {', '.join(sorted(extra))} "
                                     f"(allowed: {', '.join(SpecialEvent.__dataclass_fields__)})")
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
        if not isinstance(value, list):
            self.bad("environment", value, "a list of {condition, fronts, days}")
            return ()
        out = []
        for i, e in enumerate(value):
            where = f"environment[{i}]"
            if isinstance(e, str):
                e = {"condition": e}
            if not isinstance(e, dict):
                self.bad(where, e, "an object with a condition")
                continue
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
