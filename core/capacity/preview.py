"""A quick look at a scenario's medical plan at work (the Scenario page's preview): the whole scenario when it
is small enough, else its first days at the scenario's own rate, so the load per day is what the plan meets."""
from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from core import generator
from core.capacity.model import Simulation
from core.capacity.report import report
from core.scenario import Scenario, ScenarioError

MAX_PATIENTS = 20_000


@dataclass
class Preview:
    report: dict
    patients: pl.DataFrame
    note: str | None  # what part of the scenario was run, when not all of it
    events: pl.DataFrame | None = None  # the events of the same patients (the Scenario page's 10-1-2 and load)


def preview(scenario: Scenario, max_patients: int = MAX_PATIENTS) -> Preview:
    sc, note = scenario, None
    if sc.patients > max_patients:
        days = max(1, math.floor(sc.days * max_patients / sc.patients))
        n = max(1, round(sc.patients * days / sc.days))
        try:
            sc = sc.with_overrides(days=days, patients=n)
            note = f"the first {days:,} of {scenario.days:,} days at the scenario's rate ({n:,} casualties)"
        except ScenarioError:  # events or conditions fixed to later days: keep the days, fewer casualties
            sc = sc.with_overrides(patients=max_patients)
            note = f"{max_patients:,} of {scenario.patients:,} casualties over the whole scenario (a lighter load)"
    sim = Simulation(sc)
    batch = generator.generate(sc, simulation=sim)
    return Preview(report(sim), batch.patients, note, batch.events)


def warm() -> None:
    """Load (or, on first use after an install or upgrade, compile: about a minute) the simulation's kernels on
    a one-patient run, so the first real run or preview does not pay for it."""
    preview(Scenario.from_dict({"name": "warm-up", "patients": 1, "days": 1, "special_events": [],
                                "environment": [], "medical_plan": "brigade",
                                "fronts": [{"name": "A", "casualty_share": 1, "nationality_mix": {"USA": 1}}]}))
