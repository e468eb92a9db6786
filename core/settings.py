"""Where the project keeps its state, from the environment with no set-up needed.

- ``MPG_DATA_DIR``: the project's data folder (default ``./data`` under the repository root): the embedded
  SQLite database and the dashboard's runs live here.
- ``DATABASE_URL``: a SQLAlchemy URL (``postgresql+psycopg2://...``); unset means the embedded SQLite file.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The data folder, created on first use."""
    path = Path(os.environ.get("MPG_DATA_DIR") or ROOT / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Folder holding one sub-folder per dashboard run (``<runs_dir>/<run_id>/manifest.json``)."""
    path = data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str | None:
    """``DATABASE_URL`` if set (and not blank), else None for the embedded SQLite default."""
    url = os.environ.get("DATABASE_URL", "").strip()
    return url or None
