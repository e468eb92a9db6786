"""Run folders: the manifest, listing, run ids, atomic writes and safe deletion (no Streamlit, no database).

A run is a folder holding its data files and ``manifest.json``, which is written last: a folder without a
manifest is a run still being written or one that was interrupted. The process writing a folder holds its lock
(``FolderLock``: the kernel releases it however the process ends), so a second run into the same folder is
refused and a dead run's leftovers can be told from a live run's temporary files. A run's files are written under
hidden names and appear under their final names together, just before the manifest (``Staging``): whatever
fails, no data file stands under its final name without a manifest. A folder is deleted only when it is the run's
own, inside the caller's runs folder, and no live process writes it (``deletable``, ``delete_run_folder``).

    run_id = new_run_id()                          # 20260101T120000Z-1a2b3c4d: UTC start second + 8 hex digits
    write_manifest(folder, manifest); read_manifest(folder)
    list_runs(root, other_folder)                  # one row per run folder, newest first
    with atomic_path(folder / "report.json") as tmp:
        tmp.write_bytes(payload)                   # renamed to report.json only if the block ends without error
    with FolderLock(folder): ...                   # FolderInUse when another live process writes it
    deletable(folder, root)                        # None, or why the dashboard may not delete the run
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
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked (one writer per folder is then the operator's care)
    fcntl = None

MANIFEST = "manifest.json"
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
# names a run writes into its folder (data files, the calibration report, hidden temp files)
RUN_FILE_PREFIXES = (".", "patients", "events", "conditions", "vitals", "calibration", "capacity", "scenario",
                     "load", "fhir")
FHIR_FOLDER = "fhir"
# a file a run writes under its final name: a table in a format (.gz, .enc), a JSON report, the FHIR bundles
RUN_FILE = re.compile(r"^(?:(?:patients|events|conditions|vitals|load)\.(?:parquet|csv|ndjson|json)"
                      r"|(?:calibration|capacity|scenario)\.json|fhir/Bundle\.ndjson)(?:\.gz)?(?:\.enc)?$")
# a run's hidden temporary files: atomic writes and sink outputs (.x.partial-1a2b3c4d), FHIR spill files, and
# blocks a medical plan's simulation keeps on disk (.capacity-spill-<pid>-<first patient>.pkl)
TEMP_FILE = re.compile(r"^\..+\.(?:partial-[0-9a-f]+|block-[0-9a-f]+-[0-9]+)$|^\.capacity-spill-[0-9]+-[0-9]+\.pkl$")


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


def utc_text(ts: float) -> str:
    """A POSIX time as the runs' UTC text: 2026-12-03T14:38:00Z."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: str | os.PathLike, data: dict) -> bytes:
    """Write ``data`` as indented UTF-8 JSON under ``path`` atomically; returns the bytes written."""
    payload = json_bytes(data)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return payload


def write_manifest(folder: str | os.PathLike, manifest: dict) -> None:
    write_json(Path(folder) / MANIFEST, manifest)


def json_bytes(data: dict) -> bytes:
    """The bytes ``write_json`` writes for ``data``."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


_STAGING: ContextVar["Staging | None"] = ContextVar("mpg_run_staging", default=None)


def current_staging() -> "Staging | None":
    """The Staging that finished files of this thread's run go to instead of their final names (or None)."""
    return _STAGING.get()


class Staging:
    """A run's finished files under their hidden temporary names, renamed into place together by ``commit``.

    While ``with staging.holding():`` is active, a sink's output that finishes (``core.sinks.layers.TempFile``)
    is handed here instead of being renamed. ``commit(manifest)`` writes the manifest's temporary file first
    (the last thing that needs disk space), then renames the data files, removes a replaced run's other files and
    renames the manifest last; ``discard()`` removes every temporary file. Whatever fails, data files never stand
    under their final names without a manifest: a failing commit removes the ones it renamed."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.pending: list[tuple[Path, Path]] = []  # (temporary, final) in the order they finished

    @contextmanager
    def holding(self) -> Iterator["Staging"]:
        token = _STAGING.set(self)
        try:
            yield self
        finally:
            _STAGING.reset(token)

    def add(self, tmp: Path, final: Path) -> None:
        self.pending.append((Path(tmp), Path(final)))

    def commit(self, manifest: dict) -> None:
        """Put the run's files and then its manifest under their final names (see the class)."""
        folder = self.folder
        payload = json_bytes(manifest)
        manifest_tmp = folder / f".{MANIFEST}.partial-{secrets.token_hex(4)}"
        renamed: list[Path] = []
        try:
            with open(manifest_tmp, "xb") as file:
                file.write(payload)
            previous = read_manifest(folder)
            (folder / MANIFEST).unlink(missing_ok=True)  # from here the folder reads as interrupted, not as the old run
            for tmp, final in self.pending:
                os.replace(tmp, final)
                renamed.append(final)
            mine = {final.resolve() for _, final in self.pending}
            for path in _files_of_a_run(folder, previous):  # the replaced run's files that this run did not overwrite
                if path.resolve() not in mine:
                    path.unlink(missing_ok=True)
            _remove_empty(folder / FHIR_FOLDER)
            os.replace(manifest_tmp, folder / MANIFEST)
        except BaseException:
            for path in renamed:
                path.unlink(missing_ok=True)
            manifest_tmp.unlink(missing_ok=True)
            self.discard()
            raise
        self.pending = []

    def discard(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        self.pending = []


def _files_of_a_run(folder: Path, manifest: dict | None) -> list[Path]:
    """The files a run wrote into ``folder`` under final names, as its manifest lists them (plain names only):
    a file the manifest does not list (the operator's own) is never a run's to remove."""
    names = set()
    for entry in (manifest or {}).get("files") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and unsafe_file_name(name) is None:
            names.add(name)
    return [folder / name for name in sorted(names) if (folder / name).is_file()]


def _listing(folder: Path) -> list[Path]:
    """The files of a run folder and of its fhir/ sub-folder (a run writes nowhere else)."""
    out = []
    for where in (folder, folder / FHIR_FOLDER):
        try:
            out += [p for p in where.iterdir() if p.is_file() and not p.is_symlink()]
        except OSError:  # no such sub-folder
            pass
    return out


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # missing, or holds something
        pass


# --- file names from a manifest ------------------------------------------------------------------------------

def unsafe_file_name(name) -> str | None:
    """None when ``name`` (a file name from a manifest) is a plain name inside the run folder (or ``fhir/<name>``),
    else why not: a manifest never sends a reader anywhere else."""
    if not isinstance(name, str) or not name or len(name) > 255 or "\x00" in name or "\\" in name:
        return f"{str(name)[:80]!r} is not a file name"
    parts = name.split("/")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != FHIR_FOLDER) or any(
            part in ("", ".", "..") for part in parts):
        return f"{name[:80]!r} is not a plain file name inside the run folder"
    return None


def check_file_names(folder: str | os.PathLike, manifest: dict) -> str | None:
    """None when every file the manifest lists is a plain name that stays inside ``folder`` (no symbolic link
    out of it), else the reason in one line."""
    root = Path(folder).resolve()
    for entry in manifest.get("files") or []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        reason = unsafe_file_name(name)
        if reason is None:
            target = (root / name).resolve()
            if root not in target.parents:
                reason = f"{name!r} leads outside the run folder"
        if reason:
            return f"the manifest names a file outside its run: {reason}"
    return None


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
    if not isinstance(manifest.get("files") or [], list) or not all(
            isinstance(f, dict) for f in manifest.get("files") or []):
        return "the manifest's file list is damaged"
    if any(unsafe_file_name(f.get("name")) for f in manifest.get("files") or []):
        return "the manifest names a file outside its run folder: the run is refused"
    names = {f.get("table"): f.get("name") for f in manifest.get("files") or []}
    missing = [t for t in ("patients", "events") if not names.get(t)]
    if missing:
        return f"the manifest lists no {' or '.join(missing)} file"
    return None


# --- the folder lock and what a dead run left --------------------------------------------------------------

class FolderInUse(ValueError):
    """Another live process writes this run folder."""


class FolderLock:
    """The exclusive lock of the process writing a run folder: ``flock`` on the folder itself, so no lock file is
    left behind and the kernel releases it however the process ends (even kill -9).

        with FolderLock(folder):    # creates the folder; FolderInUse when another live process holds it
            ...
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FolderInUse(f"{self.folder} is in use by another run that is still writing it; wait for it "
                                  f"to end or choose another folder") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(folder: str | os.PathLike) -> bool:
    """True when a live process holds ``folder``'s lock (it is writing a run there)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the lock, if this call took it


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """What a run that did not end left in ``folder``: its temporary files (and spill files); and, when it was
    killed while renaming its files into place (its manifest's temporary file is there, its manifest is not),
    the files it had renamed. Only meaningful while holding the folder's lock: without it the temporary files may
    be a live run's. A file no run writes under that name is never one."""
    folder = Path(folder)
    files = _listing(folder)
    found = [p for p in files if TEMP_FILE.match(p.name)]
    cut_short = any(p.name.startswith(f".{MANIFEST}.partial-") for p in found)
    if cut_short and read_manifest(folder) is None:
        found += [p for p in files if RUN_FILE.match(p.relative_to(folder).as_posix())]
    return sorted(found)


def remove_leftovers(folder: str | os.PathLike) -> tuple[int, int]:
    """Remove ``leftovers(folder)``; returns (files, bytes) removed."""
    count = size = 0
    for path in leftovers(folder):
        try:
            n = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        count, size = count + 1, size + n
    _remove_empty(Path(folder) / FHIR_FOLDER)
    return count, size


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
    """The row of a folder without a manifest: what the folder itself can tell (``running`` while a live process
    holds its lock, else ``interrupted``)."""
    stat = folder.stat()
    return {"run_id": folder.name, "status": "running" if is_locked(folder) else "interrupted", "scenario_name": None, "scenario_version": None,
            "seed": None, "patients": None, "format": None, "compressed": None, "encrypted": None,
            "created_at": utc_text(stat.st_mtime),
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


def inside(folder: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``folder`` is directly inside ``root`` (symbolic links resolved): the only folders the dashboard
    removes; any other run it only unregisters from the database."""
    try:
        folder, root = Path(folder).resolve(), Path(root).resolve()
    except (OSError, RuntimeError):
        return False
    return folder.parent == root and folder != root


def deletable(folder: str | os.PathLike | None, root: str | os.PathLike) -> str | None:
    """None when the dashboard may delete the run in ``folder``, else why not (one line).

    A run whose writer is alive (its folder is locked: a CLI or dashboard process on this or another host writing
    it) never is. Deleting removes the folder only when it is ``inside(folder, root)``; a run elsewhere (or whose
    folder is gone) is only unregistered from the database."""
    if folder is None:
        return None
    folder = Path(folder)
    try:
        if folder.resolve() in (Path(root).resolve(), *Path(root).resolve().parents):
            return f"{folder} holds the runs folder: it is never a run's to delete"
    except (OSError, RuntimeError):
        return f"{folder} cannot be resolved"
    if folder.is_dir() and is_locked(folder):
        return f"run in {folder} is still being written by a live process; cancel it or wait for it to end"
    return None


def delete_run_folder(folder: str | os.PathLike, run_id: str, *, root: str | os.PathLike | None = None,
                      writer: tuple[str | None, int | None] | None = None) -> bool:
    """Remove ``run_id``'s folder; True when it was removed, False when there was nothing of this run to remove.

    The one rule for every caller: a run whose writing process is still alive raises RunInProgress, checked
    first (``writer``: host and pid when the caller knows one; the folder's lock in any case); a folder that is
    not the run's (see ``_belongs``) or, with ``root``, not directly under ``root`` is left alone."""
    if writer is not None and not process_gone(*writer):
        host, pid = writer
        raise RunInProgress(f"run {run_id} is still being written (process {pid} on {host}); cancel it first")
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if root is not None and not inside(folder, root):
        return False
    try:
        lock = FolderLock(folder).acquire()  # held while deleting: no run can start writing it meanwhile
    except FolderInUse:
        raise RunInProgress(f"run {run_id} is still being written by a live process; cancel it first") from None
    try:
        if not _belongs(folder, run_id):
            return False
        shutil.rmtree(folder)
    finally:
        lock.release()
    return True
