"""End-to-end throughput and memory of ``--format fhir``: engine + Parquet tables + one FHIR Bundle per patient.

    .venv/bin/python benchmarks/bench_fhir.py [--patients 50000,1000000] [--profile collection|ips]
                                              [--dir /tmp] [--keep]

Each case runs ``python -m core generate`` in a fresh process (so peak RSS is that run's alone) into a temporary
folder, then prints the manifest's numbers: seconds, bundles/s, peak RSS, the size of fhir/Bundle.ndjson.
The bundle file of 1,000,000 patients is ~21 GB: pass --dir on a disk with room (it is deleted unless --keep).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_case(patients: int, profile: str, folder: Path) -> dict:
    out = folder / f"fhir-{profile}-{patients}"
    cmd = [sys.executable, "-m", "core", "generate", "--patients", str(patients), "--seed", "7", "--format", "fhir",
           "--fhir-profile", profile, "--out", str(out), "--force", "--quiet"]
    subprocess.run(cmd, cwd=REPO, check=True)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    bundle = next(f for f in manifest["files"] if f["name"].startswith("fhir/"))
    return {"out": out, "patients": patients, "profile": profile, "seconds": manifest["elapsed_s"],
            "bundles_per_s": manifest["patients_per_s"], "peak_rss_mb": manifest["peak_rss_mb"],
            "bundle_gb": bundle["bytes"] / 1e9, "bytes_per_bundle": bundle["bytes"] / patients}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", default="50000,1000000", help="comma-separated run sizes")
    p.add_argument("--profile", default="collection", choices=("collection", "ips"))
    p.add_argument("--dir", default=None, help="folder for the runs (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated runs")
    args = p.parse_args(argv)
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-fhir-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{'patients':>10} {'profile':<10} {'seconds':>8} {'bundles/s':>10} {'peak RSS':>9} {'GB':>6} {'KB/bundle':>9}")
    for n in (int(x) for x in args.patients.split(",")):
        r = run_case(n, args.profile, folder)
        print(f"{n:>10,} {args.profile:<10} {r['seconds']:>8.1f} {r['bundles_per_s']:>10,.0f} "
              f"{r['peak_rss_mb']:>7.0f}MB {r['bundle_gb']:>6.2f} {r['bytes_per_bundle'] / 1e3:>9.1f}", flush=True)
        if not args.keep:
            shutil.rmtree(r["out"], ignore_errors=True)
    if not args.keep and not args.dir:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
