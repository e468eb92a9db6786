"""The dashboard's generation jobs: one run at a time, each in a process of its own, with progress, ETA, cancel
and metrics.

A run never shares the server's interpreter (core/run_process.py): the interpreter lock would make pages and runs
slow each other. A thread of the server watches each run process: it hands over the order (the password only
through the pipe), reads progress and samples (the run process's own CPU, memory and peak memory) and the final
manifest, and forwards a cancel. Pages read a job's state (``Job.view()``) from a fragment that polls it. Every run
is written to ``<runs_root>/<run_id>/`` by ``core.run.generate_run``; when a database engine is available the run
is registered in it too (and its tables loaded with ``persist=True``). A database that is down never stops a run:
the files are written and the job says why nothing reached the database. A run outlives nothing: when the server
ends, its run process cancels the run (the manifest says why); a run that was finished is on disk and in the
database, so a restarted server lists it as before.

    registry = JobRegistry(settings.runs_dir, engine=lambda: engine_or_none)
    job = registry.submit(scenario, fmt="csv", compress=True)
    registry.cancel(job.run_id)
    registry.wait(job.run_id, timeout=60).view()["status"]   # completed / cancelled / failed
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any, Callable

from core import runs
from core.generator import BLOCK_DEFAULT, check_options
from core.run import Progress
from core.scenario import Scenario
from core.settings import ROOT
from core.sinks import FORMATS

ACTIVE = ("queued", "running")
FINISHED = ("completed", "cancelled", "failed")
PEAK_EVERY_S = 0.2  # memory is read five times a second during a run, so its peak is not missed
CANCEL_GRACE_S = 60  # a cancelled run process that has not ended by then is stopped with SIGKILL
log = logging.getLogger(__name__)


def _db():
    """``core.db`` when it can be imported (it needs SQLAlchemy), else None: files-only operation."""
    try:
        from core import db
    except ImportError:
        return None
    return db


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
    pid: int | None = None        # the run process, while it runs
    notice: str | None = None     # e.g. what the run cleaned up in its folder
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _process: Any = field(default=None, repr=False)

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
                "pid": self.pid, "notice": self.notice, "cancel_requested": self.cancel_event.is_set(),
                "manifest": self.manifest, "samples": list(self.samples),
            }

    def _progress(self, p: Progress) -> None:
        with self._lock:
            self.patients_done, self.elapsed_s = p.patients_done, p.elapsed_s

    def _send_cancel(self) -> None:
        """Tell the run process to cancel (a line on its stdin); a process already gone needs nothing."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.write(b"cancel\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            log.warning("run %s did not end %s s after its cancel: killing its process", self.run_id, CANCEL_GRACE_S)
            process.kill()

    def _add_sample(self, process: dict, t0: float, cache_hit_rate: float | None) -> None:
        """The run's sample from a sample of the run process (core.metrics.ProcessSampler) taken since ``t0``."""
        with self._lock:
            t, done = round(process["t"] - t0, 2), self.patients_done
            last = self.samples[-1] if self.samples else {"t": 0.0, "patients_done": 0}
            dt = t - last["t"]
            self.samples.append({
                "t": t, "patients_done": done,
                "patients_per_s": round((done - last["patients_done"]) / dt, 1) if dt > 0 else 0.0,
                "rss_mb": process["rss_mb"], "peak_rss_mb": process["peak_rss_mb"], "cpu_pct": process["cpu_pct"],
                "pool_checked_out": process.get("pool_checked_out"),
                "cache_hit_rate": None if cache_hit_rate is None else round(cache_hit_rate, 4)})
            self.peak_rss_mb = process["peak_rss_mb"]


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
        except Exception as exc:
            _log_unexpected(exc, "database engine unavailable")
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
        run_id = run_id or runs.new_run_id()
        if not runs.RUN_ID.match(run_id):  # the id names a folder under runs_root: nothing else may get in
            raise ValueError(f"run id {run_id!r} is not one (like {runs.new_run_id()})")
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
        # the password lives only in this thread's arguments and the run process's stdin, never on the Job
        threading.Thread(target=self._work, args=(job, scenario, password, chunk_size),
                         name=f"mpg-job-{run_id}", daemon=True).start()
        return job

    def cancel(self, run_id: str | None = None) -> bool:
        """Ask a running job (the active one by default) to stop; True when there was one to stop. A run process
        that has not ended ``CANCEL_GRACE_S`` later is killed (its folder then reads as interrupted)."""
        job = self.get(run_id) if run_id else self.active()
        if job is None or not job.active:
            return False
        if not job.cancel_event.is_set():
            timer = threading.Timer(CANCEL_GRACE_S, job._kill)
            timer.daemon = True
            timer.start()
        job.cancel_event.set()
        job._send_cancel()
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> Job:
        job = self._jobs[run_id]
        if not job.done_event.wait(timeout):
            raise TimeoutError(f"run {run_id} still {job.status} after {timeout} s")
        return job

    # --- the worker --------------------------------------------------------------------------------------
    def _hit_rate(self) -> float | None:
        if self._cache_hit_rate is None:
            return None
        try:
            return self._cache_hit_rate()
        except Exception:  # a broken counter must not stop the run's samples
            log.exception("cache hit rate unavailable")
            return None

    def _work(self, job: Job, scenario: Scenario, password: str | None, chunk_size: int) -> None:
        db = _db()
        engine = None
        if self._engine is not None:
            try:
                engine = self._engine()
            except Exception as exc:
                _log_unexpected(exc, "database engine unavailable")
                job.db_note = f"database unavailable: {exc}"
            if engine is None and job.db_note is None:
                job.db_note = "database unavailable"
        if job.db_note and job.persist:
            job.db_note += "; the run was written to files only"
        order = {"scenario": scenario.to_dict(), "out_dir": str(job.out_dir), "fmt": job.fmt,
                 "compress": job.compress, "password": password, "chunk_size": chunk_size, "run_id": job.run_id,
                 "persist": job.persist, "scenario_name": job.scenario_name, "scenario_version": job.scenario_version,
                 "database_url": engine.url.render_as_string(hide_password=False) if engine is not None else None,
                 "sample_interval": self.sample_interval, "peak_every": PEAK_EVERY_S}
        t0 = time.time()
        finished: dict | None = None
        try:
            finished = self._run_process(job, order, t0)
        except Exception as exc:  # the process could not start: the reason is shown to the user
            _log_unexpected(exc, f"run {job.run_id} could not start")
            finished = {"manifest": None, "error": f"the run process could not start: {exc}"}
        finally:
            order.clear()  # the password goes with it
            self._finish_job(job, finished, engine, db)

    def _run_process(self, job: Job, order: dict, t0: float) -> dict:
        """Start the run process, hand it the order, and follow its messages until it ends; returns its
        ``finished`` message (or one that says how it ended)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        process = subprocess.Popen([sys.executable, "-m", "core.run_process"], cwd=str(ROOT), env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        job._process, job.pid = process, process.pid
        finished = None
        try:
            process.stdin.write(json.dumps(order).encode("utf-8") + b"\n")
            process.stdin.flush()
            if job.cancel_event.is_set():  # cancelled while starting
                job._send_cancel()
            for line in process.stdout:
                message = json.loads(line)
                kind = message.pop("type")
                if kind == "progress":
                    job._progress(Progress(message["patients_done"], job.patients_total, message["elapsed_s"]))
                elif kind == "sample":
                    job._add_sample(message, t0, self._hit_rate())
                elif kind == "started":
                    job.status = "running"
                    if message.get("db_note"):
                        job.db_note = message["db_note"] + ("; the run was written to files only" if job.persist
                                                            else "")
                elif kind == "notice":
                    job.notice = message["text"]
                elif kind == "finished":
                    finished = message
            code = process.wait(timeout=CANCEL_GRACE_S)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            job._process = None
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        if finished is None:
            how = f"was killed by signal {-code}" if code < 0 else f"ended with exit code {code}"
            finished = {"manifest": runs.read_manifest(job.out_dir),
                        "error": f"the run process {how} before the run finished"}
        return finished

    def _finish_job(self, job: Job, finished: dict | None, engine, db) -> None:
        manifest, error = (finished or {}).get("manifest"), (finished or {}).get("error")
        status = manifest["status"] if manifest and not error else "failed"
        if manifest and not error:
            error = manifest.get("error") if status == "failed" else None
            db_error = manifest.get("database_error") or manifest.get("db_error")
            if db_error:
                job.db_note = f"database: {db_error}; the files are complete"
        if engine is not None:
            try:
                db.record_metrics(engine, job.run_id, list(job.samples))
            except Exception as exc:  # LookupError: the run never reached the database
                _log_unexpected(exc, f"metrics of run {job.run_id} not stored", LookupError)
                job.db_note = job.db_note or f"metrics not stored in the database: {exc}"
        with job._lock:
            job.manifest, job.error, job.status = manifest, error, status
            job.finished_at = time.time()
            job.pid = None
            if manifest:
                job.elapsed_s = manifest.get("elapsed_s") or job.elapsed_s
                job.peak_rss_mb = manifest.get("peak_rss_mb") or job.peak_rss_mb
        job.done_event.set()
        self._bump()

    # --- run folders -------------------------------------------------------------------------------------
    def run_history(self, limit: int = 500) -> list[dict]:
        """Every run, newest first: folders under runs_root (``core.runs.list_runs`` rows), merged with the
        database's runs when it answers (those have no stamp or reason, and ``on_disk`` False without a folder).
        """
        history = {r["run_id"]: r for r in runs.list_runs(self.runs_root)}
        for job in self.jobs():  # folders of running jobs have no manifest yet (or no folder: starting)
            if job.active:
                history.setdefault(job.run_id, _job_row(job)).update(status=job.status, patients=job.patients_total)
        engine, db = self.engine(), _db()
        if engine is not None:
            try:
                for row in db.list_runs(engine, limit=limit):
                    disk = history.get(row["run_id"])
                    merged = dict(row, on_disk=disk is not None, bytes=None, files=0)
                    if disk is not None:
                        merged.update({k: v for k, v in disk.items() if v is not None and k not in
                                       ("persisted", "scenario_version")})
                        merged["scenario_version"] = row.get("scenario_version") or disk.get("scenario_version")
                    history[row["run_id"]] = merged
            except Exception as exc:  # database down: the folders are still the history
                _log_unexpected(exc, "run list of the database unavailable")
        return [_one_type(row) for row in runs.sort_newest_first(history.values())[:limit]]

    def deletable(self, run: dict) -> str | None:
        """None when the Runs page may delete ``run`` (a ``run_history`` row), else why not in one line: a run
        being written (by a job of this registry, or by any live process: its folder is locked) never is."""
        busy = runs.deletable(run.get("out_dir"), self.runs_root)
        if busy:
            return busy
        job = self.get(run.get("run_id"))
        if (job is not None and job.active) or run.get("status") in ACTIVE:
            return f"run {run.get('run_id')} is still running; cancel it first"
        return None

    def delete_run(self, run_id: str, out_dir: str | Path | None = None) -> dict:
        """Delete a run: its folder when it lies directly in the runs folder, and its database rows; a run still
        being written (by a job of this registry, or by a live process: its folder is locked, or the database says
        so) is refused with ``core.runs.RunInProgress``, never half-deleted.

        ``out_dir``: the run's folder when it is not named after the run. A folder elsewhere (a CLI run registered
        in the database) is never removed: the run is only unregistered. Returns ``{"folder_removed",
        "unregistered", "folder"}``."""
        job = self.get(run_id)
        engine, db = self.engine(), _db()
        row = db.get_run(engine, run_id) if engine is not None else None
        folder = Path(out_dir) if out_dir is not None else self.runs_root / run_id
        if job is not None and job.active:
            raise runs.RunInProgress(f"run {run_id} is still being written (process {job.pid or os.getpid()} on "
                                     f"{socket.gethostname()}); cancel it first")
        if row is not None and row.get("status") == "running" and not runs.process_gone(row.get("host"),
                                                                                       row.get("pid")):
            raise runs.RunInProgress(f"run {run_id} is still being written (process {row.get('pid')} on "
                                     f"{row.get('host')}); cancel it first")
        for where in {folder, *([Path(row["out_dir"])] if row is not None and row.get("out_dir") else [])}:
            busy = runs.deletable(where, self.runs_root)
            if busy:
                raise runs.RunInProgress(busy)
        removed = False
        if row is not None:  # removes the registered folder only when it lies in the runs folder
            removed = db.delete_run(engine, run_id, delete_files=True, root=self.runs_root)
        removed = runs.delete_run_folder(folder, run_id, root=self.runs_root) or removed
        if row is None and not removed:
            raise ValueError(f"no run {run_id!r} in {self.runs_root} or in the database")
        with self._lock:
            self._jobs.pop(run_id, None)
        self._bump()
        return {"folder_removed": removed, "unregistered": row is not None, "folder": str(folder)}


def _job_row(job: Job) -> dict:
    """The row of a job whose process has not made its folder yet (a core.runs.list_runs row's keys)."""
    started = runs.utc_text(job.submitted_at)
    return {"run_id": job.run_id, "status": job.status, "scenario_name": job.scenario_name,
            "scenario_version": job.scenario_version, "seed": job.seed, "patients": job.patients_total,
            "format": job.fmt, "compressed": job.compress, "encrypted": job.encrypted, "created_at": started,
            "finished_at": None, "elapsed_s": None, "patients_per_s": None, "peak_rss_mb": None, "bytes": 0,
            "files": 0, "out_dir": str(job.out_dir), "persisted": False, "error": None, "on_disk": False,
            "mtime_ns": 0, "stamp": "missing", "reason": runs.why_not_explorable({"status": job.status})}


def _one_type(row: dict) -> dict:
    """Times as ISO 8601 UTC text whether a row came from a manifest (text) or the database (datetime): one type
    per column, so a table of runs shows them alike (and Arrow can hold the column)."""
    for key in ("created_at", "finished_at"):
        value = row.get(key)
        if hasattr(value, "astimezone"):
            value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            row[key] = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif value is not None and not isinstance(value, str):
            row[key] = str(value)
    return row


def _log_unexpected(exc: Exception, what: str, *expected: type[Exception]) -> None:
    """A database that is down is expected (its one-line reason is shown elsewhere); anything else is logged in
    full, so a bug is never hidden behind "unavailable"."""
    db = _db()
    if isinstance(exc, expected) or (db is not None and isinstance(exc, db.DatabaseUnavailable)):
        log.debug("%s: %s", what, exc)
    else:
        log.exception("%s", what, exc_info=exc)
