"""JSON: one file, ``patients.json``, holding ONE array of nested patient records.

Each element is a patients row with three more keys, ``events``, ``conditions`` and ``vitals``: arrays of that
patient's rows in the other tables, in table order, without the repeated ``patient_id``::

    [
    {"patient_id":1,"service_number":"…",…,"events":[{"seq":0,"time":"…","facility":"POI",…},…],
     "conditions":[{"rank":1,"code":"…",…}],"vitals":[{"time":"…","code":"8867-4",…,"value":112.0,…},…]},
    …
    ]

Why only one file: every row of the other three tables is inside it, so writing ``events.json`` and the rest too
would double the output for no new information; a consumer that wants flat tables picks csv, ndjson or parquet.
The manifest therefore lists one file for this format, whose ``rows`` counts patients.
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
from .text import render

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


class JsonSink(Sink):
    ext = "json"
    tables = ("patients",)

    def _payloads(self, batch: Batch) -> dict[str, Batch]:
        return {"patients": batch}

    def _encoder(self, table: str, stream) -> NestedJsonEncoder:
        return NestedJsonEncoder(stream)
