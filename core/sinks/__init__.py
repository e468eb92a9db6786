"""File sinks: write a run's tables as parquet, csv, ndjson or nested json, optionally gzip and AES-256-GCM.

    with create_sink("parquet", out_dir, compress=True, password="…") as sink:
        for batch in stream(...):
            sink.write(batch)
    sink.files  # [{"name": "patients.parquet.gz.enc", "table": "patients", "rows", "bytes", "sha256"}, …]

Layers per file: serialiser -> gzip (``.gz``) -> AES-256-GCM (``.enc``, see ``crypto.py``) -> temp file, renamed to
its final name only when the whole run is written (``base.py``). ``decrypt_file`` reads ``.enc`` files back.
"""
from __future__ import annotations

from pathlib import Path

from .base import Sink
from .crypto import DecryptionError, decrypt_file, derive_key
from .nested import JsonSink
from .parquet import ParquetSink
from .text import CsvSink, NdjsonSink

__all__ = ["FORMATS", "Sink", "create_sink", "DecryptionError", "decrypt_file", "derive_key"]

SINKS: dict[str, type[Sink]] = {"parquet": ParquetSink, "csv": CsvSink, "ndjson": NdjsonSink, "json": JsonSink}
FORMATS = tuple(SINKS)


def create_sink(fmt: str, out_dir: str | Path, *, compress: bool = False, password: str | None = None) -> Sink:
    """A new (not yet opened) sink writing ``<table>.<fmt>[.gz][.enc]`` files into ``out_dir``."""
    if fmt not in SINKS:
        raise ValueError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return SINKS[fmt](out_dir, compress=compress, password=password)
