"""JSON: ``patients.json`` holds ONE array of nested patient records; the other three tables are arrays too.

Each element is a patients row with three more keys, ``events``, ``conditions`` and ``vitals``: arrays of that
patient's rows in the other tables, in table order, without the repeated ``patient_id``::

    [
    {"patient_id":1,"service_number":"…",…,"events":[{"seq":0,"time":"…","facility":"POI",…},…],
     "conditions":[{"rank":1,"code":"…",…}],"vitals":[{"time":"…","code":"8867-4",…,"value":112.0,…},…]},
    …
    ]

The data contract asks for all four files in every format, so ``events.json``, ``conditions.json`` and
``vitals.json`` are written as well: each one array of that table's flat rows (with ``patient_id``), the same
objects as a line of the NDJSON format. A consumer that wants one document reads ``patients.json`` alone.
Scalars render as in the other text formats (``text.py``): ISO 8601 times with ``+00:00``, dates
``YYYY-MM-DD``. The array is streamed: ``[`` at open, records as polars writes them as NDJSON with the line
breaks between records turned into ``,\\n`` (JSON strings never hold a raw line break), ``]`` at close.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait

import polars as pl

from core.schema import Batch

from .base import Sink, pieces
from .text import PIECE_ROWS, render

PIECE_PATIENTS = 2_000  # ~4 KB per nested patient: ~9 MB of text per piece
CHILDREN = ("events", "conditions", "vitals")


def nest(batch: Batch) -> pl.DataFrame:
    """Patients with a list-of-struct column per child table (group_by + join, no per-row Python)."""
    frame = batch.patients
    for name in CHILDREN:
        rows = getattr(batch, name).group_by("patient_id", maintain_order=True).agg(
            pl.struct(pl.exclude("patient_id")).alias(name))
        frame = frame.join(rows, on="patient_id", how="left", maintain_order="left")
    return frame.with_columns(pl.col(name).fill_null([]) for name in CHILDREN)


def records(piece: pl.DataFrame) -> bytes:
    """The piece's patients as JSON objects, one a line, joined by commas (no trailing one)."""
    return bytes(render(piece.write_ndjson))[:-1].replace(b"\n", b",\n")


class NestedJsonEncoder:
    """Renders pieces on two threads, ``WINDOW`` at a time, and writes them in order (one file, no table lanes)."""

    WINDOW = 2

    def __init__(self, stream):
        self._stream, self._written = stream, False
        self._pool = ThreadPoolExecutor(self.WINDOW, thread_name_prefix="sink-json")
        stream.write(b"[\n")

    def write(self, batch: Batch) -> int:
        window: deque[Future] = deque()
        try:
            for piece in pieces(nest(batch), PIECE_PATIENTS):
                window.append(self._pool.submit(records, piece))
                if len(window) == self.WINDOW:
                    self._emit(window.popleft().result())
            while window:
                self._emit(window.popleft().result())
        finally:
            wait(window)  # no render outlives a failed write
        return batch.patients.height

    def _emit(self, text: bytes) -> None:
        self._stream.write(b",\n" + text if self._written else text)
        self._written = True

    def finish(self) -> None:
        self._stream.write(b"\n]\n")
        self._pool.shutdown()

    def discard(self) -> None:
        self._pool.shutdown()


class FlatJsonEncoder:
    """One JSON array of a flat table's rows, streamed piece by piece."""

    def __init__(self, stream):
        self._stream, self._written = stream, False
        stream.write(b"[\n")

    def write(self, frame: pl.DataFrame) -> int:
        for piece in pieces(frame, PIECE_ROWS):
            text = records(piece)
            self._stream.write(b",\n" + text if self._written else text)
            self._written = True
        return frame.height

    def finish(self) -> None:
        self._stream.write(b"\n]\n" if self._written else b"]\n")

    def discard(self) -> None:
        pass


class JsonSink(Sink):
    ext = "json"

    def _payloads(self, batch: Batch) -> dict:
        return {"patients": batch, **{name: getattr(batch, name) for name in CHILDREN}}

    def _encoder(self, table: str, stream):
        return NestedJsonEncoder(stream) if table == "patients" else FlatJsonEncoder(stream)
