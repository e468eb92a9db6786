"""FHIR format: the four contract tables as Parquet plus ``fhir/Bundle.ndjson``, one FHIR R4 Bundle per line.

The bundles' text comes from ``core.fhir.BundleBuilder.render_parts`` (polars string expressions over a whole
batch), rendered in pieces of ``PIECE_PATIENTS`` patients; this sink streams each piece's rows to the file as
polars writes them (``write_rows``), so memory stays flat for any run size. Two ways to get there, with the same bytes:

- with generator workers (``--workers`` 2 or more; ``block_transform()``): each worker process renders the
  blocks it generates into a hidden spill file next to the bundle file (``.Bundle.ndjson.block-<run>-<first id>``)
  and the sink copies the spill files in block order through the layers, deleting each once copied. Rendering
  then runs on every core; the sink only reads, hashes, (compresses, encrypts) and writes. At most 2 x workers
  blocks are in flight, so spill files take up to ~330 MB each of extra disk (mostly page cache: each is read
  back within seconds and deleted). Failed or cancelled runs remove them with their other files.
- without (``write(batch)``, ``--workers 1``, the default and on 2 cores the faster and leaner way): the sink
  renders the batch itself, ``BundleEncoder.WINDOW`` pieces at a time on threads.

gzip (``.gz``) and AES-256-GCM (``.enc``) apply to the bundle file like to every other file; the manifest lists
it as ``fhir/Bundle.ndjson[.gz][.enc]``.
"""
from __future__ import annotations

import secrets
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from core.fhir import PROFILES, BundleBuilder
from core.schema import Batch

from .base import Sink
from .parquet import ParquetSink
from .text import Forward

PIECE_PATIENTS = 4_096  # ~80 MB of JSON per piece rendered in this process
WORKER_PIECE_PATIENTS = 2_048  # in each worker process: -100 MB of the two workers' RSS, same speed
FOLDER = "fhir"
SPILL_READ = 4 << 20  # bytes per read when copying a spill file into the layers
WRITE_BUFFER = 1 << 20


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


def write_rows(rows: pl.DataFrame, stream) -> None:
    """Write ``BundleBuilder.render_parts`` rows end to end to ``stream`` (anything with ``write(bytes)``): polars
    hands over ~10 MB buffers, so no piece's text is held twice."""
    rows.write_csv(Forward(stream), include_header=False, quote_style="never", line_terminator="")


class BundleEncoder:
    """Renders the pieces of a batch on ``WINDOW`` threads while this thread writes the finished ones in order:
    polars writes each piece's rows straight into the layers below in ~10 MB buffers, so only the pieces in the
    window and the one being written are held, never a batch's text. A render is mostly one-threaded polars work;
    two at a time keep both cores busy (300,000 patients, load ~4: 21-22k bundles/s and ~700 MB peak RSS; one at
    a time: 15-20k/s and ~540 MB; 2,048-patient pieces: 19-21k/s, ~570 MB, +10 % CPU)."""

    WINDOW = 2

    def __init__(self, stream, builder: BundleBuilder):
        self._stream, self._builder = stream, builder
        self._pool = ThreadPoolExecutor(self.WINDOW, thread_name_prefix="sink-fhir")

    def write(self, batch: Batch) -> int:
        window: deque[Future] = deque()
        try:
            for piece in piece_batches(batch, PIECE_PATIENTS):
                if len(window) == self.WINDOW:
                    write_rows(window.popleft().result(), self._stream)
                window.append(self._pool.submit(self._builder.render_parts, piece))
            while window:
                write_rows(window.popleft().result(), self._stream)
        finally:
            wait(window)  # no render outlives a failed write
        return batch.size

    def finish(self) -> None:
        self._pool.shutdown()

    def discard(self) -> None:
        self._pool.shutdown()


@dataclass(frozen=True)
class BlockRenderer:
    """The generator transform of a fhir run (picklable): renders one block's bundles into a spill file in
    ``folder`` and returns ``(path, bundles)``. Runs in a worker process; a failed render leaves no file."""

    seed: int
    profile: str
    folder: str
    token: str

    def spill_path(self, first_id: int) -> Path:
        return Path(self.folder) / f".Bundle.ndjson.block-{self.token}-{first_id}"

    def __call__(self, batch: Batch) -> tuple[str, int]:
        path = self.spill_path(batch.first_id if batch.size else 0)
        builder = BundleBuilder(self.seed, self.profile)
        try:
            with open(path, "xb", buffering=WRITE_BUFFER) as file:
                for piece in piece_batches(batch, WORKER_PIECE_PATIENTS):
                    write_rows(builder.render_parts(piece), file)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return str(path), batch.size


class FhirSink(Sink):
    """Bundles into ``<out>/fhir/Bundle.ndjson``; the contract tables through an inner ParquetSink."""

    ext = "ndjson"
    tables = ("Bundle",)

    def __init__(self, out_dir: str | Path, *, compress: bool = False, password: str | None = None,
                 profile: str = "collection", seed: int = 0, schemas: dict[str, dict] | None = None):
        if profile not in PROFILES:
            raise ValueError(f"unknown FHIR profile {profile!r}; allowed: {', '.join(PROFILES)}")
        self.run_dir = Path(out_dir)
        super().__init__(self.run_dir / FOLDER, compress=compress, password=password)
        self.profile, self.seed = profile, seed
        self._tables = ParquetSink(self.run_dir, compress=compress, password=password, schemas=schemas)
        self._made_folder = False
        self._token = secrets.token_hex(4)  # names this sink's spill files

    def block_transform(self) -> BlockRenderer:
        """For ``generator.stream(..., transform=...)``: render each block in the worker that made it; pass the
        results to ``write(batch, extras)``."""
        return BlockRenderer(self.seed, self.profile, str(self.out_dir), self._token)

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

    def write(self, batch: Batch, extras: list[tuple[str, int]] | None = None) -> None:
        """Queue the tables (inner sink's lanes) and the bundles (this sink's lane); raises an earlier error.

        ``extras``: the ``block_transform()`` results that came with ``batch`` (spill files, in block order);
        without it the sink renders ``batch`` itself."""
        self._expect("open")
        self._tables.write(batch)  # checks the schema first
        self._settle()
        if extras is None:
            self._pending = [self._pool.submit(self._write_one, "Bundle", batch)]
        else:
            self._pending = [self._pool.submit(self._copy_spills, list(extras))]

    def write_table(self, name: str, frame) -> None:
        """One more table beside the four (written as Parquet like them)."""
        self._expect("open")
        self._tables.write_table(name, frame)

    def _copy_spills(self, spills: list[tuple[str, int]]) -> None:
        stream = self._outputs["Bundle"].stream
        for path, bundles in spills:
            with open(path, "rb") as file:
                while data := file.read(SPILL_READ):
                    stream.write(data)
            Path(path).unlink()
            self._rows["Bundle"] += bundles

    def _remove_spills(self) -> None:
        for path in self.out_dir.glob(f".Bundle.ndjson.block-{self._token}-*"):
            path.unlink(missing_ok=True)

    def close(self) -> list[dict]:
        if self._state == "closed":
            return self.files
        self._expect("open")
        self._settle()
        self._tables._settle()
        if self._rows["Bundle"] != self._tables._rows["patients"]:  # a spill file that never arrived
            self._state = "failed"
            raise RuntimeError(f"{self._rows['Bundle']:,} FHIR bundles written for "
                               f"{self._tables._rows['patients']:,} patients")
        tables = self._tables.close()
        bundles = super().close()
        self.files = tables + [{**f, "name": f"{FOLDER}/{f['name']}", "table": "fhir"} for f in bundles]
        return self.files

    def abort(self) -> None:
        self._tables.abort()
        super().abort()
        if self.out_dir.exists():
            self._remove_spills()
        if self._made_folder and self.out_dir.exists() and not any(self.out_dir.iterdir()):
            shutil.rmtree(self.out_dir, ignore_errors=True)
