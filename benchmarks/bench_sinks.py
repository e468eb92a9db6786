"""Throughput of the file sinks on synthetic batches of the contract schema (random values, real dtypes).

    .venv/bin/python benchmarks/bench_sinks.py [--patients 200000] [--chunk 50000] [--formats parquet,csv]
                                               [--layers plain,gzip,aes,gzip+aes] [--dir /dev/shm]

Per format and layer combination: wall and CPU seconds, patients/s, rows/s, output MB/s (final file bytes).
Batches are built before timing, so only the sink is measured.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.schema import TABLES, Batch  # noqa: E402
from core.sinks import FORMATS, create_sink, layers  # noqa: E402

EVENTS_PER_PATIENT, CONDITIONS_PER_PATIENT, VITALS_PER_PATIENT = 10, 2, 20
GIVEN = ["Anna", "Jörg", "Łukasz", "Marie", "John", "Sofía", "Mehmet", "Aino", "Piotr", "Chloé"]
FAMILY = ["Nowak", "Müller", "Smith", "Dupont", "Rossi", "Yılmaz", "Virtanen", "García", "Novák", "Jensen"]
DISPLAYS = ["Blast injury", "Gunshot wound of thorax", "Fracture of femur", "Burn of skin", "Concussion"]
CODES = [str(100_000_000 + 7_919 * i) for i in range(300)]
EPOCH_2026_US = 1_767_225_600_000_000


def _pick(rng: np.random.Generator, values, n: int) -> pl.Series:
    return pl.Series(values).gather(rng.integers(0, len(values), n))


def _frame(rng: np.random.Generator, table: str, ids: np.ndarray, per_patient: int) -> pl.DataFrame:
    """Rows of one table for `ids`, `per_patient` rows each; every column drawn whole with numpy.

    Value shapes roughly like the engine's (times rising per patient, codes from small vocabularies,
    mostly-null `detail`), so compression and dictionary encoding cost what they would on real runs.
    """
    n = len(ids) * per_patient
    pid = np.repeat(ids, per_patient)
    steps = rng.integers(60, 7_200, n).reshape(len(ids), per_patient).cumsum(axis=1)
    rising = (EPOCH_2026_US + pid * 10_000_000 + (steps - steps[:, :1]).ravel() * 1_000_000)
    special = {
        "patient_id": pid,
        "seq": np.tile(np.arange(per_patient), len(ids)),
        "rank": np.tile(np.arange(1, per_patient + 1), len(ids)) if table == "conditions" else None,
        "service_number": pl.Series(pid).cast(pl.String).str.zfill(9),
        "given_name": _pick(rng, GIVEN, n), "family_name": _pick(rng, FAMILY, n),
        "nationality": _pick(rng, ["POL", "DEU", "USA", "FRA", "ITA"], n),
        "front": _pick(rng, ["North", "East", "South"], n),
        "condition_code": _pick(rng, CODES, n), "code": _pick(rng, CODES, n),
        "condition_display": _pick(rng, DISPLAYS, n), "display": _pick(rng, DISPLAYS, n),
        "event_id": pl.Series(pid // 3).cast(pl.String).str.zfill(8),
        "detail": _pick(rng, [None] * 7 + ["ground", "air", "387713003"], n),
        "birth_date": pl.Series(rng.integers(-5_000, 3_000, n)).cast(pl.Int32).cast(pl.Date),
        "age": rng.integers(18, 66, n),
        "value": np.round(rng.normal(80, 15, n)),
    }
    cols = {}
    for name, dtype in TABLES[table].items():
        if isinstance(dtype, pl.Enum):
            cols[name] = _pick(rng, dtype.categories.to_list(), n)
        elif special.get(name) is not None:
            cols[name] = special[name]
        elif dtype == pl.Datetime("us", "UTC"):
            cols[name] = rising
        elif dtype == pl.Boolean:
            cols[name] = rng.random(n) < 0.1
    return pl.DataFrame(cols).cast(TABLES[table])


def synthetic_batch(rng: np.random.Generator, first_id: int, n: int) -> Batch:
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    return Batch(_frame(rng, "patients", ids, 1), _frame(rng, "events", ids, EVENTS_PER_PATIENT),
                 _frame(rng, "conditions", ids, CONDITIONS_PER_PATIENT), _frame(rng, "vitals", ids, VITALS_PER_PATIENT))


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def run(fmt: str, batches: list[Batch], out: Path, *, compress: bool, password: str | None) -> dict:
    start, cpu = time.perf_counter(), _cpu()
    with create_sink(fmt, out, compress=compress, password=password) as sink:
        for batch in batches:
            sink.write(batch)
        files = sink.close()
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
    patients = sum(b.size for b in batches)
    rows = sum(sum(t.height for t in b.tables().values()) for b in batches)
    size = sum(f["bytes"] for f in files)
    return {"format": fmt, "gzip": compress, "aes": password is not None, "s": elapsed, "cpu": cpu,
            "patients/s": patients / elapsed, "rows/s": rows / elapsed, "MB": size / 1e6, "MB/s": size / 1e6 / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--layers", default="plain,gzip,aes,gzip+aes")
    parser.add_argument("--dir", default=None, help="where to write (default: the system temp folder)")
    parser.add_argument("--gzip-level", type=int, default=layers.GZIP_LEVEL)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (the machine may be shared)")
    args = parser.parse_args()
    layers.GZIP_LEVEL = args.gzip_level
    rng = np.random.default_rng(7)
    batches = [synthetic_batch(rng, first, min(args.chunk, args.patients - first + 1))
               for first in range(1, args.patients + 1, args.chunk)]
    print(f"{args.patients:,} patients in {len(batches)} batches of <= {args.chunk:,}, gzip level {args.gzip_level}")
    print(f"{'format':8} {'layers':9} {'s':>6} {'cpu s':>6} {'patients/s':>11} {'rows/s':>11} {'MB':>8} {'MB/s':>7}")
    for fmt in args.formats.split(","):
        for stack in args.layers.split(","):
            results = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                    results.append(run(fmt, batches, Path(tmp), compress="gzip" in stack,
                                       password="bench" if "aes" in stack else None))
            r = min(results, key=lambda result: result["s"])
            print(f"{fmt:8} {stack:9} {r['s']:6.2f} {r['cpu']:6.2f} {r['patients/s']:11,.0f} {r['rows/s']:11,.0f} "
                  f"{r['MB']:8.1f} {r['MB/s']:7.1f}", flush=True)


if __name__ == "__main__":
    main()
