"""PostgreSQL binary COPY encoding (core/sinks/pgcopy.py), decoded here by the format's rules, independently of
the encoder; the round trip through a real server is in test_db.py."""
from __future__ import annotations

import struct
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from core.sinks import pgcopy

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
UNPACK = {">i8": ">q", ">i4": ">i", ">i2": ">h", ">f8": ">d", "u1": ">B"}


def decode(data: bytes, schema: dict) -> list[tuple]:
    """Rows of a binary COPY stream, each value converted back to Python by the column's type."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00" and data[11:19] == bytes(8)
    pos, rows = 19, []
    while True:
        (count,) = struct.unpack_from(">h", data, pos)
        pos += 2
        if count == -1:
            assert pos == len(data), "bytes after the trailer"
            return rows
        assert count == len(schema)
        row = []
        for dtype in schema.values():
            (size,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if size == -1:
                row.append(None)
                continue
            raw, pos = data[pos:pos + size], pos + size
            kind = pgcopy._fixed_type(dtype)
            if kind is None:
                row.append(raw.decode())
                continue
            assert size == struct.calcsize(UNPACK[kind])
            (v,) = struct.unpack(UNPACK[kind], raw)
            if isinstance(dtype, pl.Datetime):
                v = PG_EPOCH + timedelta(microseconds=v)
            elif dtype == pl.Date:
                v = date(2000, 1, 1) + timedelta(days=v)
            elif dtype == pl.Boolean:
                v = bool(v)
            row.append(v)
        rows.append(tuple(row))


def sample() -> pl.DataFrame:
    t = datetime(2026, 11, 28, 14, 0, 0, 250_000, tzinfo=timezone.utc)
    return pl.DataFrame({
        "id": [1, 2, 3, 2**62, -5, 6, 7],
        "seq": pl.Series([0, 1, -2, 32767, 4, 5, 6], dtype=pl.Int16),
        "rank": pl.Series([1, None, 3, 4, 5, 6, -128], dtype=pl.Int8),
        "n32": pl.Series([1, 2, 3, 4, 5, None, 2**31 - 1], dtype=pl.Int32),
        "value": [36.6, None, -0.0, 1e300, 5e-324, 120.0, 0.1],
        "flag": [True, False, None, True, False, True, False],
        "born": [date(1990, 1, 2), date(1999, 12, 31), None, date(2000, 1, 1), date(1970, 1, 1), date(2050, 6, 1),
                 date(1901, 3, 4)],
        "time": [t, None, t - timedelta(days=9000), t, t, PG_EPOCH, t + timedelta(microseconds=1)],
        "facility": pl.Series(["POI", "R1", None, "R4", "R2", "R3", "POI"], dtype=pl.Enum(["POI", "R1", "R2", "R3",
                                                                                             "R4"])),
        "name": ["Zoë", "O'Brien \"Bo\"", None, "", "back\\slash\nnew line\ttab", "ŁÓDŹ 🚑", "x" * 300],
    }).with_columns(pl.col("time").cast(pl.Datetime("us", "UTC")))


@pytest.mark.parametrize("slice_rows", [1, 3, pgcopy.SLICE_ROWS])
def test_every_column_type_and_null_decodes_to_the_frame(slice_rows):
    frame = sample()
    frame = frame.select(pgcopy.copy_columns(frame.schema))
    data = b"".join(bytes(p) for p in pgcopy.encode(frame, slice_rows=slice_rows))
    expected = [tuple(r) for r in frame.with_columns(pl.col("facility").cast(pl.String)).rows()]
    assert decode(data, frame.schema) == expected


def test_fixed_width_columns_come_first_and_every_column_stays():
    schema = sample().schema
    order = pgcopy.copy_columns(schema)
    assert sorted(order) == sorted(schema)
    assert order[-2:] == ["facility", "name"]


def test_an_empty_frame_is_a_valid_stream():
    frame = sample().clear()
    data = b"".join(bytes(p) for p in pgcopy.encode(frame))
    assert data == pgcopy.SIGNATURE + pgcopy.TRAILER
    assert decode(data, frame.schema) == []


def test_the_reader_hands_out_the_stream_in_pieces_of_the_asked_size():
    frame = sample()
    whole = b"".join(bytes(p) for p in pgcopy.encode(frame))
    reader = pgcopy.CopyReader(pgcopy.encode(frame, slice_rows=2))
    got = []
    while piece := reader.read(7):
        assert isinstance(piece, bytes) and len(piece) <= 7
        got.append(piece)
    assert b"".join(got) == whole and reader.bytes == len(whole)
