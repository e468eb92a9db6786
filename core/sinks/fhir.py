"""FHIR format: the four contract tables as Parquet plus ``fhir/Bundle.ndjson``, one FHIR R4 Bundle per line.

The bundles come from ``core.fhir.BundleBuilder`` (polars string expressions over a whole batch). A batch is
rendered in pieces of ``PIECE_PATIENTS`` patients (~20 KB of JSON each, ~90 MB per piece) and streamed to the
file as polars writes it, so memory stays flat for any run size. gzip (``.gz``) and AES-256-GCM (``.enc``) apply to the
bundle file like to every other file; the manifest lists it as ``fhir/Bundle.ndjson[.gz][.enc]``.
"""
from __future__ import annotations

import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from core.fhir import PROFILES, BundleBuilder
from core.schema import Batch

from .base import Sink
from .parquet import ParquetSink

PIECE_PATIENTS = 2_048
FOLDER = "fhir"


def piece_batches(batch: Batch, size: int):
    """Zero-copy sub-batches of ``size`` patients with their rows (child tables are sorted by patient_id)."""
    ids = batch.patients["patient_id"]
    for start in range(0, batch.size, size):
        first, last = ids[start], ids[min(start + size, batch.size) - 1]
        children = []
        for frame in (batch.events, batch.conditions, batch.vitals):
            col = frame["patient_id"]
            lo = col.search_sorted(first, side="left")
            hi = col.search_sorted(last, side="right")
            children.append(frame.slice(lo, hi - lo))
        yield Batch(batch.patients.slice(start, size), *children)


class BundleEncoder:
    """Renders pieces on ``WINDOW`` threads at a time (polars alone keeps only ~1.3 of 2 cores busy on these many
    small steps) and writes them in order."""

    WINDOW = 2

    def __init__(self, stream, builder: BundleBuilder):
        self._stream, self._builder = stream, builder
        self._pool = ThreadPoolExecutor(self.WINDOW, thread_name_prefix="sink-fhir")

    def write(self, batch: Batch) -> int:
        window: deque[Future] = deque()
        try:
            for piece in piece_batches(batch, PIECE_PATIENTS):
                window.append(self._pool.submit(self._builder.render_bytes, piece))
                if len(window) == self.WINDOW:
                    self._stream.write(window.popleft().result())
            while window:
                self._stream.write(window.popleft().result())
        finally:
            wait(window)  # no render outlives a failed write
        return batch.size

    def finish(self) -> None:
        self._pool.shutdown()

    def discard(self) -> None:
        self._pool.shutdown()


class FhirSink(Sink):
    """Bundles into ``<out>/fhir/Bundle.ndjson``; the contract tables through an inner ParquetSink."""

    ext = "ndjson"
    tables = ("Bundle",)

    def __init__(self, out_dir: str | Path, *, compress: bool = False, password: str | None = None,
                 profile: str = "collection", seed: int = 0):
        if profile not in PROFILES:
            raise ValueError(f"unknown FHIR profile {profile!r}; allowed: {', '.join(PROFILES)}")
        self.run_dir = Path(out_dir)
        super().__init__(self.run_dir / FOLDER, compress=compress, password=password)
        self.profile, self.seed = profile, seed
        self._tables = ParquetSink(self.run_dir, compress=compress, password=password)
        self._made_folder = False

    def _encoder(self, table: str, stream) -> BundleEncoder:
        return BundleEncoder(stream, BundleBuilder(self.seed, self.profile))

    def _payloads(self, batch: Batch) -> dict:
        return {"Bundle": batch}

    def open(self) -> FhirSink:
        self._made_folder = not self.out_dir.exists()
        self._tables.open()
        try:
            super().open()
        except BaseException:
            self._tables.abort()
            raise
        return self

    def write(self, batch: Batch) -> None:
        """Queue the tables (inner sink's lanes) and the bundles (this sink's lane); raises an earlier error."""
        self._expect("open")
        self._tables.write(batch)  # checks the schema first
        self._settle()
        self._pending = [self._pool.submit(self._write_one, "Bundle", batch)]

    def close(self) -> list[dict]:
        if self._state == "closed":
            return self.files
        tables = self._tables.close()
        bundles = super().close()
        self.files = tables + [{**f, "name": f"{FOLDER}/{f['name']}", "table": "fhir"} for f in bundles]
        return self.files

    def abort(self) -> None:
        self._tables.abort()
        super().abort()
        if self._made_folder and self.out_dir.exists() and not any(self.out_dir.iterdir()):
            shutil.rmtree(self.out_dir, ignore_errors=True)
