"""Script-run time of the Generate, Monitor and Runs pages (the timer app.py keeps around ``pg.run()``).

    .venv/bin/python -m benchmarks.bench_pages_ops [--runs 60] [--history 12]

Uses streamlit.testing's AppTest against a throw-away data folder holding ``--history`` finished runs.
Reports p50 / p95 per page with warm caches and no generation running (the brief's budget: p95 < 50 ms),
then again while a large generation runs in the background, and the cache hit rate after the session.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("views/generate.py", "views/monitor.py", "views/runs.py")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60, help="script runs per page and phase")
    ap.add_argument("--history", type=int, default=12, help="finished runs in the data folder")
    args = ap.parse_args()
    os.environ["MPG_DATA_DIR"] = tempfile.mkdtemp(prefix="mpg-bench-pages-")
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))

    from streamlit.testing.v1 import AppTest

    # AppTest compiles every page again on each run (a new ScriptCache per run); a server compiles each page
    # once per process. Share one cache so the timings are what a server's users see.
    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    shared_cache = ScriptCache()
    app_test_module.ScriptCache = lambda: shared_cache

    import resources
    from core.scenario import load_scenario

    registry = resources.job_registry()
    base = load_scenario("default")
    for seed in range(args.history):
        job = registry.submit(base.with_overrides(patients=2_000, seed=seed), fmt=("parquet", "csv")[seed % 2])
        registry.wait(job.run_id, 120)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    for page in PAGES * 3:  # warm every cache and code path
        at.switch_page(page).run()
        assert not at.exception, at.exception

    def phase(label: str) -> None:
        resources.page_timings().clear()
        for _ in range(args.runs):
            for page in PAGES:
                at.switch_page(page).run()
                assert not at.exception, at.exception
        print(f"\n{label} ({args.runs} script runs per page, {args.history} runs in the history)")
        print(f"{'page':<10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for page, s in sorted(resources.page_timings().stats().items()):
            print(f"{page:<10} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f} {s['max_ms']:>8.1f}")

    phase("warm caches, no generation running")
    job = registry.submit(base.with_overrides(patients=20_000_000, seed=1))
    while job.patients_done == 0:
        time.sleep(0.05)
    phase("while a 20,000,000-patient parquet run is generating")
    done_during = job.patients_done
    registry.cancel()
    registry.wait(job.run_id, 60)
    print(f"(the run reached {done_during:,} patients during the phase and was then cancelled)")
    hit = resources.cache_hit_rate()
    print(f"\ncache hit rate over the session: {hit:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
