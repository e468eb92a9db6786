"""The Sink: one output file per table, written batch by batch on worker threads, renamed into place on close.

Lifecycle: ``open()`` -> ``write(batch)``... -> ``close()`` returns the manifest's file entries; ``abort()``
removes every file the sink created. As a context manager it opens on enter, closes on a normal exit and
aborts on any exception (KeyboardInterrupt included).

``write`` hands the batch's tables to worker threads (lanes, at most one per core) and returns at once; the next
``write`` (or ``close``) first waits for them and re-raises their error. So one batch is being written while the engine builds the next, and
memory holds at most two batches plus a few serialised pieces (~10 MB each) per file.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Protocol

import polars as pl

from core.schema import TABLES, Batch

from .crypto import Seal
from .layers import Output

LARGEST_FIRST = ("vitals", "events", "patients", "conditions")  # queue order, so lanes end at about the same time


class Encoder(Protocol):
    """Serialises what one file receives per batch into a byte stream."""

    def write(self, payload: Any) -> int: ...  # returns the rows written
    def finish(self) -> None: ...  # footer / closing bracket
    def discard(self) -> None: ...  # release without finishing


class Sink:
    ext: ClassVar[str]
    tables: ClassVar[tuple[str, ...]] = tuple(TABLES)  # one file per entry, named <table>.<suffix>

    def __init__(self, out_dir: str | Path, *, compress: bool = False, password: str | None = None,
                 schemas: dict[str, dict] | None = None):
        if password is not None and not password:
            raise ValueError("password must not be empty (pass None for no encryption)")
        self.out_dir = Path(out_dir)
        self.compress = compress
        self.suffix = self.ext + (".gz" if compress else "") + (".enc" if password else "")
        self.files: list[dict] | None = None  # set by close()
        # each table's columns: the contract's, or a run's own (a medical plan adds patient columns)
        self.schemas: dict[str, dict] = {**TABLES, **(schemas or {})}
        self._password = password
        self._seal: Seal | None = None
        self._outputs: dict[str, Output] = {}
        self._encoders: dict[str, Encoder] = {}
        self._rows = dict.fromkeys(self.tables, 0)
        self._committed: list[Path] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._state = "new"  # new -> open -> closed | failed -> aborted

    # --- per format -------------------------------------------------------------------------------------
    def _encoder(self, table: str, stream) -> Encoder:
        raise NotImplementedError

    def _payloads(self, batch: Batch) -> dict[str, Any]:
        """What each file's encoder gets from a batch: by default its table's frame."""
        return batch.tables()

    @property
    def seal(self) -> Seal | None:
        """The run's key (one derivation per sink), for more files of the run encrypted alike; None in clear."""
        return self._seal

    # --- lifecycle --------------------------------------------------------------------------------------
    def open(self) -> Sink:
        self._expect("new")
        self._state = "open"  # from here on abort() has something to clean up
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._seal = seal = Seal(self._password) if self._password else None  # one key derivation per run
            for table in self.tables:
                self._outputs[table] = out = Output(self.out_dir / f"{table}.{self.suffix}",
                                                    compress=self.compress, seal=seal)
                self._encoders[table] = self._encoder(table, out.stream)
            # more lanes than cores only adds switching: the engine competes for the same cores
            self._pool = ThreadPoolExecutor(min(len(self.tables), os.cpu_count() or 1), thread_name_prefix="sink")
        except BaseException:
            self.abort()  # __exit__ does not run when __enter__ fails
            raise
        return self

    def write(self, batch: Batch) -> None:
        """Queue ``batch`` (its frames must not change afterwards); raises an earlier batch's error."""
        self._expect("open")
        check_schema(batch, self.schemas)
        self._settle()
        payloads = self._payloads(batch)
        self._pending = [self._pool.submit(self._write_one, table, payloads[table])
                         for table in sorted(payloads, key=LARGEST_FIRST.index)]

    def write_table(self, name: str, frames) -> None:
        """One more file, ``<name>.<suffix>``, written now from a frame or an iterable of frames with one schema
        (pieces keep memory flat), and renamed with the others on close (e.g. a medical plan's load over time)."""
        self._expect("open")
        self._settle()
        pieces_ = iter([frames] if isinstance(frames, pl.DataFrame) else frames)
        first = next(pieces_)
        self.schemas[name] = dict(first.schema)
        self._outputs[name] = out = Output(self.out_dir / f"{name}.{self.suffix}", compress=self.compress,
                                           seal=self._seal)
        self._encoders[name] = self._encoder(name, out.stream)
        self._rows[name] = 0
        self.tables = (*self.tables, name)
        self._write_one(name, first)
        for frame in pieces_:
            self._write_one(name, frame)

    def close(self) -> list[dict]:
        """Finish and rename every file; returns ``{name, table, rows, bytes, sha256}`` per file."""
        if self._state == "closed":
            return self.files
        self._expect("open")
        self._settle()
        self._pending = [self._pool.submit(self._finish_one, table) for table in self.tables]
        self._settle()
        files = []
        try:
            for table in self.tables:  # everything that can fail in bulk is done; now only renames
                entry = self._outputs[table].commit()
                if not entry.get("held"):  # a held file is the run's to rename (and to remove)
                    self._committed.append(self.out_dir / entry["name"])
                files.append({"name": entry["name"], "table": table, "rows": self._rows[table],
                              "bytes": entry["bytes"], "sha256": entry["sha256"]})
        except BaseException:
            self._state = "failed"
            raise
        self._state, self.files = "closed", files
        self._pool.shutdown()
        return files

    def abort(self) -> None:
        """Remove everything this sink wrote (temp files, and final files of an unfinished close). Idempotent."""
        if self._state in ("closed", "aborted"):
            return
        for out in self._outputs.values():  # a long write in a lane stops at its next piece instead of finishing
            out.abandon()
        for future in self._pending:  # a running write must end before its file is removed
            future.exception()
        self._pending = []
        for encoder in self._encoders.values():
            encoder.discard()
        for out in self._outputs.values():
            out.discard()
        for path in self._committed:
            path.unlink(missing_ok=True)
        if self._pool is not None:
            self._pool.shutdown()
        self._state = "aborted"

    def __enter__(self) -> Sink:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()

    # --- internals --------------------------------------------------------------------------------------
    def _write_one(self, table: str, payload: Any) -> None:
        self._rows[table] += self._encoders[table].write(payload)

    def _finish_one(self, table: str) -> None:
        self._encoders[table].finish()
        self._outputs[table].finish()

    def _settle(self) -> None:
        """Wait for every queued task, then raise the first error (the sink is then unusable: abort it)."""
        pending, self._pending = self._pending, []
        errors = [e for e in (f.exception() for f in pending) if e is not None]
        if errors:
            self._state = "failed"
            raise errors[0]

    def _expect(self, state: str) -> None:
        if self._state != state:
            raise RuntimeError(f"{type(self).__name__} is {self._state}, expected {state}")


def check_schema(batch: Batch, schemas: dict[str, dict] = TABLES) -> None:
    """Every file has one schema for the whole run, so each frame must match its table's schema exactly
    (core.schema.TABLES, or the run's own)."""
    for table, frame in batch.tables().items():
        if frame.schema != pl.Schema(schemas[table]):
            want, got = pl.Schema(schemas[table]), frame.schema
            diff = sorted({c for c in {*want, *got} if want.get(c) != got.get(c)}) or "column order"
            raise ValueError(f"{table} frame does not match the run's {table} schema: {diff}")


def pieces(frame: pl.DataFrame, rows: int):
    """Zero-copy slices of ``rows`` rows, so serialised text stays bounded per piece."""
    return (frame.slice(offset, rows) for offset in range(0, frame.height, rows))
