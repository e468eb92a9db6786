"""The dashboard's generation jobs: one run at a time in a worker thread, with progress, ETA, cancel and metrics.

The worker never calls Streamlit; pages read a job's state (``Job.view()``) from a fragment that polls it.
Every run is written to ``<runs_root>/<run_id>/`` by ``core.run.generate_run``; when a database engine is
available the run is registered in it too (and its tables loaded with ``persist=True``). A database that is
down never stops a run: the files are written and the job says why nothing reached the database.

    registry = JobRegistry(settings.runs_dir, engine=lambda: engine_or_none)
    job = registry.submit(scenario, fmt="csv", compress=True)
    registry.cancel(job.run_id)
    registry.wait(job.run_id, timeout=60).view()["status"]   # completed / cancelled / failed
"""
from __future__ import annotations

import inspect
import json
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psutil

from core.generator import BLOCK_DEFAULT, check_options
from core.run import Progress, generate_run
from core.scenario import Scenario
from core.sinks import FORMATS

ACTIVE = ("queued", "running")
FINISHED = ("completed", "cancelled", "failed")
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
_RUN_TAKES_ENGINE = "engine" in inspect.signature(generate_run).parameters


def _db():
    """``core.db`` when it can be imported (it needs SQLAlchemy), else None: files-only operation."""
    try:
        from core import db
    except ImportError:
        return None
    return db


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class JobBusy(RuntimeError):
    """A generation is already running: one at a time (the machine's cores and memory go to one run)."""


@dataclass
class Job:
    run_id: str
    out_dir: Path
    scenario_name: str
    scenario_version: int | None
    seed: int
    patients_total: int
    fmt: str
    compress: bool
    encrypted: bool
    persist: bool
    status: str = "queued"
    patients_done: int = 0
    elapsed_s: float = 0.0
    submitted_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None      # why the run failed
    db_note: str | None = None    # why the run did not reach the database (files are still written)
    manifest: dict | None = None
    samples: list[dict] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def view(self) -> dict[str, Any]:
        """A consistent copy of the job's state for display (safe to read while the worker runs)."""
        with self._lock:
            done, total, elapsed = self.patients_done, self.patients_total, self.elapsed_s
            rate = done / elapsed if elapsed > 0 else 0.0
            return {
                "run_id": self.run_id, "status": self.status, "out_dir": str(self.out_dir),
                "scenario_name": self.scenario_name, "scenario_version": self.scenario_version,
                "seed": self.seed, "format": self.fmt, "compressed": self.compress, "encrypted": self.encrypted,
                "persist": self.persist, "patients_done": done, "patients_total": total,
                "fraction": min(done / total, 1.0) if total else 0.0, "elapsed_s": elapsed,
                "patients_per_s": rate, "eta_s": (total - done) / rate if rate > 0 and self.active else None,
                "submitted_at": self.submitted_at, "finished_at": self.finished_at,
                "error": self.error, "db_note": self.db_note, "peak_rss_mb": self.peak_rss_mb,
                "cancel_requested": self.cancel_event.is_set(),
                "manifest": self.manifest, "samples": list(self.samples),
            }

    def _progress(self, p: Progress) -> None:
        with self._lock:
            self.patients_done, self.elapsed_s = p.patients_done, p.elapsed_s

    def _add_sample(self, sample: dict) -> None:
        with self._lock:
            self.samples.append(sample)


class _JobSampler(threading.Thread):
    """Per-second samples of a running job; memory is read five times a second so the peak is not missed."""

    TICK = 0.2

    def __init__(self, job: Job, interval: float, pool_checked_out: Callable[[], int | None],
                 cache_hit_rate: Callable[[], float | None] | None) -> None:
        super().__init__(name=f"mpg-job-sampler-{job.run_id}", daemon=True)
        self.job, self.interval = job, interval
        self.pool_checked_out, self.cache_hit_rate = pool_checked_out, cache_hit_rate
        self.stop_event = threading.Event()
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        self.t0 = time.perf_counter()
        self.last_t, self.last_done = self.t0, 0
        self.peak = 0.0

    def run(self) -> None:
        next_sample = self.t0 + self.interval
        while not self.stop_event.wait(self.TICK):
            self._memory()
            if time.perf_counter() >= next_sample:
                self.sample()
                next_sample += self.interval

    def _memory(self) -> float:
        rss = self.process.memory_info().rss / 2**20
        self.peak = max(self.peak, rss)
        self.job.peak_rss_mb = round(self.peak, 1)
        return rss

    def sample(self) -> None:
        now, done = time.perf_counter(), self.job.patients_done
        rss = self._memory()
        dt = now - self.last_t
        s = {"t": round(now - self.t0, 2), "patients_done": done,
             "patients_per_s": round((done - self.last_done) / dt, 1) if dt > 0 else 0.0,
             "rss_mb": round(rss, 1), "peak_rss_mb": round(self.peak, 1),
             "cpu_pct": self.process.cpu_percent(None), "pool_checked_out": None, "cache_hit_rate": None}
        try:
            s["pool_checked_out"] = self.pool_checked_out()
        except Exception:  # database down: the sample still counts
            pass
        if self.cache_hit_rate is not None:
            try:
                rate = self.cache_hit_rate()
                s["cache_hit_rate"] = round(rate, 4) if rate is not None else None
            except Exception:
                pass
        self.last_t, self.last_done = now, done
        self.job._add_sample(s)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


class JobRegistry:
    """One generation at a time, shared by every browser tab (the dashboard keeps one per process)."""

    def __init__(self, runs_root: Path | Callable[[], Path], *, engine: Callable[[], Any] | None = None,
                 cache_hit_rate: Callable[[], float | None] | None = None, sample_interval: float = 1.0,
                 keep: int = 20) -> None:
        self._runs_root = runs_root
        self._engine = engine
        self._cache_hit_rate = cache_hit_rate
        self.sample_interval = sample_interval
        self._keep = keep
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._version = 0

    # --- state -------------------------------------------------------------------------------------------
    @property
    def runs_root(self) -> Path:
        root = self._runs_root() if callable(self._runs_root) else Path(self._runs_root)
        root.mkdir(parents=True, exist_ok=True)
        return root

    @property
    def version(self) -> int:
        """Changes whenever a run starts, finishes or is deleted: a cache key for run lists."""
        return self._version

    def _bump(self) -> None:
        with self._lock:
            self._version += 1

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.submitted_at, reverse=True)

    def get(self, run_id: str) -> Job | None:
        return self._jobs.get(run_id)

    def active(self) -> Job | None:
        return next((j for j in self.jobs() if j.active), None)

    def current(self) -> Job | None:
        """The running job, else the latest one (what a page opened in any tab shows)."""
        jobs = self.jobs()
        return next((j for j in jobs if j.active), jobs[0] if jobs else None)

    def engine(self):
        """The database engine, or None when there is none or it is down."""
        if self._engine is None:
            return None
        try:
            return self._engine()
        except Exception:
            return None

    # --- actions -----------------------------------------------------------------------------------------
    def submit(self, scenario: Scenario, *, fmt: str = "parquet", compress: bool = False,
               password: str | None = None, persist: bool = False, scenario_name: str | None = None,
               scenario_version: int | None = None, chunk_size: int = BLOCK_DEFAULT,
               run_id: str | None = None) -> Job:
        """Start a run in a worker thread; raises JobBusy when one is running, ValueError on bad options."""
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r} is not allowed (one of {', '.join(FORMATS)})")
        if password is not None and not password:
            raise ValueError("encryption needs a non-empty password")
        check_options(chunk_size, 1)
        run_id = run_id or new_run_id()
        with self._lock:
            busy = next((j for j in self._jobs.values() if j.active), None)
            if busy is not None:
                raise JobBusy(f"a generation is already running (run {busy.run_id}, "
                              f"{busy.patients_done:,} of {busy.patients_total:,} patients); "
                              "cancel it or wait for it to finish")
            job = Job(run_id=run_id, out_dir=self.runs_root / run_id,
                      scenario_name=scenario_name or scenario.name, scenario_version=scenario_version,
                      seed=scenario.seed, patients_total=scenario.patients, fmt=fmt, compress=compress,
                      encrypted=password is not None, persist=persist)
            self._jobs[run_id] = job
            for old in sorted(self._jobs.values(), key=lambda j: j.submitted_at)[:-self._keep]:
                if not old.active:
                    del self._jobs[old.run_id]
            self._version += 1
        # the password lives only in this thread's arguments, never on the Job
        threading.Thread(target=self._work, args=(job, scenario, password, chunk_size),
                         name=f"mpg-job-{run_id}", daemon=True).start()
        return job

    def cancel(self, run_id: str | None = None) -> bool:
        """Ask a running job (the active one by default) to stop; True when there was one to stop."""
        job = self.get(run_id) if run_id else self.active()
        if job is None or not job.active:
            return False
        job.cancel_event.set()
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> Job:
        job = self._jobs[run_id]
        if not job.done_event.wait(timeout):
            raise TimeoutError(f"run {run_id} still {job.status} after {timeout} s")
        return job

    # --- the worker --------------------------------------------------------------------------------------
    def _pool_checked_out(self, engine) -> int | None:
        db = _db()
        if engine is None or db is None:
            return None
        return db.pool_status(engine).get("checked_out")

    def _work(self, job: Job, scenario: Scenario, password: str | None, chunk_size: int) -> None:
        db = _db()
        engine = None
        if self._engine is not None:
            try:
                engine = self._engine()
            except Exception as exc:
                job.db_note = f"database unavailable: {exc}"
            if engine is None and job.db_note is None:
                job.db_note = "database unavailable"
        if job.db_note and job.persist:
            job.db_note += "; the run was written to files only"
        kwargs: dict[str, Any] = {}
        if engine is not None and _RUN_TAKES_ENGINE:
            kwargs = {"engine": engine, "persist": job.persist, "scenario_name": job.scenario_name,
                      "scenario_version": job.scenario_version}
        elif engine is not None and job.persist:
            job.db_note = "this version of core.run cannot load runs into the database; written to files only"
        sampler = _JobSampler(job, self.sample_interval, lambda: self._pool_checked_out(engine),
                              self._cache_hit_rate)
        job.status = "running"
        sampler.start()
        status, error, manifest = "failed", None, None
        try:
            manifest = generate_run(scenario, job.out_dir, fmt=job.fmt, compress=job.compress, password=password,
                                    chunk_size=chunk_size, on_progress=job._progress, cancel=job.cancel_event,
                                    run_id=job.run_id, **kwargs)
            status, error = manifest["status"], manifest.get("error")
            db_error = manifest.get("database_error") or manifest.get("db_error")
            if db_error:
                job.db_note = f"database: {db_error}; the files are complete"
        except Exception as exc:  # the reason is shown to the user; the manifest (if any) says failed too
            error = f"{type(exc).__name__}: {exc}"
            manifest = _read_manifest(job.out_dir)
        finally:
            sampler.stop()
            sampler.sample()
            if engine is not None and db is not None and hasattr(db, "record_metrics"):
                try:
                    db.record_metrics(engine, job.run_id, list(job.samples))
                except Exception as exc:
                    job.db_note = job.db_note or f"metrics not stored in the database: {exc}"
            with job._lock:
                job.manifest, job.error, job.status = manifest, error, status
                job.finished_at = time.time()
                if manifest:
                    job.elapsed_s = manifest.get("elapsed_s") or job.elapsed_s
            job.done_event.set()
            self._bump()

    # --- run folders -------------------------------------------------------------------------------------
    def run_history(self, limit: int = 500) -> list[dict]:
        """Every run, newest first: folders under runs_root, merged with the database's runs when it answers.

        Keys: run_id, status, scenario_name, scenario_version, seed, patients, format, compressed, encrypted,
        created_at, finished_at, elapsed_s, patients_per_s, peak_rss_mb, bytes, files, out_dir, persisted,
        error, on_disk.
        """
        runs = {r["run_id"]: r for r in list_run_folders(self.runs_root)}
        for job in self.jobs():  # folders of running jobs have no manifest yet
            if job.active and job.run_id in runs:
                runs[job.run_id].update(status=job.status, patients=job.patients_total)
        engine, db = self.engine(), _db()
        if engine is not None and db is not None:
            try:
                for row in db.list_runs(engine, limit=limit):
                    disk = runs.get(row["run_id"])
                    merged = dict(row, on_disk=disk is not None, bytes=None, files=0)
                    if disk is not None:
                        merged.update({k: v for k, v in disk.items() if v is not None and k not in
                                       ("persisted", "scenario_version")})
                        merged["scenario_version"] = row.get("scenario_version") or disk.get("scenario_version")
                    runs[row["run_id"]] = merged
            except Exception:  # database down: the folders are still the history
                pass
        return sorted(runs.values(), key=_newest_first, reverse=True)[:limit]

    def delete_run(self, run_id: str, out_dir: str | Path | None = None) -> None:
        """Delete a run's folder and its database rows; a running job is cancelled first, never half-deleted.

        ``out_dir``: the run's folder when it is not named after the run; only a folder directly under the runs
        folder is ever removed."""
        job = self.get(run_id)
        if job is not None and job.active:
            raise JobBusy(f"run {run_id} is still {job.status}; cancel it first")
        engine, db = self.engine(), _db()
        registered = False
        if engine is not None and db is not None and db.get_run(engine, run_id) is not None:
            db.delete_run(engine, run_id, delete_files=True)
            registered = True
        # only a run folder directly under runs_root is ever removed here
        folder = self.runs_root / run_id if RUN_ID.match(run_id) else None
        if out_dir is not None and Path(out_dir).resolve().parent == self.runs_root.resolve():
            folder = Path(out_dir)
        if folder is not None and folder.is_dir():
            shutil.rmtree(folder)
        elif not registered:
            raise ValueError(f"no run {run_id!r} in {self.runs_root} or in the database")
        with self._lock:
            self._jobs.pop(run_id, None)
        self._bump()


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None


def list_run_folders(root: Path) -> list[dict]:
    """One row per folder under ``root`` (see ``JobRegistry.run_history`` for the keys), newest first.

    A folder without a manifest is a run that is still running or was interrupted (server stopped).
    """
    rows = []
    for folder in Path(root).iterdir() if Path(root).is_dir() else ():
        if not folder.is_dir():
            continue
        m = _read_manifest(folder)
        if m is None:
            stat = folder.stat()
            rows.append({"mtime_ns": stat.st_mtime_ns, "run_id": folder.name, "status": "interrupted", "scenario_name": None,
                         "scenario_version": None, "seed": None, "patients": None, "format": None,
                         "compressed": None, "encrypted": None,
                         "created_at": datetime.fromtimestamp(stat.st_mtime, timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%SZ"), "finished_at": None, "elapsed_s": None,
                         "patients_per_s": None, "peak_rss_mb": None, "bytes": _folder_bytes(folder),
                         "files": 0, "out_dir": str(folder), "persisted": False, "error": None, "on_disk": True})
            continue
        files = m.get("files") or []
        rows.append({"mtime_ns": (folder / "manifest.json").stat().st_mtime_ns,
            "run_id": m.get("run_id", folder.name), "status": m.get("status"),
            "scenario_name": m.get("scenario_name") or (m.get("scenario") or {}).get("name"),
            "scenario_version": m.get("scenario_version"), "seed": m.get("seed"),
            "patients": m.get("patients"), "format": m.get("format"), "compressed": m.get("compressed"),
            "encrypted": m.get("encrypted"), "created_at": m.get("started_at"), "finished_at": m.get("finished_at"),
            "elapsed_s": m.get("elapsed_s"), "patients_per_s": m.get("patients_per_s"),
            "peak_rss_mb": m.get("peak_rss_mb"), "bytes": sum(f.get("bytes") or 0 for f in files),
            "files": len(files), "out_dir": str(folder), "persisted": bool(m.get("persisted")),
            "error": m.get("error"), "on_disk": True,
        })
    return sorted(rows, key=_newest_first, reverse=True)


def _epoch(value) -> float:
    """Seconds since 1970 of a datetime or an ISO 8601 text (manifests say ...Z, databases may not)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def _newest_first(row: dict) -> tuple[float, int]:
    # start times are whole seconds: the folder's last change breaks ties
    return _epoch(row.get("created_at")) if row.get("created_at") else 0.0, row.get("mtime_ns") or 0


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
