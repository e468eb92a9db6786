"""Script-run time of the Scenario, Explore and Replay pages, preview regeneration time, and how fast a big run opens.

    .venv/bin/python -m benchmarks.bench_pages [--runs 40] [--patients 20000] [--big 1000000]

Uses streamlit.testing's AppTest against a throw-away data folder holding one ``--patients`` run (the timer
app.py keeps around ``pg.run()`` measures each script run). Reports p50 / p95 per page and Explore view with warm
caches and no generation running (budget: p95 < 50 ms), the Scenario page's script run when a change regenerates
the preview (budget: about 100 ms), and the cache hit rate. ``--big N`` also writes an N-patient run and times
opening it cold: each Explore aggregate read lazily from Parquet, then the page's first script run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPLORE_VIEWS = ("Overview", "Flow", "10-1-2", "Occupancy", "Calibration", "Patients")


def pct(values: list[float], q: float) -> float:
    from core.metrics import percentile
    return percentile(values, q)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40, help="script runs per page (and per Explore view)")
    ap.add_argument("--patients", type=int, default=20_000, help="patients in the run explored")
    ap.add_argument("--big", type=int, default=0, help="also time opening a run of this many patients (cold)")
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="mpg-bench-pages-"))
    os.environ["MPG_DATA_DIR"] = str(data_dir)
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
    from core import explore, generator
    from core.run import generate_run
    from core.scenario import load_scenario

    base = load_scenario("default")
    try:
        t0 = time.perf_counter()
        generate_run(base.with_overrides(patients=args.patients, seed=3), data_dir / "runs" / "bench")
        print(f"wrote a {args.patients:,}-patient run in {time.perf_counter() - t0:.1f} s")

        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
        timings = resources.page_timings()

        def timed(label: str, step) -> None:
            step()  # warm
            timings.clear()
            for _ in range(args.runs):
                step()
                assert not at.exception, at.exception
            s = next(iter(timings.stats().values()))
            print(f"{label:<22} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f} {s['max_ms']:>8.1f}")

        print(f"\nwarm caches, no generation running ({args.runs} script runs each)")
        print(f"{'page / view':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        at.switch_page("views/scenario.py").run()
        timed("Scenario", at.run)
        at.switch_page("views/explore.py").run()
        for view in EXPLORE_VIEWS:
            at.radio(key="ex_view").set_value(view).run()
            timed(f"Explore: {view}", at.run)
        at.switch_page("views/replay.py").run()
        timed("Replay", at.run)
        snap = resources.cache_stats().snapshot()
        calls = sum(v["calls"] for v in snap.values())
        hits = sum(v["hits"] for v in snap.values())
        print(f"cache hit rate over the session so far: {hits / calls:.1%} ({hits:,} hits of {calls:,} calls)")

        # preview regeneration: every new seed is a cache miss (a new sample of 3,000 patients is drawn)
        at.switch_page("views/scenario.py").run()
        timings.clear()
        for seed in range(1000, 1000 + args.runs):
            at.number_input(key="sc_seed").set_value(seed).run()
            assert not at.exception, at.exception
        s = next(iter(timings.stats().values()))
        print(f"\nScenario page script run when a change regenerates the 3,000-patient preview: "
              f"p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms")
        core_ms = []
        for seed in range(2000, 2000 + args.runs):
            t = time.perf_counter()
            explore.preview_summary(generator.generate(base.with_overrides(patients=3000, seed=seed)).patients)
            core_ms.append((time.perf_counter() - t) * 1000)
        print(f"  of which drawing and summarising the sample (core): p50 {pct(core_ms, 50):.1f} ms, "
              f"p95 {pct(core_ms, 95):.1f} ms")

        if args.big:
            big = data_dir / "runs" / "big"
            t0 = time.perf_counter()
            generate_run(base.with_overrides(patients=args.big, seed=4), big)
            print(f"\nwrote a {args.big:,}-patient run in {time.perf_counter() - t0:.1f} s; opening it cold:")
            run = explore.open_run(big)
            start, end = run.window
            steps = {
                "key figures": lambda: explore.key_figures(run.patients()),
                "overview (all of it)": lambda: resources.explore_overview.__wrapped__(str(big), "x"),
                "Sankey links": lambda: explore.flow_links(run.patients(), run.events()),
                "10-1-2 timings": lambda: explore.ten_one_two(run.patients(), run.events()),
                "occupancy (6 h)": lambda: explore.occupancy(run.events(), start, end, "6h"),
                "replay frames (3 h)": lambda: explore.replay_frames(run.patients(), run.events(), start, end, "3h"),
                "patient table page": lambda: explore.patient_page(run.patients(), {"triage": ["T1"]}),
                "patient card": lambda: explore.patient_card(run, args.big // 2),
            }
            for label, fn in steps.items():
                t = time.perf_counter()
                fn()
                print(f"  {label:<22} {time.perf_counter() - t:>6.2f} s")
            resources.find_runs.clear()  # the list is cached for 15 s: show the new run at once
            at.switch_page("views/scenario.py").run()
            t = time.perf_counter()
            at.switch_page("views/explore.py").run()  # the newest run, the big one, is selected
            assert not at.exception, at.exception
            shown = {m.label: m.value for m in at.metric}.get("Patients")
            assert shown == f"{args.big:,}", shown
            print(f"  Explore page, first view of the run (cold cache): {time.perf_counter() - t:.2f} s")
            t = time.perf_counter()
            at.run()
            print(f"  Explore page, next script run (warm): {(time.perf_counter() - t) * 1000:.0f} ms (AppTest wall)")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
