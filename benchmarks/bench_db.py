"""Database benchmark (PostgreSQL): persisting runs, dashboard query latency, connection budget under load.

    .venv/bin/python -m benchmarks.bench_db [--url postgresql://postgres@127.0.0.1:5432/test] [--patients 1000000]
                                            [--runs 3] [--sessions 50]

Works in its own schema (dropped at the end). Each persisted run is `generate_run(..., persist=True)`: the engine,
Parquet files and the database load together, timed end to end (manifest elapsed_s includes the load, index
build and partition attach). Then: run list / run summary / patient record latency over every call of the 50
sessions, and the most connections this process ever had open in pg_stat_activity (application_name filter).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from core import db
from core.sinks import database as db_sink
from core.run import generate_run
from core.scenario import load_scenario


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"p50 {statistics.median(s):.2f} ms, p95 {s[int(0.95 * (len(s) - 1))]:.2f} ms, max {s[-1]:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("MPG_TEST_DATABASE_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="persisted runs of --patients before the query test")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--keep", action="store_true", help="keep the schema (default: dropped)")
    args = ap.parse_args(argv)

    schema_name = f"mpg_bench_{uuid.uuid4().hex[:8]}"
    app = f"mpgbench{os.getpid()}"
    admin = sa.create_engine(sa.make_url(args.url).set(drivername="postgresql+psycopg2"), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema_name}"')
    url = f"{args.url}{'&' if '?' in args.url else '?'}options={quote(f'-csearch_path={schema_name}')}" \
          f"&application_name={app}"
    tmp = Path(tempfile.mkdtemp(prefix="mpg-bench-db-"))
    try:
        engine = db.get_engine(url)
        print(f"database {db.describe(admin)}, schema {schema_name}, pool budget {db.pool_status(engine)['budget']}")
        base = load_scenario("default")

        # 1. persisting runs (the loader of each run is kept to print where its time went)
        loaders = []
        real_loader_for = db_sink.loader_for

        def keep_loader(*a, **k):
            loaders.append(real_loader_for(*a, **k))
            return loaders[-1]
        db_sink.loader_for = keep_loader
        run_ids = []
        for i in range(args.runs):
            scenario = base.with_overrides(patients=args.patients, seed=100 + i)
            t0 = time.perf_counter()
            m = generate_run(scenario, tmp / f"run{i}", engine=engine, persist=True, scenario_name="bench")
            wall = time.perf_counter() - t0
            assert m["persisted"], m.get("database_error")
            rows = db.run_summary(engine, m["run_id"])["rows"]
            print(f"persist run {i + 1}: {args.patients:,} patients ({sum(rows.values()):,} rows in 4 tables) in "
                  f"{wall:.1f} s = {args.patients / wall:,.0f} patients/s, {sum(rows.values()) / wall:,.0f} rows/s; "
                  f"peak RSS {m['peak_rss_mb']:.0f} MB; load average {os.getloadavg()[0]:.1f}")
            for table, stages in getattr(loaders[-1], "timings", {}).items():
                print(f"  {table:<11} " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
            run_ids.append(m["run_id"])
        db_sink.loader_for = real_loader_for
        files_only = base.with_overrides(patients=args.patients, seed=100)
        t0 = time.perf_counter()
        generate_run(files_only, tmp / "files-only")
        wall = time.perf_counter() - t0
        print(f"same run to Parquet only: {wall:.1f} s = {args.patients / wall:,.0f} patients/s")

        # 2. dashboard queries from many sessions while a generation runs, 3. connections in pg_stat_activity
        lat: dict[str, list[float]] = {"list_runs": [], "run_summary": [], "patient_record": [], "list_scenarios": []}
        lock, stop, seen = threading.Lock(), threading.Event(), []

        def timed(name, fn, *a):
            t = time.perf_counter()
            fn(engine, *a)
            with lock:
                lat[name].append((time.perf_counter() - t) * 1000)

        def session(k: int) -> None:
            for j in range(20):
                timed("list_runs", db.list_runs)
                timed("run_summary", db.run_summary, run_ids[(k + j) % len(run_ids)])
                timed("patient_record", db.patient_record, run_ids[k % len(run_ids)], 1 + (k * 7919 + j * 104729)
                      % args.patients)
                timed("list_scenarios", db.list_scenarios)

        def watch() -> None:
            with admin.connect() as conn:
                while not stop.is_set():
                    seen.append(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                                                     "application_name = :a"), {"a": app}).scalar())
                    conn.commit()  # pg_stat_activity is a snapshot per transaction: a new one for each sample
                    time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        gen = threading.Thread(target=generate_run, args=(base.with_overrides(patients=200_000, seed=9),
                                                           tmp / "concurrent"),
                               kwargs={"engine": engine, "persist": True})
        gen.start()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=session, args=(k,)) for k in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        q_wall = time.perf_counter() - t0
        gen.join()
        stop.set()
        watcher.join()
        status = db.pool_status(engine)
        print(f"{args.sessions} sessions x 20 rounds of the dashboard's queries + a 200,000-patient persisted run: "
              f"{q_wall:.1f} s")
        for name, samples in lat.items():
            print(f"  {name:<15} {len(samples):>5} calls  {_ms(samples)}  (under load)")
        print(f"  connections open in pg_stat_activity: max {max(seen)} (budget {status['budget']}); "
              f"checked out afterwards: {status['checked_out']}; waits {status['waits']}, timeouts "
              f"{status['timeouts']}")
        # the same queries alone (one session): what a user sees on an idle server
        solo: dict[str, list[float]] = {"list_runs": [], "run_summary": []}
        for _ in range(200):
            for name, fn, a in (("list_runs", db.list_runs, ()), ("run_summary", db.run_summary, (run_ids[0],))):
                t = time.perf_counter()
                fn(engine, *a)
                solo[name].append((time.perf_counter() - t) * 1000)
        for name, samples in solo.items():
            print(f"  {name:<15} alone: {_ms(samples)}")
        db.dispose_all()
        with admin.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                                {"a": app}).scalar()
        print(f"  connections left after dispose: {left}")
    finally:
        db.dispose_all()
        if not args.keep:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema_name}" CASCADE')
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
