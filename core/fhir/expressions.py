"""JSON text as polars string expressions: the pieces ``bundle.py`` and ``ips.py`` splice their resources from.

Each function returns a ``pl.Expr`` that renders, per row, a piece of compact JSON (a string literal, a time, a
``urn:uuid``, a reference member); ``cat`` puts literal text and such pieces end to end.
"""
from __future__ import annotations

from functools import lru_cache

import polars as pl

from . import codes

TIME = "%Y-%m-%dT%H:%M:%S%.f%:z"  # RFC 3339 with the +00:00 offset, as the text formats write times
KINDS = {"patient": "0", "encounter": "1", "condition": "2", "observation": "3", "procedure": "4",
         "triage": "5", "blood": "6", "composition": "7", "bundle": "9"}  # a resource kind's digit in its UUID
_NO_ESCAPE = r'^[^"\\\x00-\x1f]*$'  # strings that are their own JSON text between quotes


@lru_cache(maxsize=4096)
def lit(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String)  # expressions are immutable: one per text is enough


def cat(*parts) -> pl.Expr:
    """Concatenation of literal strings and string expressions; a null piece counts as empty (optional
    members are ``pl.when(...).then(...)`` pieces)."""
    return pl.concat_str([lit(p) if isinstance(p, str) else p for p in parts], ignore_nulls=True)


def js(col: str | pl.Expr) -> pl.Expr:
    """A JSON string literal (quotes included, fully escaped) of a string column."""
    expr = pl.col(col) if isinstance(col, str) else col
    return pl.struct(expr.cast(pl.String).alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")


def quoted(series: pl.Series) -> pl.Expr:
    """``js`` of a column, taking the cheap path (plain quotes) when no value needs an escape."""
    if series.is_null().any() or not series.cast(pl.String).str.contains(_NO_ESCAPE).all():
        return js(series.name)
    return cat('"', pl.col(series.name).cast(pl.String), '"')


def time(col: str | pl.Expr) -> pl.Expr:
    expr = pl.col(col) if isinstance(col, str) else col
    return cat('"', expr.dt.to_string(TIME), '"')


def uuid(seed: int, kind: str, index: pl.Expr, pid: pl.Expr = pl.col("patient_id")) -> pl.Expr:
    """``urn:uuid:…`` of the ``index``-th resource of ``kind`` of a patient (indexes below 1000)."""
    return cat(codes.uuid_prefix(seed, KINDS[kind]), (index.cast(pl.Int64) + 1000).cast(pl.String).str.slice(1),
               "-", (pid + 10**12).cast(pl.String).str.slice(1))


def member_ref(name: str, url: pl.Expr) -> pl.Expr:
    """``,"<name>":{"reference":"<url>"}``: a reference member of a resource."""
    return cat(f',"{name}":{{"reference":"', url, '"}')
