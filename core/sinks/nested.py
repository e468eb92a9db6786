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
breaks between records turned into ``,\\n`` (JSON strings never hold a raw line break), ``]`` at close. Patients
are nested a piece of ``PIECE_PATIENTS`` at a time (their child rows found by ``search_sorted``), and each piece's
text is copied once (the comma insertion): the 1,000,000-patient run peaked at ~400 MB nesting whole batches and
copying the text four times, ~290 MB this way, and is no slower.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait

import polars as pl

from core.schema import Batch

from .base import Sink, pieces
from .text import PIECE_ROWS

PIECE_PATIENTS = 1_000  # ~4 KB per nested patient: ~4 MB of text per piece (2,000: +35 MB peak, no faster)
FLAT_ROWS = PIECE_ROWS // 2  # ~2.5 MB of text per flat piece (PIECE_ROWS: +13 MB peak, no faster)
CHILDREN = ("events", "conditions", "vitals")


def nest(batch: Batch, start: int, stop: int) -> pl.DataFrame:
    """Patients ``start:stop`` with a list-of-struct column per child table (group_by + join, no per-row Python).
    Nested per piece, in the render thread, so only the pieces being rendered are nested, never a whole batch."""
    frame = batch.patients.slice(start, stop - start)
    ids = frame.get_column("patient_id")
    for name in CHILDREN:
        table = getattr(batch, name)
        column = table.get_column("patient_id")  # sorted like the patients: the piece's rows are one range
        lo, hi = column.search_sorted(ids.first(), "left"), column.search_sorted(ids.last(), "right")
        rows = table.slice(lo, hi - lo).group_by("patient_id", maintain_order=True).agg(
            pl.struct(pl.exclude("patient_id")).alias(name))
        frame = frame.join(rows, on="patient_id", how="left", maintain_order="left")
    return frame.with_columns(pl.col(name).fill_null([]) for name in CHILDREN)


class Capture:
    """A file object for polars' writers that keeps what it is given: polars hands its whole text over as one
    bytes object, so no BytesIO copy is made."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))  # bytes() of a bytes object is that object: no copy
        return len(data)

    def flush(self) -> None:
        pass


def records(piece: pl.DataFrame) -> memoryview:
    """The piece's rows as JSON objects joined by ``,\\n`` (no trailing one), with a single copy of polars' text:
    the comma insertion; the last ``,\\n`` is cut by a view, not a slice copy."""
    out = Capture()
    piece.write_ndjson(out)
    text = out.chunks[0] if len(out.chunks) == 1 else b"".join(out.chunks)
    return memoryview(text.replace(b"\n", b",\n"))[:-2]


def nested_records(batch: Batch, start: int, stop: int) -> memoryview:
    return records(nest(batch, start, stop))


class NestedJsonEncoder:
    """Nests and renders pieces on two threads, ``WINDOW`` at a time, and writes them in order (one file, no table
    lanes)."""

    WINDOW = 2

    def __init__(self, stream):
        self._stream, self._written = stream, False
        self._pool = ThreadPoolExecutor(self.WINDOW, thread_name_prefix="sink-json")
        stream.write(b"[\n")

    def write(self, batch: Batch) -> int:
        window: deque[Future] = deque()
        try:
            for start in range(0, batch.patients.height, PIECE_PATIENTS):
                stop = min(start + PIECE_PATIENTS, batch.patients.height)
                window.append(self._pool.submit(nested_records, batch, start, stop))
                if len(window) == self.WINDOW:
                    self._emit(window.popleft().result())
            while window:
                self._emit(window.popleft().result())
        finally:
            wait(window)  # no render outlives a failed write
        return batch.patients.height

    def _emit(self, text: memoryview) -> None:
        if self._written:
            self._stream.write(b",\n")  # a separate write: joining would copy the piece
        self._stream.write(text)
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
        for piece in pieces(frame, FLAT_ROWS):
            if self._written:
                self._stream.write(b",\n")
            self._stream.write(records(piece))
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
