"""A run folder as one ZIP file, streamed to disk file by file (never built in memory).

Already-compressed files (Parquet, ``.gz``, ``.enc``) are stored as they are; text files are deflated.
The ZIP is written under a temporary name and renamed when complete, and reused while the run is unchanged.
Downloads: see ``download_limit_bytes``.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from core.runs import MANIFEST, atomic_path

STORED_SUFFIXES = (".parquet", ".gz", ".enc")


def zip_path(run_folder: Path, exports_dir: Path) -> Path:
    return Path(exports_dir) / f"{Path(run_folder).name}.zip"


def zip_run(run_folder: Path, exports_dir: Path) -> Path:
    """ZIP every file of ``run_folder`` into ``exports_dir/<run_id>.zip`` (reused if newer than the run)."""
    run_folder, exports_dir = Path(run_folder), Path(exports_dir)
    if not (run_folder / MANIFEST).is_file():
        raise FileNotFoundError(f"{run_folder} is not a finished run (no {MANIFEST})")
    exports_dir.mkdir(parents=True, exist_ok=True)
    target = zip_path(run_folder, exports_dir)
    files = sorted(p for p in run_folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    newest = max(p.stat().st_mtime for p in files)
    if target.is_file() and target.stat().st_mtime >= newest:
        return target
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for path in files:  # ZipFile.write copies in 8 KB pieces
            method = zipfile.ZIP_STORED if path.name.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            zf.write(path, arcname=f"{run_folder.name}/{path.relative_to(run_folder).as_posix()}",
                     compress_type=method, compresslevel=6)
    return target


def remove_zip(run_id: str, exports_dir: Path) -> None:
    (Path(exports_dir) / f"{run_id}.zip").unlink(missing_ok=True)


def download_limit_bytes() -> int:
    """Largest file offered as a browser download (``MPG_DOWNLOAD_MAX_MB``, default 200 MB).

    Streamlit serves a download from memory: the dashboard reads a file only when its button is clicked
    (deferred), but then holds it in RAM for that session; bigger files are taken from the run folder.
    """
    try:
        return max(0, int(float(os.environ.get("MPG_DOWNLOAD_MAX_MB", "200")) * 2**20))
    except ValueError:
        return 200 * 2**20


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


# Bytes on disk per patient, all files of a run, measured on the default scenario (20,000 patients, seed 2);
# scenarios with longer journeys write a little more. Used to refuse a run that cannot fit on the disk.
BYTES_PER_PATIENT = {
    ("parquet", False): 128, ("parquet", True): 125, ("csv", False): 2_222, ("csv", True): 361,
    ("ndjson", False): 4_284, ("ndjson", True): 385, ("json", False): 7_491, ("json", True): 735,
    ("fhir", False): 21_380, ("fhir", True): 1_591,
}


def estimated_bytes(patients: int, fmt: str, compress: bool) -> int:
    """About how many bytes a run of ``patients`` writes (the largest format's rate for an unknown format)."""
    rate = BYTES_PER_PATIENT.get((fmt, compress), max(BYTES_PER_PATIENT.values()))
    return int(patients) * rate


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free
