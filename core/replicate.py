"""Replications: one scenario run over many seeds, each report figure with its mean and 95 % interval.

Each replication generates in memory (no files) and keeps only the figures of its calibration report and, with
a medical plan, its capacity report. Replications run in parallel processes; seeds are the scenario's seed,
seed + 1, ... so the same call gives the same answer.
"""
from __future__ import annotations

import math
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from statistics import NormalDist

import numpy as np

from core import generator
from core.calibration import Calibration
from core.scenario import Scenario

MAX_RUNS = 1000


def figures_of(scenario: Scenario) -> dict[str, tuple[float | None, str]]:
    """The figures of one run, name -> (value, unit): each calibration target's share and, with a medical
    plan, the capacity report's figures."""
    sim = None
    if scenario.medical_plan is not None:
        from core.capacity.model import Simulation
        sim = Simulation(scenario)
    cal = Calibration(scenario)
    for batch in generator.blocks(scenario, simulation=sim):
        cal.add(batch)
    out: dict[str, tuple[float | None, str]] = {}
    if sim is not None:
        from core.capacity.report import figures, report
        out.update(figures(report(sim)))
    for row in cal.report()["targets"]:
        if row["id"] != "14":
            out[f"{row['metric']} ({row['source']})"] = (row["value"], "share")
    return out


def _one(args) -> dict:
    data, seed = args
    return figures_of(Scenario.from_dict(data, base=data).with_overrides(seed=seed))


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (Hill's expansion around the normal; exact enough for confidence intervals)."""
    z = NormalDist().inv_cdf(p)
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4


def summarise(values: list[float | None]) -> dict:
    """Mean, the 95 % confidence interval of the mean, and the middle 95 % of the runs."""
    v = np.array([x for x in values if x is not None], dtype=float)
    n = len(v)
    if not n:
        return {"n": 0, "mean": None, "ci95": None, "range95": None}
    mean = float(v.mean())
    half = t_quantile(0.975, n - 1) * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return {"n": n, "mean": mean, "ci95": [mean - half, mean + half],
            "range95": [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]}


def replicate(scenario: Scenario, runs: int, workers: int = 2) -> dict:
    """``runs`` replications of ``scenario`` (seeds seed .. seed + runs - 1) in ``workers`` processes."""
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= MAX_RUNS:
        raise ValueError(f"runs {runs!r} is not allowed (a whole number from 1 to {MAX_RUNS:,})")
    generator.check_options(generator.BLOCK_DEFAULT, workers)
    data = scenario.to_dict()
    seeds = [(scenario.seed + i) % (2 ** 63) for i in range(runs)]
    jobs = [(data, seed) for seed in seeds]
    if workers <= 1 or runs == 1:
        results = [_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, runs), mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_one, jobs))
    names = list(dict.fromkeys(k for r in results for k in r))
    units = {k: v[1] for r in results for k, v in r.items()}
    return {"scenario": scenario.name, "runs": runs, "seeds": [seeds[0], seeds[-1]],
            "patients": scenario.patients,
            "figures": {name: {**_bounded(name, units[name], summarise([r[name][0] if name in r else None
                                                                         for r in results])),
                               "unit": units[name]} for name in names}}


def _bounded(name: str, unit: str, figure: dict) -> dict:
    """Intervals kept to what the figure can be: no share outside 0-100 %, no negative count or time (only the
    deaths attributable to capacity can be below zero)."""
    if figure["mean"] is None or "attributable" in name.lower():
        return figure
    high = 1.0 if unit == "share" else math.inf
    for key in ("ci95", "range95"):
        figure[key] = [min(max(x, 0.0), high) for x in figure[key]]
    return figure


def format_replications(rep: dict) -> str:
    lines = [f"{rep['runs']} replications of '{rep['scenario']}' ({rep['patients']:,} patients each, seeds "
             f"{rep['seeds'][0]}..{rep['seeds'][1]}): mean and 95 % confidence interval",
             f"  {'figure':<86} {'mean':>10} {'95 % interval':>22}"]
    for name, f in rep["figures"].items():
        if f["mean"] is None:
            continue
        fmt = {"share": lambda x: f"{x + 0.0:.1%}", "min": lambda x: f"{round(x) + 0:,} min",
               "h": lambda x: f"{round(x) + 0:,} h"}.get(f["unit"], lambda x: f"{round(x, 1) + 0.0:,.1f}")
        lo, hi = f["ci95"]
        lines.append(f"  {name[:86]:<86} {fmt(f['mean']):>10} {fmt(lo):>10} – {fmt(hi):<10}")
    return "\n".join(lines)
