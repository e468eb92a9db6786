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
from .fhir import FhirSink
from .parquet import ParquetSink
from .text import CsvSink, NdjsonSink

__all__ = ["FORMATS", "Sink", "create_sink", "DecryptionError", "decrypt_file", "derive_key"]

SINKS: dict[str, type[Sink]] = {"parquet": ParquetSink, "csv": CsvSink, "ndjson": NdjsonSink, "json": JsonSink,
                                "fhir": FhirSink}
FORMATS = tuple(SINKS)


def create_sink(fmt: str, out_dir: str | Path, *, compress: bool = False, password: str | None = None,
                fhir_profile: str | None = None, seed: int = 0, schemas: dict[str, dict] | None = None) -> Sink:
    """A new (not yet opened) sink writing ``<table>.<fmt>[.gz][.enc]`` files into ``out_dir``.

    ``fmt="fhir"``: Parquet tables plus ``fhir/Bundle.ndjson``; ``fhir_profile`` ``collection`` (default) or
    ``ips``, ``seed`` (the run's) fixes the bundles' UUIDs. ``schemas``: tables whose columns differ from the
    contract's (core.schema.TABLES), e.g. the patients of a run with a medical plan."""
    if fmt not in SINKS:
        raise ValueError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "fhir":
        return FhirSink(out_dir, compress=compress, password=password, profile=fhir_profile or "collection",
                        seed=seed, schemas=schemas)
    if fhir_profile is not None:
        raise ValueError(f"a FHIR profile applies only to the fhir format, not {fmt!r}")
    return SINKS[fmt](out_dir, compress=compress, password=password, schemas=schemas)
