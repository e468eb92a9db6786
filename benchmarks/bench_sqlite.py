"""Saving a run to the embedded SQLite database: how fast, against writing the files alone.

    .venv/bin/python -m benchmarks.bench_sqlite [--patients 200000] [--repeat 1]

In a throw-away folder, with a new SQLite file each time:
1. the run written to Parquet files only (``generate_run``);
2. the same run saved to the database too (``persist=True``: files and database together, end to end, as the
   dashboard's "Save to database" does);
3. the database load alone: the run's batches generated first, then fed to ``DatabaseSink`` (what the loader
   sustains when generation is not competing for the machine).
Prints patients/s for each and where the loader's time went (render = turning a batch into SQL parameters,
insert = SQLite's executemany). The target is at least 50,000 patients/s for the load.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1, help="times each measurement is taken (best is kept)")
    args = ap.parse_args(argv)

    from core import db, generator
    from core.run import generate_run
    from core.scenario import load_scenario
    from core.sinks import database as db_sink

    scenario = load_scenario("default").with_overrides(patients=args.patients, seed=7)
    tmp = Path(tempfile.mkdtemp(prefix="mpg-bench-sqlite-"))
    best: dict[str, float] = {}
    timings: dict[str, dict[str, float]] = {}

    def keep_best(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    try:
        for i in range(args.repeat):
            t0 = time.perf_counter()
            generate_run(scenario, tmp / f"files{i}")
            keep_best("files only", time.perf_counter() - t0)

            engine = db.get_engine(f"sqlite:///{tmp / f'e2e{i}.sqlite'}")
            t0 = time.perf_counter()
            m = generate_run(scenario, tmp / f"db{i}", engine=engine, persist=True, scenario_name="bench")
            keep_best("files + database", time.perf_counter() - t0)
            assert m["persisted"], m.get("database_error")

            batches = list(generator.stream(scenario))
            engine = db.get_engine(f"sqlite:///{tmp / f'load{i}.sqlite'}")
            manifest = {"run_id": f"bench-{i}-{os.getpid()}", "scenario": scenario.to_dict(), "seed": scenario.seed,
                        "started_at": "2026-01-01T00:00:00Z", "format": "parquet"}
            t0 = time.perf_counter()
            sink = db_sink.DatabaseSink(engine, manifest, persist=True).open()
            for batch in batches:
                sink.write(batch)
            sink.close()
            manifest.update(status="completed", patients=args.patients, patients_generated=args.patients)
            sink.finish(manifest)
            keep_best("database load alone", time.perf_counter() - t0)
            assert manifest["persisted"], manifest.get("database_error")
            timings = sink.loader.timings
            rows = db.run_summary(engine, manifest["run_id"])["rows"]
            del batches
        db.dispose_all()
        print(f"{args.patients:,} patients ({sum(rows.values()):,} rows in 4 tables), SQLite {_sqlite_version()}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        for name, seconds in best.items():
            print(f"  {name:<22} {seconds:6.2f} s  {args.patients / seconds:>9,.0f} patients/s")
        extra = best["files + database"] - best["files only"]
        print(f"  saving to the database added {extra:.2f} s to the run")
        for table, stages in timings.items():
            print(f"    {table:<11} " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _sqlite_version() -> str:
    import sqlite3
    return sqlite3.sqlite_version


if __name__ == "__main__":
    raise SystemExit(main())
