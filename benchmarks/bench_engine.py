"""Engine benchmark: patients/s and peak RSS per format and size, each case in a fresh process.

    python -m core bench                 # 50,000 and 1,000,000 patients, every format, + memory at 100,000
    python -m core bench --quick         # 50,000 only
    python -m core bench --sizes 200000 --formats parquet --workers 2

Not a timed test: numbers depend on the machine. The older public tool needs about 60 s and 800 MB for
50,000 patients; the speed-up column compares against that.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OLD_TOOL_S_PER_50K = 60.0


def run_case(patients: int, fmt: str, workers: int, chunk: int | None, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "core", "generate", "--patients", str(patients), "--format", fmt,
               "--workers", str(workers), "--out", str(out), "--quiet", "--seed", "1", *extra]
        if chunk:
            cmd += ["--chunk-size", str(chunk)]
        subprocess.run(cmd, check=True, env=os.environ.copy())
        m = json.loads((out / "manifest.json").read_text())
        return {"patients": patients, "format": fmt + (" +" + "+".join(x.strip("-") for x in extra) if extra else ""),
                "workers": workers, "seconds": m["elapsed_s"], "patients_per_s": m["patients_per_s"],
                "peak_rss_mb": m["peak_rss_mb"], "mb_written": round(sum(f["bytes"] for f in m["files"]) / 2**20, 1)}


def stage_case(patients: int, with_calibration: bool) -> dict:
    """The engine alone (no file), with or without the calibration report, in a fresh process."""
    code = (
        "import json,sys,time\n"
        "from core import generator\nfrom core.calibration import Calibration\n"
        "from core.scenario import load_scenario\nfrom core.run import peak_rss_mb\n"
        f"sc = load_scenario('default').with_overrides(patients={patients}, seed=1)\n"
        f"cal = Calibration(sc) if {with_calibration} else None\n"
        "t = time.perf_counter()\n"
        "for b in generator.stream(sc):\n"
        "    cal is not None and cal.add(b)\n"
        "cal is not None and cal.report()\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': round(dt, 3), 'patients_per_s': round(sc.patients / dt, 1),"
        " 'peak_rss_mb': peak_rss_mb()}))\n")
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    return {"patients": patients, "format": "engine" + (" +calibration" if with_calibration else " only"),
            "workers": 1, "mb_written": 0.0, **json.loads(res.stdout)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core bench")
    ap.add_argument("--sizes", default="50000,1000000", help="comma-separated patient counts")
    ap.add_argument("--formats", default="parquet,csv,ndjson,json")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="50,000 patients only")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    sizes = [50_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    rows = []
    if not args.quick:  # what the realistic model costs: the engine without any file, with and without calibration
        base, calibrated = stage_case(max(sizes), False), stage_case(max(sizes), True)
        rows += [base, calibrated]
        print(_line(base), flush=True)
        print(_line(calibrated), flush=True)
        print(f"calibration report costs {base['patients_per_s'] / calibrated['patients_per_s'] - 1:+.0%} "
              "generation time (limit: 25%)", flush=True)
    for n in sizes:
        for fmt in args.formats.split(","):
            for w in (int(x) for x in args.workers.split(",")):
                rows.append(run_case(n, fmt, w, args.chunk_size, []))
                print(_line(rows[-1]), flush=True)
    if not args.quick:
        for extra in (["--compress"], ["--encrypt"]):
            os.environ.setdefault("ENCRYPTION_PASSWORD", "benchmark-only-password")
            rows.append(run_case(sizes[0], "parquet", 1, args.chunk_size, extra))
            print(_line(rows[-1]), flush=True)
        # flat memory: each format at 100,000 and at the largest size
        for fmt in args.formats.split(","):
            big = next((r for r in rows if r["patients"] == max(sizes) and r["format"] == fmt
                        and r["workers"] == 1), None)
            if big:
                small = run_case(100_000, fmt, 1, args.chunk_size, [])
                growth = big["peak_rss_mb"] / small["peak_rss_mb"] - 1
                print(f"memory {fmt}: {small['peak_rss_mb']:.0f} MB at 100,000 vs {big['peak_rss_mb']:.0f} MB at "
                      f"{big['patients']:,} patients ({growth:+.0%})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _line(r: dict) -> str:
    speedup = OLD_TOOL_S_PER_50K * r["patients"] / 50_000 / r["seconds"] if r["seconds"] else float("nan")
    return (f"{r['patients']:>10,} {r['format']:<18} workers {r['workers']}  {r['seconds']:7.2f} s  "
            f"{r['patients_per_s']:>10,.0f} patients/s  peak {r['peak_rss_mb']:6.0f} MB  "
            f"{r['mb_written']:8.1f} MB written  x{speedup:,.0f} vs older tool")


if __name__ == "__main__":
    sys.exit(main())
