"""How runs and their figures are named on screen (no Streamlit here): the same words on every page.

    run_label(row)        # "Default: three-front defence · 2026-12-03 08:35 UTC · 20,000 patients · CSV + gzip"
    utc_minute(value)     # "2026-12-03 08:35 UTC" from a datetime or ISO 8601 text (manifests say ...Z)
    format_label(row)     # "Parquet", "CSV + gzip", "NDJSON + gzip + encrypted"
    patients_text(row)    # "20,000" or, for a run that stopped early, "1,622,016 of 5,000,000"

A row is a ``core.runs.list_runs`` row (or a database run row, or a manifest: the same keys).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

FORMAT_NAMES = {"parquet": "Parquet", "csv": "CSV", "ndjson": "NDJSON", "json": "JSON", "fhir": "FHIR R4"}
STATUS_WORDS = {"queued": "Waiting to start", "running": "Running", "completed": "Completed",
                "cancelled": "Cancelled", "failed": "Failed", "interrupted": "Interrupted"}


def _datetime(value) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def utc_minute(value, *, suffix: bool = True) -> str:
    """``2026-12-03 08:35 UTC`` (24-hour clock); "–" when there is no time."""
    when = _datetime(value)
    return "–" if when is None else f"{when:%Y-%m-%d %H:%M}" + (" UTC" if suffix else "")


def utc_datetime(value) -> datetime | None:
    """The time as an aware UTC datetime (None when missing or unreadable): one type for a table column."""
    return _datetime(value)


def format_label(row: dict) -> str:
    """The run's file format in words, with its gzip and encryption layers."""
    fmt = row.get("format")
    words = [FORMAT_NAMES.get(fmt, str(fmt).upper()) if fmt else "–"]
    if row.get("compressed"):
        words.append("gzip")
    if row.get("encrypted"):
        words.append("encrypted")
    return " + ".join(words)


def status_word(status: str | None) -> str:
    return STATUS_WORDS.get(status or "", (status or "unknown").capitalize())


def patients_done(row: dict) -> int | None:
    """Patients the run generated: all of them when completed, else as many as were generated before it stopped
    (the manifest's ``patients_generated``; ``patients`` is 0 for a run that did not complete)."""
    if row.get("status") in ("completed", "queued", "running"):  # a running run: the patients it will have
        return row.get("patients")
    generated = row.get("patients_generated")
    return generated if generated is not None else (row.get("patients") or None)


def patients_text(row: dict) -> str:
    """The patients of a run in words: "20,000", or for a run that stopped early "1,622,016 of 5,000,000"."""
    done, planned = patients_done(row), row.get("patients_planned")
    if done is None:
        return "–"
    return f"{done:,} of {planned:,}" if planned and planned != done and row.get("status") != "completed" else f"{done:,}"


def run_label(row: dict) -> str:
    """A run as people tell runs apart: scenario, start time (UTC), patients and format; the id is left to a
    secondary place (a caption, a table column)."""
    name = (row.get("scenario_name") or "").strip() or "Unnamed scenario"
    done = patients_done(row)
    patients = "patients unknown" if done is None else f"{done:,} patients"
    status = row.get("status")
    tail = "" if status in ("completed", None) else f" · {status_word(status).lower()}"
    return f"{name} · {utc_minute(row.get('created_at') or row.get('started_at'))} · {patients} · {format_label(row)}{tail}"


_MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&\"'^=%@])")


def plain(text) -> str:
    """User text (a scenario name, a description) for a Markdown element, shown exactly as typed: every sign
    Markdown or Streamlit would act on is escaped (no bold, no link, no image fetched, no colour, no formula, no
    icon), and line breaks become spaces."""
    return _MARKDOWN_SIGNS.sub(r"\\\1", " ".join(str(text).split()))


def run_labels(rows: list[dict]) -> list[str]:
    """``run_label`` of each row, made unique: runs with the same label (same scenario, minute, patients and
    format) are told apart by their seed, else by their id."""
    labels = [run_label(r) for r in rows]
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    for label, members in groups.items():
        if len(members) > 1:
            seeds = [rows[i].get("seed") for i in members]
            by_seed = len(set(seeds)) == len(seeds) and None not in seeds
            for i in members:
                labels[i] = f"{label} · seed {rows[i]['seed']}" if by_seed else f"{label} · {rows[i]['run_id']}"
    return labels
