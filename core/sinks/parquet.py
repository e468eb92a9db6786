"""Parquet: pyarrow ParquetWriter, one row group per batch, zstd level 1.

Enum columns go in as arrow dictionary arrays (dictionary-encoded pages, no re-encoding of strings) and
``store_schema=False`` keeps the arrow schema out of the file, so polars, pandas and pyarrow read them back
as plain strings, the contract type. Times are TIMESTAMP(MICROS, adjusted to UTC) -> Datetime("us", "UTC").

Integer, date and time columns use DELTA_BINARY_PACKED (ids and times rise within a chunk: ~20% smaller and
faster than trying a dictionary first) and are the only ones with min/max statistics, the ones that
row-group pruning on ``patient_id`` or time ranges uses; statistics on string columns would cost 15-20% of
the write time for no pruning (every row group holds every category).
"""
from __future__ import annotations

from contextlib import suppress

import polars as pl

from .base import Sink

COMPRESSION, COMPRESSION_LEVEL = "zstd", 1  # about as fast as snappy, ~20% smaller files
ARROW = pl.CompatLevel.oldest()  # large_string values: pyarrow cannot write dictionaries of string_view


class ArrowStream:
    """The file-object face pyarrow expects; closing is left to the layers below."""

    closed = False

    def __init__(self, stream):
        self.write = stream.write

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class ParquetEncoder:
    def __init__(self, stream, schema: dict):
        arrow_schema = pl.DataFrame(schema=schema).to_arrow(compat_level=ARROW).schema
        delta = [name for name, dtype in schema.items() if dtype.is_integer() or dtype.is_temporal()]
        import pyarrow.parquet as pq  # here, not at import: text runs need not carry pyarrow's ~45 MB

        self._writer = pq.ParquetWriter(
            ArrowStream(stream), arrow_schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
            store_schema=False, use_dictionary=[name for name in schema if name not in delta],
            column_encoding=dict.fromkeys(delta, "DELTA_BINARY_PACKED"), write_statistics=delta)

    def write(self, frame: pl.DataFrame) -> int:
        if frame.height:
            # to_arrow on a clone: polars 2.1 holds the frame's lock across a GIL release in to_arrow, so the same
            # frame read at once by another thread (the database loader, the calibration) could deadlock
            self._writer.write_table(frame.clone().to_arrow(compat_level=ARROW), row_group_size=frame.height)
        return frame.height

    def finish(self) -> None:
        self._writer.close()

    def discard(self) -> None:
        with suppress(Exception):  # else ParquetWriter.__del__ would write a footer into a closed file later
            self._writer.close()


class ParquetSink(Sink):
    ext = "parquet"

    def _encoder(self, table: str, stream) -> ParquetEncoder:
        return ParquetEncoder(stream, self.schemas[table])
