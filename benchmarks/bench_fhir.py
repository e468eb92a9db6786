"""End-to-end throughput and memory of ``--format fhir``: engine + Parquet tables + one FHIR Bundle per patient.

    .venv/bin/python benchmarks/bench_fhir.py [--patients 50000,1000000] [--profile collection|ips]
                                              [--workers N] [--dir /tmp] [--keep]

Each case runs ``python -m core generate`` in a fresh process into a temporary folder and prints: seconds,
bundles/s, the manifest's peak RSS (the largest single process: the run's own or its largest worker's), the peak
of the whole process tree's RSS summed (sampled every 0.1 s: the run plus its worker processes, what the machine
really has to hold), the CPU seconds of the whole tree (user + system; steadier than the wall time on a busy
machine), the size of fhir/Bundle.ndjson and the 1-minute load average before and after (the machine is shared:
a load above ~0.5 means other jobs took part of the 2 cores). ``--workers`` defaults to the CLI's default (1);
2 or more renders the bundles in the worker processes. The bundle file of 1,000,000 patients is ~20 GB: pass
--dir on a disk with room (it is deleted unless --keep).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for those already gone)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_case(patients: int, profile: str, folder: Path, workers: int | None) -> dict:
    out = folder / f"fhir-{profile}-{patients}"
    cmd = [sys.executable, "-m", "core", "generate", "--patients", str(patients), "--seed", "7", "--format", "fhir",
           "--fhir-profile", profile, "--out", str(out), "--force", "--quiet"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = subprocess.Popen(cmd, cwd=REPO)
    proc, peak_tree = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak_tree = max(peak_tree, tree_rss(proc))
        except psutil.Error:
            pass
        time.sleep(0.1)
    if child.returncode:
        raise SystemExit(f"generate failed with exit code {child.returncode}")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the run and its reaped workers
    cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    bundle = next(f for f in manifest["files"] if f["name"].startswith("fhir/"))
    return {"out": out, "patients": patients, "profile": profile, "workers": manifest["workers"],
            "seconds": manifest["elapsed_s"], "bundles_per_s": manifest["patients_per_s"],
            "peak_rss_mb": manifest["peak_rss_mb"], "peak_tree_mb": peak_tree / 2**20,
            "bundle_gb": bundle["bytes"] / 1e9, "bytes_per_bundle": bundle["bytes"] / patients,
            "cpu_s": cpu, "load": (load_before, os.getloadavg()[0])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", default="50000,1000000", help="comma-separated run sizes")
    p.add_argument("--profile", default="collection", choices=("collection", "ips"))
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: the CLI's, 1)")
    p.add_argument("--dir", default=None, help="folder for the runs (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated runs")
    args = p.parse_args(argv)
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-fhir-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{'patients':>10} {'profile':<10} {'workers':>7} {'seconds':>8} {'bundles/s':>10} {'peak RSS':>9} "
          f"{'tree RSS':>9} {'CPU s':>7} {'GB':>6} {'KB/bundle':>9} {'load before/after':>18}")
    for n in (int(x) for x in args.patients.split(",")):
        r = run_case(n, args.profile, folder, args.workers)
        print(f"{n:>10,} {args.profile:<10} {r['workers']:>7} {r['seconds']:>8.1f} {r['bundles_per_s']:>10,.0f} "
              f"{r['peak_rss_mb']:>7.0f}MB {r['peak_tree_mb']:>7.0f}MB {r['cpu_s']:>7.1f} {r['bundle_gb']:>6.2f} "
              f"{r['bytes_per_bundle'] / 1e3:>9.1f} {r['load'][0]:>8.2f} / {r['load'][1]:<7.2f}", flush=True)
        if not args.keep:
            shutil.rmtree(r["out"], ignore_errors=True)
    if not args.keep and not args.dir:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
