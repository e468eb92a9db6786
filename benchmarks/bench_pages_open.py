"""How long Explore takes to open a run and draw Flow, per file format, the first time and the next.

    .venv/bin/python -m benchmarks.bench_pages_open [--patients 200000] [--formats parquet,csv+gz,ndjson]

For each format a ``--patients`` run is written to a throw-away data folder, then timed through the dashboard's own
cached functions (``resources.explore_overview`` and ``resources.explore_flow``, their caches cleared before
each measurement): the first open (which converts a text run to Parquet once, ``core.explore.convert_run``), the
Flow view after it, and both again on a second visit (files converted, Streamlit caches cold).
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=200_000)
    ap.add_argument("--formats", default="parquet,csv+gz,ndjson")
    args = ap.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="mpg-bench-open-"))
    os.environ["MPG_DATA_DIR"] = str(data_dir)
    sys.path.insert(0, str(ROOT))
    import resources
    from core import runs
    from core.run import generate_run
    from core.scenario import load_scenario

    scenario = load_scenario("default").with_overrides(patients=args.patients, seed=3)
    print(f"{args.patients:,} patients; seconds (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'format':<10} {'convert':>8} {'open':>8} {'Flow':>8} {'open again':>11} {'Flow again':>11}")
    try:
        for name in args.formats.split(","):
            fmt, _, gz = name.partition("+")
            folder = data_dir / "runs" / name.replace("+", "")
            generate_run(scenario, folder, fmt=fmt, compress=bool(gz))
            path, stamp = str(folder), runs.run_stamp(folder)

            def timed(fn) -> float:
                resources.explore_overview.clear()
                resources.explore_flow.clear()
                t0 = time.perf_counter()
                fn()
                return time.perf_counter() - t0

            convert = timed(lambda: resources.explore_convert(path))
            first = timed(lambda: resources.explore_overview(path, stamp))
            t0 = time.perf_counter()
            resources.explore_flow(path, stamp)
            flow = time.perf_counter() - t0
            again = timed(lambda: resources.explore_overview(path, stamp))
            t0 = time.perf_counter()
            resources.explore_flow(path, stamp)
            flow_again = time.perf_counter() - t0
            print(f"{name:<10} {convert:>8.2f} {first:>8.2f} {flow:>8.2f} {again:>11.2f} {flow_again:>11.2f}")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
