"""Run folders: the manifest, listing, run ids, atomic writes and safe deletion (no Streamlit, no database).

A run is a folder holding its data files and ``manifest.json``, which is written last: a folder without a
manifest is a run still being written or one that was interrupted. Every file of a run appears under its final
name only when complete (``atomic_path``), and a folder is deleted only when it is the run's own and no live
process still writes it (``delete_run_folder``).

    run_id = new_run_id()                          # 20260101T120000Z-1a2b3c4d: UTC start second + 8 hex digits
    write_manifest(folder, manifest); read_manifest(folder)
    list_runs(root, other_folder)                  # one row per run folder, newest first
    with atomic_path(folder / "report.json") as tmp:
        tmp.write_bytes(payload)                   # renamed to report.json only if the block ends without error
    delete_run_folder(folder, run_id, root=root, writer=(host, pid))
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

MANIFEST = "manifest.json"
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
# names a run writes into its folder (data files, the calibration report, hidden temp files)
RUN_FILE_PREFIXES = (".", "patients", "events", "conditions", "vitals", "calibration", "fhir")


def new_run_id() -> str:
    """A unique run id that sorts by start time: ``<UTC start second>-<8 random hex digits>``."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


# --- writing -----------------------------------------------------------------------------------------------

@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary name beside ``final`` to write to: renamed to ``final`` when the block ends normally
    (atomic on one file system), removed when it raises, so ``final`` never holds a partial file."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.partial-{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: dict) -> bytes:
    """Write ``data`` as indented UTF-8 JSON under ``path`` atomically; returns the bytes written."""
    payload = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return payload


def write_manifest(folder: str | os.PathLike, manifest: dict) -> None:
    write_json(Path(folder) / MANIFEST, manifest)


# --- reading -----------------------------------------------------------------------------------------------

def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The run's manifest, or None when the folder has no readable one (running, interrupted, not a run)."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_stamp(folder: str | os.PathLike) -> str:
    """Changes when the run's manifest changes (it is written last): a cache key for everything read from it."""
    try:
        st = (Path(folder) / MANIFEST).stat()
    except OSError:
        return "missing"
    return f"{st.st_mtime_ns}-{st.st_size}"


def why_not_explorable(manifest: dict) -> str | None:
    """None when the run's tables can be read, else the reason in one line."""
    status = manifest.get("status")
    if status != "completed":
        return f"the run is {status or 'unfinished'}: only a completed run has tables to explore"
    if manifest.get("encrypted"):
        return ("the run is encrypted (AES-256-GCM) and the dashboard never asks for passwords: decrypt its files "
                "with `python -m core decrypt` into a folder with the manifest to explore them")
    names = {f.get("table"): f.get("name") for f in manifest.get("files") or []}
    missing = [t for t in ("patients", "events") if not names.get(t)]
    if missing:
        return f"the manifest lists no {' or '.join(missing)} file"
    return None


# --- listing -----------------------------------------------------------------------------------------------

def list_runs(*roots: str | os.PathLike, interrupted: bool = True) -> list[dict]:
    """One row per run folder under ``roots`` (each a folder of run folders, or a run folder itself), newest
    first; a folder reached twice is listed once. A folder without a manifest is listed as ``interrupted``
    (it may still be running: its writer knows), unless ``interrupted=False``.

    Keys: run_id, status, scenario_name, scenario_version, seed, patients, format, compressed, encrypted,
    created_at, finished_at, elapsed_s, patients_per_s, peak_rss_mb, bytes, files, out_dir, persisted, error,
    on_disk, mtime_ns, stamp, reason (None when the run can be explored)."""
    seen, rows = set(), []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        folders = [root] if (root / MANIFEST).is_file() else sorted(p for p in root.iterdir() if p.is_dir())
        for folder in folders:
            key = folder.resolve()
            if key in seen:
                continue
            manifest = read_manifest(folder)
            if manifest is None and not interrupted:
                continue
            seen.add(key)
            rows.append(_row(folder) if manifest is None else _manifest_row(folder, manifest))
    return sort_newest_first(rows)


def _manifest_row(folder: Path, m: dict) -> dict:
    files = m.get("files") or []
    return {"run_id": m.get("run_id") or folder.name, "status": m.get("status"),
            "scenario_name": m.get("scenario_name") or (m.get("scenario") or {}).get("name"),
            "scenario_version": m.get("scenario_version"), "seed": m.get("seed"), "patients": m.get("patients"),
            "format": m.get("format"), "compressed": m.get("compressed"), "encrypted": m.get("encrypted"),
            "created_at": m.get("started_at"), "finished_at": m.get("finished_at"), "elapsed_s": m.get("elapsed_s"),
            "patients_per_s": m.get("patients_per_s"), "peak_rss_mb": m.get("peak_rss_mb"),
            "bytes": sum(f.get("bytes") or 0 for f in files), "files": len(files), "out_dir": str(folder),
            "persisted": bool(m.get("persisted")), "error": m.get("error"), "on_disk": True,
            "mtime_ns": (folder / MANIFEST).stat().st_mtime_ns, "stamp": run_stamp(folder),
            "reason": why_not_explorable(m)}


def _row(folder: Path) -> dict:
    """The row of a folder without a manifest: what the folder itself can tell."""
    stat = folder.stat()
    return {"run_id": folder.name, "status": "interrupted", "scenario_name": None, "scenario_version": None,
            "seed": None, "patients": None, "format": None, "compressed": None, "encrypted": None,
            "created_at": datetime.fromtimestamp(stat.st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished_at": None, "elapsed_s": None, "patients_per_s": None, "peak_rss_mb": None,
            "bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()), "files": 0,
            "out_dir": str(folder), "persisted": False, "error": None, "on_disk": True,
            "mtime_ns": stat.st_mtime_ns, "stamp": run_stamp(folder),
            "reason": why_not_explorable({"status": "interrupted"})}


def sort_newest_first(rows: Iterable[dict]) -> list[dict]:
    """Rows with ``created_at`` (a datetime or ISO 8601 text) newest first; start times are whole seconds, so
    the folder's last change (``mtime_ns``) breaks ties."""
    return sorted(rows, key=lambda r: (_epoch(r.get("created_at")), r.get("mtime_ns") or 0), reverse=True)


def _epoch(value) -> float:
    """Seconds since 1970 of a datetime or an ISO 8601 text (manifests say ...Z, databases may not); 0 if none."""
    if not value:
        return 0.0
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return 0.0
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


# --- deleting ----------------------------------------------------------------------------------------------

class RunInProgress(ValueError):
    """A run whose process still writes it: it is never deleted (cancel it first)."""


def process_gone(host: str | None, pid: int | None) -> bool:
    """True when process ``pid`` of ``host`` is known to have ended. Only a process of this host can be checked;
    this process, an unknown host or pid and a process we may not signal all count as still running."""
    if host != socket.gethostname() or not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _belongs(folder: Path, run_id: str) -> bool:
    """The folder is ``run_id``'s: its manifest names the run, or it has none (interrupted) and holds nothing but
    a run's own files."""
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest.get("run_id") == run_id
    return all(p.name.startswith(RUN_FILE_PREFIXES) for p in folder.iterdir())


def delete_run_folder(folder: str | os.PathLike, run_id: str, *, root: str | os.PathLike | None = None,
                      writer: tuple[str | None, int | None] | None = None) -> bool:
    """Remove ``run_id``'s folder; True when it was removed, False when there was nothing of this run to remove.

    The one rule for every caller: a run whose writing process (``writer``: host and pid, when the caller knows
    one) is still alive raises RunInProgress, checked first; a folder that is not the run's (see ``_belongs``)
    or, with ``root``, not directly under ``root`` is left alone."""
    if writer is not None and not process_gone(*writer):
        host, pid = writer
        raise RunInProgress(f"run {run_id} is still being written (process {pid} on {host}); cancel it first")
    folder = Path(folder)
    if not folder.is_dir() or not _belongs(folder, run_id):
        return False
    if root is not None and folder.resolve().parent != Path(root).resolve():
        return False
    shutil.rmtree(folder)
    return True
