"""Benchmark of the medical plan (capacity) at work: generation with a plan against the same run without one,
memory as N grows at a constant daily rate, the Scenario page's capacity preview and replications.

    python -m benchmarks.bench_capacity                       # every case
    python -m benchmarks.bench_capacity --case run --patients 1000000
    python -m benchmarks.bench_capacity --case preview --case replicate

Each generation case runs in a fresh process (``python -m core generate``), so numba's compiled cache is loaded
the way a user's run loads it; times are wall seconds with the 1-minute load average beside them (the machine
may be shared), plus CPU seconds of the process, steadier than wall time on a busy machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIONS = ("USA", "GBR", "DEU", "FRA", "POL", "ITA", "ESP", "NLD", "CAN", "NOR")


def theatre(patients: int, days: int, fronts: int = 20) -> dict:
    """A corps-sized theatre at a constant daily rate: ``fronts`` fronts, each with a laydown scaled to its load
    (about 280 casualties a front a day for 1,000,000 over 180 days), so the plan is busy but holds."""
    per_front_day = patients / days / fronts
    scale = max(1, round(per_front_day / 14))  # the brigade laydown meets ~14 casualties a day
    facility = lambda count, tables, resus, icu, hold, day, night: {  # noqa: E731
        "count": count, "operating_tables": tables, "resuscitation_beds": resus, "icu_beds": icu,
        "holding_beds": hold, "surgical_teams_day": day, "surgical_teams_night": night}
    laydown = {"r1_teams": 3 * scale,
               "r2_basic": facility(min(50, scale), 1, 2, 2, 5, 1, 0),
               "r2_enhanced": facility(min(50, max(1, scale // 2)), 4, 8, 8, 60, 4, 2),
               "ground_ambulances": min(500, 3 * scale), "ambulance_litters": 4,
               "helicopters": min(500, 2 * scale), "helicopter_litters": 4}
    r3_count = min(50, max(1, scale * fronts // 8))
    return {"name": f"Corps theatre, {fronts} fronts", "patients": patients, "days": days, "seed": 7,
            "special_events": [], "environment": [],
            "fronts": [{"name": f"Front {i + 1}", "casualty_share": 1,
                        "nationality_mix": {NATIONS[i % len(NATIONS)]: 1}} for i in range(fronts)],
            "medical_plan": {"fronts": {f"Front {i + 1}": laydown for i in range(fronts)},
                             "r3": facility(r3_count, 8, 12, 40, 300, 8, 8),
                             "strategic_evacuation": {"interval_h": 0, "seats": 40}}}


def load_avg() -> float:
    return round(os.getloadavg()[0], 1)


def generate(scenario: dict, plan: bool, workdir: Path) -> dict:
    data = dict(scenario)
    if not plan:
        data["medical_plan"] = "unconstrained"
    path = workdir / f"scenario-{'plan' if plan else 'free'}.json"
    path.write_text(json.dumps(data))
    out = workdir / f"run-{'plan' if plan else 'free'}-{scenario['patients']}"
    load = load_avg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "generate", "--scenario", str(path), "--out", str(out),
                    "--force", "--quiet"], cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    manifest = json.loads((out / "manifest.json").read_text())
    return {"patients": manifest["patients"], "plan": plan, "seconds": round(wall, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "peak_rss_mb": manifest["peak_rss_mb"], "load": f"{load}-{load_avg()}",
            "verdict": manifest.get("capacity", {}).get("verdict")}


def case_run(patients: int, days: int, workdir: Path) -> list[dict]:
    scenario = theatre(patients, days)
    return [generate(scenario, False, workdir), generate(scenario, True, workdir)]


def case_memory(workdir: Path) -> list[dict]:
    """Peak memory at one daily rate as the run gets longer: 100,000 patients over 18 days, 500,000 over 90,
    1,000,000 over 180 (memory is bounded by the casualties injured since the oldest one still in care)."""
    return [generate(theatre(n, d), True, workdir) for n, d in ((100_000, 18), (500_000, 90), (1_000_000, 180))]


def case_preview() -> dict:
    code = ("import time; from core.scenario import preset; from core.capacity.preview import preview\n"
            "t = time.perf_counter(); preview(preset('brigade_falklands')); first = time.perf_counter() - t\n"
            "times = []\n"
            "for name in ('brigade_falklands', 'brigade_okinawa') * 5:\n"
            "    t = time.perf_counter(); preview(preset(name)); times.append(time.perf_counter() - t)\n"
            "print(first, max(times), sorted(times)[len(times) // 2])")
    load = load_avg()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    first, worst, median = map(float, out.stdout.split())
    return {"case": "preview 30-day brigade", "first_s": round(first, 3), "median_s": round(median, 3),
            "max_s": round(worst, 3), "load": f"{load}-{load_avg()}"}


def case_replicate(runs: int = 50, workers: int = 2) -> dict:
    load = load_avg()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "replicate", "--scenario", "brigade_okinawa", "--runs", str(runs),
                    "--workers", str(workers)], cwd=ROOT, check=True, capture_output=True)
    return {"case": f"{runs} replications, 30-day brigade, {workers} processes",
            "seconds": round(time.perf_counter() - t0, 2), "load": f"{load}-{load_avg()}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_capacity", description=__doc__.split("\n")[0])
    p.add_argument("--case", action="append", choices=("run", "memory", "preview", "replicate"))
    p.add_argument("--patients", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    cases = args.case or ["preview", "replicate", "run", "memory"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            if case == "run":
                rows = case_run(args.patients, args.days, Path(tmp))
                ratio = rows[1]["seconds"] / rows[0]["seconds"]
                results.append({"case": f"{args.patients:,} patients, {args.days} days, Parquet: with a plan / without",
                                "runs": rows, "time_ratio": round(ratio, 2)})
            elif case == "memory":
                results.append({"case": "peak memory at a constant rate", "runs": case_memory(Path(tmp))})
            elif case == "preview":
                results.append(case_preview())
            else:
                results.append(case_replicate())
            print(json.dumps(results[-1], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
