"""Dashboard sessions during a big run: does a run slow the pages, do the pages slow the run?

    .venv/bin/python -m benchmarks.bench_sessions [--patients 1000000] [--sessions 20] [--every 1.0]
                                                  [--url postgresql://postgres@127.0.0.1:5432/test] [--sqlite]

1. The CLI baseline: ``python -m core generate --patients N --db`` into the database (its own PostgreSQL schema,
   dropped at the end; ``--sqlite``: the embedded file), timed by its manifest (``elapsed_s``, which includes the
   database load).
2. The dashboard: this process plays the server (its Streamlit caches: the job registry, the database link, the
   metrics sampler) with ``--sessions`` AppTest sessions, each on its own thread, rerunning a page every
   ``--every`` seconds as an open browser tab's polling fragment does (Generate, Monitor, Runs, Explore and Scenario
   in turn). Meanwhile the same N-patient run is submitted from the Generate page's registry and saved to the
   database. Reports the run's time against the CLI's (goal: within 1.5x) and the server-side script-run time
   of every page (app.py's timer around ``pg.run()``; goal: p95 <= 200 ms), plus each session's round trip.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("views/generate.py", "views/monitor.py", "views/runs.py", "views/explore.py", "views/scenario.py")


def pct(values: list[float], q: float) -> float | None:
    from core.metrics import percentile
    return percentile(values, q)


def _schema(url: str) -> tuple[str, str, callable]:
    """A fresh PostgreSQL schema for the benchmark: its URL, its name and how to drop it."""
    import sqlalchemy as sa
    name = f"mpg_bench_sessions_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')

    def drop():
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={name}')}", name, drop


def cli_run(patients: int, out: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "core", "generate", "--patients", str(patients), "--seed", "21",
                           "--db", "--quiet", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"CLI run failed ({done.returncode}): {done.stderr}")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["wall_s"] = time.perf_counter() - t0
    return manifest


def session(number: int, stop: threading.Event, every: float, trips: list, errors: list) -> None:
    """One browser tab: open the dashboard, then rerun a page every ``every`` seconds until ``stop``."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    i = number  # sessions start on different pages
    while not stop.is_set():
        page = PAGES[i % len(PAGES)]
        t0 = time.perf_counter()
        try:
            at.switch_page(page).run()
            if at.exception:
                errors.append(f"{page}: {at.exception[0].message}")
        except Exception as exc:  # a timeout or an AppTest error: counted, the session goes on
            errors.append(f"{page}: {type(exc).__name__}: {exc}")
        trips.append((page, time.perf_counter() - t0))
        i += 1
        stop.wait(max(0.0, every - (time.perf_counter() - t0)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between a session's script runs")
    ap.add_argument("--url", default=os.environ.get("MPG_TEST_DATABASE_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--sqlite", action="store_true", help="the embedded SQLite file instead of PostgreSQL")
    ap.add_argument("--skip-cli", type=float, default=None, metavar="SECONDS",
                    help="skip the CLI baseline and compare with this many seconds")
    args = ap.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="mpg-bench-sessions-"))
    drop = None
    if args.sqlite:
        os.environ.pop("DATABASE_URL", None)
        where = "SQLite"
    else:
        os.environ["DATABASE_URL"], where, drop = _schema(args.url)
        where = f"PostgreSQL schema {where}"
    os.environ["MPG_DATA_DIR"] = str(data_dir)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        print(f"{args.patients:,} patients saved to {where}; {args.sessions} sessions, a script run each every "
              f"{args.every:g} s")
        if args.skip_cli is None:
            baseline = cli_run(args.patients, data_dir / "cli-baseline", env)
            cli_s = baseline["elapsed_s"]
            print(f"CLI run: {cli_s:.1f} s by its manifest ({baseline['wall_s']:.1f} s wall, "
                  f"peak {baseline['peak_rss_mb']:.0f} MB, persisted {baseline.get('persisted')})")
        else:
            cli_s = args.skip_cli

        # the server: shared caches warmed by a first session, a small finished run for Explore
        import streamlit.testing.v1.app_test as app_test_module
        from streamlit.runtime.scriptrunner.script_cache import ScriptCache
        shared_cache = ScriptCache()  # a server compiles each page once, AppTest would on every run
        app_test_module.ScriptCache = lambda: shared_cache
        from streamlit.testing.v1 import AppTest

        import resources
        from core.scenario import load_scenario
        AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        registry = resources.job_registry()
        warm = registry.submit(load_scenario("default").with_overrides(patients=20_000, seed=3), persist=True)
        registry.wait(warm.run_id, 300)
        resources.run_history.clear()

        stop, trips, errors = threading.Event(), [], []
        threads = [threading.Thread(target=session, args=(i, stop, args.every, trips, errors), daemon=True)
                   for i in range(args.sessions)]
        for thread in threads:
            thread.start()
        time.sleep(max(3.0, args.every * 3))  # every session is open and polling
        resources.page_timings().clear()
        before = len(trips)
        t0 = time.perf_counter()
        job = registry.submit(load_scenario("default").with_overrides(patients=args.patients, seed=21), persist=True,
                              scenario_name="bench")
        view = registry.wait(job.run_id, 3600).view()
        wall = time.perf_counter() - t0
        timings = resources.page_timings().stats()
        during = trips[before:]
        stop.set()
        for thread in threads:
            thread.join(timeout=120)

        run_s = view["elapsed_s"]
        print(f"dashboard run: {view['status']}, {run_s:.1f} s by its manifest ({wall:.1f} s from submit), "
              f"peak {view['peak_rss_mb']:.0f} MB (the run process's own), {view['db_note'] or 'saved to the database'}")
        print(f"  run vs CLI: {run_s / cli_s:.2f}x (goal <= 1.5x)")
        print(f"server-side script runs during the run ({sum(t['runs'] for t in timings.values())} runs):")
        for page, t in sorted(timings.items()):
            print(f"  {page:<10} runs {t['runs']:>5}  p50 {t['p50_ms']:>7.1f} ms  p95 {t['p95_ms']:>7.1f} ms  "
                  f"max {t['max_ms']:>8.1f} ms")
        every_ms = [ms for t in timings.values() for ms in [t["p95_ms"]]]
        print(f"  worst page p95 {max(every_ms):.1f} ms (goal <= 200 ms)")
        rt = [s * 1000 for _, s in during]
        print(f"session round trips (AppTest, client side) during the run: {len(rt)}, p50 {pct(rt, 50):.0f} ms, "
              f"p95 {pct(rt, 95):.0f} ms, max {max(rt):.0f} ms")
        if errors:
            print(f"{len(errors)} session error(s), first: {errors[0]}")
        return 0 if view["status"] == "completed" else 1
    finally:
        if drop is not None:
            from core import db
            db.dispose_all()
            drop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
