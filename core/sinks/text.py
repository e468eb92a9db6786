"""CSV and NDJSON: polars serialises each batch straight into the layers below (no batch-sized text buffer).

Times are ISO 8601 / RFC 3339 with a ``+00:00`` offset and only the fraction digits needed
(``2026-11-28T14:00:00+00:00``, ``…:00.250+00:00``), the same in both formats; dates are ``YYYY-MM-DD``,
categorical columns plain strings, nulls an empty CSV field / JSON ``null``.
"""
from __future__ import annotations

import io

import polars as pl

from core.handover import with_handover
from core.schema import Batch

from .base import Sink

PIECE_ROWS = 32_768  # rows per rendered piece where text must be post-processed (nested.py): ~5 MB
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"  # what polars' JSON writer emits, so CSV and NDJSON agree


class Forward:
    """A file object for polars' writers that passes each buffer it flushes (1-10 MB) straight to the layers
    below, so no batch-sized text buffer is ever built (and no copy of it made)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, data) -> int:
        self._stream.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def render(write, **options) -> memoryview:
    """Bytes of a polars ``write_*`` call, without a copy into a Python str."""
    buffer = io.BytesIO()
    write(buffer, **options)
    return buffer.getbuffer()


class CsvEncoder:
    def __init__(self, stream, schema: dict):
        self._stream, self._schema, self._header = stream, schema, True

    def write(self, frame: pl.DataFrame) -> int:
        frame.write_csv(Forward(self._stream), include_header=self._header, datetime_format=TIME_FORMAT)
        self._header = False
        return frame.height

    def finish(self) -> None:
        if self._header:  # no rows at all: still a header line
            self._stream.write(render(pl.DataFrame(schema=self._schema).write_csv))

    def discard(self) -> None:
        pass


class NdjsonEncoder:
    def __init__(self, stream, schema: dict):
        self._stream = stream

    def write(self, frame: pl.DataFrame) -> int:
        frame.write_ndjson(Forward(self._stream))
        return frame.height

    def finish(self) -> None:
        pass

    def discard(self) -> None:
        pass


class HandoverCsvEncoder(CsvEncoder):
    """patients.csv with one more column, ``handover``: the MIST-AT casualty hand-over text (core/handover.py)."""

    def write(self, batch: Batch) -> int:
        return super().write(with_handover(batch))


class CsvSink(Sink):
    ext = "csv"

    def _payloads(self, batch: Batch) -> dict:
        return {**batch.tables(), "patients": batch}  # the patients lane builds the hand-over text itself

    def _encoder(self, table: str, stream) -> CsvEncoder:
        if table == "patients":
            return HandoverCsvEncoder(stream, {**self.schemas[table], "handover": pl.String})
        return CsvEncoder(stream, self.schemas[table])


class NdjsonSink(Sink):
    ext = "ndjson"

    def _encoder(self, table: str, stream) -> NdjsonEncoder:
        return NdjsonEncoder(stream, self.schemas[table])
