"""Where the project keeps its state, from the environment with no set-up needed.

- ``MPG_DATA_DIR``: the project's data folder (default ``./data`` under the repository root): the embedded
  SQLite database and the dashboard's runs live here.
- ``DATABASE_URL``: a SQLAlchemy URL (``postgresql+psycopg2://...``); unset means the embedded SQLite file.
- ``MPG_EXPLORE_FOLDERS``: more folders whose runs Explore may read, separated by ``:`` (``os.pathsep``); without
  it Explore reads only runs inside the data folder.
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


class FolderNotAllowed(ValueError):
    """A folder Explore may not read: outside the data folder and the folders of MPG_EXPLORE_FOLDERS."""


def explore_roots() -> list[Path]:
    """The folders Explore may read runs from (resolved): the data folder, then each of MPG_EXPLORE_FOLDERS."""
    roots = [data_dir().resolve()]
    for text in os.environ.get("MPG_EXPLORE_FOLDERS", "").split(os.pathsep):
        if text.strip():
            roots.append(Path(text.strip()).expanduser().resolve())
    return roots


def explore_folder(text: str | os.PathLike) -> Path:
    """The folder ``text`` names, resolved, when Explore may read it (it is, or lies inside, the data folder or a
    folder of MPG_EXPLORE_FOLDERS; symbolic links are followed first); else FolderNotAllowed in one line."""
    raw = str(text).strip()
    if not raw or "\x00" in raw:
        raise FolderNotAllowed("no folder given")
    try:
        folder = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError) as exc:
        raise FolderNotAllowed(f"{raw[:200]} cannot be read ({exc})") from None
    roots = explore_roots()
    if not any(folder == root or root in folder.parents for root in roots):
        raise FolderNotAllowed(f"{raw[:200]} is outside the folders Explore may read ({', '.join(map(str, roots))}); "
                               f"the operator can add folders with MPG_EXPLORE_FOLDERS")
    return folder
