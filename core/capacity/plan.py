"""The medical plan: what the theatre's health system has (docs/capacity.md).

Per front: Role 1 treatment teams, Role 2 Basic and Enhanced facilities (operating tables, resuscitation, ICU
and holding beds, surgical teams by day and by night), ground ambulances and MEDEVAC helicopters with their
litters. For the theatre: the Role 3 field hospital(s) and strategic aeromedical evacuation to Role 4.
``parse`` validates a plan as strictly as the rest of the scenario: every problem is one message naming the
field, the bad value and what is allowed. A scenario without a plan runs unconstrained, as before.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any

from core import reference

UNCONSTRAINED = "unconstrained"
BRIGADE = "brigade"


@dataclass(frozen=True)
class Facilities:
    """``count`` identical facilities of one kind and what each of them has."""

    count: int
    operating_tables: int
    resuscitation_beds: int
    icu_beds: int
    holding_beds: int
    surgical_teams_day: int
    surgical_teams_night: int


@dataclass(frozen=True)
class FrontPlan:
    front: str
    r1_teams: int
    r2_basic: Facilities
    r2_enhanced: Facilities
    ground_ambulances: int
    ambulance_litters: int
    helicopters: int
    helicopter_litters: int


@dataclass(frozen=True)
class StrategicEvacuation:
    interval_h: float  # hours between sorties R3 -> R4; 0 = whenever a patient is ready
    seats: int         # litters per sortie


@dataclass(frozen=True)
class MedicalPlan:
    fronts: tuple[FrontPlan, ...]  # one per scenario front, in the scenario's order
    r3: Facilities
    strategic_evacuation: StrategicEvacuation

    def to_dict(self) -> dict[str, Any]:
        return {"fronts": {f.front: {k: v for k, v in asdict(f).items() if k != "front"} for f in self.fronts},
                "r3": asdict(self.r3), "strategic_evacuation": asdict(self.strategic_evacuation)}

    def front(self, name: str) -> FrontPlan:
        return next(f for f in self.fronts if f.front == name)


@cache
def config() -> dict:
    return reference.capacity()


def brigade_laydown() -> dict[str, Any]:
    """One brigade's medical laydown for a front (the starting point a planner edits)."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in config()["brigade_laydown"].items()
            if not k.startswith("_")}


def theatre_laydown() -> dict[str, Any]:
    return {k: dict(v) for k, v in config()["theatre_laydown"].items() if not k.startswith("_")}


def default_plan_dict(front_names: list[str]) -> dict[str, Any]:
    """The brigade laydown on every front and the theatre defaults, as a scenario's ``medical_plan``."""
    return {"fronts": {name: brigade_laydown() for name in front_names}, **theatre_laydown()}


FACILITY_FIELDS = tuple(f.name for f in fields(Facilities))
FRONT_FIELDS = tuple(f.name for f in fields(FrontPlan) if f.name != "front")
TOP_FIELDS = ("fronts", "r3", "strategic_evacuation")


def parse(value: Any, front_names: list[str], problems: list[str], fmt) -> MedicalPlan | None:
    """A validated plan, or None for an unconstrained scenario; problems are appended to ``problems``.

    ``value``: None or "unconstrained"; "brigade" (the default laydown on every front); or an object with
    ``fronts`` (front name -> laydown; fronts left out get the brigade laydown, fields left out their brigade
    value), ``r3`` and ``strategic_evacuation``. ``fmt`` formats a bad value for a message."""
    if value is None or value == UNCONSTRAINED:
        return None
    if value == BRIGADE:
        value = {}
    if not isinstance(value, dict):
        problems.append(f"medical_plan: {fmt(value)} is not allowed (\"{UNCONSTRAINED}\", \"{BRIGADE}\" or an "
                        f"object with {', '.join(TOP_FIELDS)})")
        return None
    start = len(problems)
    check = _Checks(problems, fmt)
    for key in value:
        if key not in TOP_FIELDS:
            problems.append(f"medical_plan: unknown field '{key}' (allowed: {', '.join(TOP_FIELDS)})")
    given = value.get("fronts", {})
    if not isinstance(given, dict):
        problems.append(f"medical_plan.fronts: {fmt(given)} is not allowed (an object of front name: laydown)")
        given = {}
    for name in given:
        if name not in front_names:
            problems.append(f"medical_plan.fronts: '{name}' is not a front of this scenario "
                            f"(fronts: {', '.join(front_names)})")
    fronts = []
    for name in front_names:
        where = f"medical_plan.fronts.{name}"
        spec = given.get(name, {})
        if not isinstance(spec, dict):
            problems.append(f"{where}: {fmt(spec)} is not allowed (an object with {', '.join(FRONT_FIELDS)})")
            continue
        fronts.append(check.front(where, name, {**brigade_laydown(), **spec}, spec))
    theatre = theatre_laydown()
    r3_spec = value.get("r3", {})
    r3 = check.facilities("medical_plan.r3", {**theatre["r3"], **r3_spec} if isinstance(r3_spec, dict) else r3_spec,
                          role="R3", required=True)
    se = value.get("strategic_evacuation", {})
    strategic = check.strategic("medical_plan.strategic_evacuation",
                                {**theatre["strategic_evacuation"], **se} if isinstance(se, dict) else se)
    if len(problems) > start:
        return None
    return MedicalPlan(fronts=tuple(fronts), r3=r3, strategic_evacuation=strategic)


class _Checks:
    def __init__(self, problems: list[str], fmt):
        self.problems, self.fmt = problems, fmt
        self.limits = config()["limits"]

    def count(self, where: str, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (  # an int of any size compares exactly
                isinstance(value, float) and not value.is_integer()) or not low <= value <= high:
            self.problems.append(f"{where}: {self.fmt(value)} is not allowed (a whole number from {low:,} to {high:,})")
            return None
        return int(value)

    def unknown(self, where: str, spec: dict, allowed: tuple[str, ...]) -> None:
        extra = sorted(str(k) for k in spec if k not in allowed)
        if extra:
            self.problems.append(f"{where}: unknown field(s) {', '.join(extra)} (allowed: {', '.join(allowed)})")

    def facilities(self, where: str, spec: Any, *, role: str, required: bool) -> Facilities:
        lim = self.limits
        if not isinstance(spec, dict):
            self.problems.append(f"{where}: {self.fmt(spec)} is not allowed (an object with {', '.join(FACILITY_FIELDS)})")
            return Facilities(0, 0, 0, 0, 0, 0, 0)
        self.unknown(where, spec, FACILITY_FIELDS)
        f = Facilities(
            count=self.count(f"{where}.count", spec.get("count"), 1 if required else 0, lim["facilities"]),
            operating_tables=self.count(f"{where}.operating_tables", spec.get("operating_tables"), 0,
                                        lim["operating_tables"]),
            resuscitation_beds=self.count(f"{where}.resuscitation_beds", spec.get("resuscitation_beds"), 0, lim["beds"]),
            icu_beds=self.count(f"{where}.icu_beds", spec.get("icu_beds"), 0, lim["beds"]),
            holding_beds=self.count(f"{where}.holding_beds", spec.get("holding_beds"), 0, lim["beds"]),
            surgical_teams_day=self.count(f"{where}.surgical_teams_day", spec.get("surgical_teams_day"), 0, lim["teams"]),
            surgical_teams_night=self.count(f"{where}.surgical_teams_night", spec.get("surgical_teams_night"), 0,
                                            lim["teams"]))
        if f.count:  # a facility that exists must be able to take the casualties routing sends it
            for name, need in (("operating_tables", "an operating table"), ("resuscitation_beds", "a resuscitation bed"),
                               ("icu_beds", "an ICU bed"), ("holding_beds", "a holding bed")):
                if getattr(f, name) == 0:
                    self.problems.append(f"{where}.{name}: 0 is not allowed (each {role} needs at least {need})")
            if f.surgical_teams_day == 0 and f.surgical_teams_night == 0:
                self.problems.append(f"{where}: no surgical team by day or by night (each {role} needs at least one "
                                     f"to operate)")
        return f

    def front(self, where: str, name: str, spec: dict, given: dict) -> FrontPlan:
        lim = self.limits
        self.unknown(where, given, FRONT_FIELDS)
        r2 = {}
        for kind in ("r2_basic", "r2_enhanced"):
            part = given.get(kind)
            merged = {**brigade_laydown()[kind], **part} if isinstance(part, dict) else (part if part is not None
                                                                                          else spec[kind])
            r2[kind] = self.facilities(f"{where}.{kind}", merged, role="Role 2", required=False)
        if r2["r2_basic"].count == 0 and r2["r2_enhanced"].count == 0:
            self.problems.append(f"{where}: no Role 2 facility (r2_basic.count and r2_enhanced.count are 0); routing "
                                 f"sends T1 casualties from Role 1 to Role 2, so a front needs at least one")
        plan = FrontPlan(
            front=name,
            r1_teams=self.count(f"{where}.r1_teams", spec.get("r1_teams"), 1, lim["teams"]),
            r2_basic=r2["r2_basic"], r2_enhanced=r2["r2_enhanced"],
            ground_ambulances=self.count(f"{where}.ground_ambulances", spec.get("ground_ambulances"), 1, lim["vehicles"]),
            ambulance_litters=self.count(f"{where}.ambulance_litters", spec.get("ambulance_litters"), 1, lim["litters"]),
            helicopters=self.count(f"{where}.helicopters", spec.get("helicopters"), 0, lim["vehicles"]),
            helicopter_litters=self.count(f"{where}.helicopter_litters", spec.get("helicopter_litters"), 1,
                                          lim["litters"]))
        return plan

    def strategic(self, where: str, spec: Any) -> StrategicEvacuation:
        if not isinstance(spec, dict):
            self.problems.append(f"{where}: {self.fmt(spec)} is not allowed (an object with interval_h and seats)")
            return StrategicEvacuation(0, 1)
        self.unknown(where, spec, ("interval_h", "seats"))
        interval = spec.get("interval_h")
        high = self.limits["sortie_interval_h"]
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= high:
            self.problems.append(f"{where}.interval_h: {self.fmt(interval)} is not allowed (hours between sorties, "
                                 f"0 to {high}; 0 = continuous)")
            interval = 0
        seats = self.count(f"{where}.seats", spec.get("seats"), 1, self.limits["seats"])
        return StrategicEvacuation(interval_h=float(interval), seats=seats)
