"""One generation run: stream a scenario into its sinks (the files, and the database when asked) and write its
manifest last.

Used by the CLI and the dashboard's run process. Progress goes to a callback; a threading.Event cancels cleanly
(the sink removes its temporary files, no final-named partial file is left, and the manifest says ``cancelled``);
``cancel_on_signals`` turns SIGINT and SIGTERM into that cancel. The run holds its folder's lock for its whole
life (a second run into the folder is refused), removes what a dead run left there, and renames its files into
place together with its manifest (``core.runs.Staging``): whatever fails, no data file stands under its final
name without a manifest.
"""
from __future__ import annotations

import contextlib
import errno
import re
import resource
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import core
from core import generator, runs
from core.calibration import Calibration
from core.generator import BLOCK_DEFAULT
from core.memory import tune_allocator
from core.scenario import Scenario
from core.schema import CONTRACT_VERSION, PATIENTS_WITH_PLAN
from core.fhir import PROFILES as FHIR_PROFILES
from core.sinks import FORMATS, create_sink
from core.sinks.layers import Output


class RunCancelled(Exception):
    pass


class Cancel(threading.Event):
    """A cancel that can say why (``reason``, recorded as the cancelled run's ``error``)."""

    reason: str | None = None


class OutputFolderError(ValueError):
    """The run folder cannot be used (not a folder, not writable, in use by another run, holds a run)."""


# what an operating-system error means, in plain words
_OS_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENAMETOOLONG: "a name in the path is too long",
               errno.ENOTDIR: "a part of the path is a file, not a folder", errno.ENOENT: "no such file or folder",
               errno.EEXIST: "a file of that name exists", errno.EISDIR: "it is a folder, not a file",
               errno.EIO: "input/output error (a failing disk?)", errno.EMFILE: "too many open files"}


def shown(path) -> str:
    """A path as a message shows it: whole when short, else its start and end (a 300-character name stays
    readable on one line)."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:55]}...{text[-55:]}"


def os_reason(exc: OSError) -> str:
    """An operating-system error in one line: what went wrong in plain words, and where."""
    what = _OS_REASONS.get(exc.errno) or (exc.strerror or type(exc).__name__).lower()
    return f"{what} ({shown(exc.filename)})" if exc.filename is not None else what


_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\][^:']*(?::\s*'([^']*)')?")


def failure_reason(exc: BaseException) -> str:
    """Why a run failed, in one line: an operating-system error in plain words (also when a library passed it on
    as text, as polars and pyarrow do), else the exception."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return os_reason(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    text = " ".join(str(exc).split())
    if isinstance(exc, OutputFolderError):  # already says what is wrong, in the user's words
        return text
    found = _ERRNO_TEXT.search(text)
    if found and int(found[1]) in _OS_REASONS:
        return os_reason(OSError(int(found[1]), "", found[2]) if found[2] else OSError(int(found[1]), ""))
    return f"{type(exc).__name__}: {text}"[:500]


@contextlib.contextmanager
def cancel_on_signals(cancel: threading.Event) -> Iterator[list[int]]:
    """SIGINT (Ctrl-C) and SIGTERM set ``cancel`` instead of interrupting whatever runs: the run stops between two
    batches and cleans up. Yields the list of signals received. Only in the main thread (elsewhere it does
    nothing: signals go to the main thread)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class Progress:
    patients_done: int
    patients_total: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.patients_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.patients_total - self.patients_done) / self.rate if self.rate > 0 else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished worker processes, in MB: the run's own.

    On Linux the process's own peak is its memory's high-water mark (VmHWM), which starts afresh with the program:
    ``ru_maxrss`` keeps the peak of the process it was forked from across exec (a run process started by a 2 GB
    dashboard server would report 2 GB)."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    own = _high_water_mark()
    if own is None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return round(max(own, kids) / 2**20, 1)


def _high_water_mark() -> int | None:
    """VmHWM of /proc/self/status in bytes, or None where there is none."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _write_json(out: Path, name: str, data: dict, rows: int | None = None, seal=None) -> dict:
    """A JSON file of the run (encrypted with the run's ``seal``, as ``<name>.enc``), finished under a temporary
    name for the run's Staging; returns its entry for the manifest's file list."""
    output = Output(out / (name + (".enc" if seal is not None else "")), seal=seal)
    try:
        output.stream.write(runs.json_bytes(data))
        output.finish()
        entry = output.commit()
    except BaseException:
        output.discard()
        raise
    return {"name": entry["name"], "table": name.removesuffix(".json"), "rows": rows, "bytes": entry["bytes"],
            "sha256": entry["sha256"]}


def check_output_dir(out: Path, force: bool = False) -> None:
    """Refuse to overwrite an earlier run unless asked, and a folder another live run writes: a run folder is never
    silently replaced. Raises OutputFolderError (a ValueError) in one line."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise OutputFolderError(f"--out {shown(out)} exists and is not a folder")
        if (out / runs.MANIFEST).exists() and not force:
            raise OutputFolderError(f"--out {shown(out)} already holds a run ({runs.MANIFEST}); choose another "
                                    f"folder or pass --force")
        if out.is_dir() and runs.is_locked(out):
            raise OutputFolderError(f"--out {shown(out)} is in use by another run that is still writing it; wait "
                                    f"for it to end or choose another folder")
    except OSError as exc:
        raise OutputFolderError(f"cannot use --out {shown(out)}: {os_reason(exc)}") from None


def _claim(out: Path, force: bool) -> tuple[runs.FolderLock, dict | None]:
    """Lock the run folder (creating it) and check it can be written; returns the lock and the manifest of the
    run it already holds (replaced only with ``force``)."""
    try:
        lock = runs.FolderLock(out).acquire()
    except runs.FolderInUse:
        raise OutputFolderError(f"--out {shown(out)} is in use by another run that is still writing it; wait for "
                                f"it to end or choose another folder") from None
    except OSError as exc:
        raise OutputFolderError(f"cannot use {shown(out)} as the run folder: {os_reason(exc)}") from None
    try:
        previous = runs.read_manifest(out)
        if previous is not None and not force:
            raise OutputFolderError(f"--out {shown(out)} already holds a run ({runs.MANIFEST}); choose another "
                                    f"folder or pass --force")
        probe = out / f".write-probe.partial-{secrets.token_hex(4)}"
        try:
            probe.open("xb").close()
            probe.unlink()
        except OSError as exc:
            raise OutputFolderError(f"cannot write into {shown(out)}: {os_reason(exc)}") from None
    except BaseException:
        lock.release()
        raise
    return lock, previous


def generate_run(scenario: Scenario, out: Path, *, fmt: str = "parquet", compress: bool = False,
                 password: str | None = None, chunk_size: int = BLOCK_DEFAULT, workers: int = 1,
                 on_progress: Callable[[Progress], None] | None = None,
                 cancel: threading.Event | None = None, run_id: str | None = None,
                 fhir_profile: str | None = None, engine=None, persist: bool = False,
                 scenario_name: str | None = None, scenario_version: int | None = None, force: bool = False,
                 on_notice: Callable[[str], None] | None = None) -> dict:
    """Generate ``scenario`` into ``out``; returns the manifest (also written as out/manifest.json).

    The folder is locked for the whole run (OutputFolderError when another live run writes it, or when it holds
    a run and ``force`` is not given; a forced run replaces the earlier one only once it completes, and leaves
    only its own files). What a dead run left there is removed first (``on_notice`` says so, and the manifest's
    ``cleaned_up``). An encrypted run also encrypts its reports and keeps its scenario in ``scenario.json.enc``.

    With a core.db ``engine`` the run is registered in the ``runs`` table (running -> completed / cancelled /
    failed); with ``persist=True`` its four tables are streamed into the database too and become visible only
    when the run completes. A database problem never stops the files: the manifest's ``database_error`` says
    what did not reach the database."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not allowed (one of {', '.join(FORMATS)})")
    if fhir_profile is not None and (fmt != "fhir" or fhir_profile not in FHIR_PROFILES):
        raise ValueError(f"--fhir-profile {fhir_profile!r} needs --format fhir and one of {', '.join(FHIR_PROFILES)}")
    generator.check_options(chunk_size, workers)  # before anything is written
    if persist and engine is None:
        raise ValueError("saving a run to the database needs a database engine (core.db.get_engine())")
    if persist and password is not None:
        raise ValueError("an encrypted run cannot be saved to the database (it would hold the tables in clear); "
                         "drop --encrypt or --db")
    tune_allocator()
    out = Path(out)
    lock, previous = _claim(out, force)
    try:
        return _generate(scenario, out, previous, fmt=fmt, compress=compress, password=password,
                         chunk_size=chunk_size, workers=workers, on_progress=on_progress, cancel=cancel,
                         run_id=run_id, fhir_profile=fhir_profile, engine=engine, persist=persist,
                         scenario_name=scenario_name, scenario_version=scenario_version, on_notice=on_notice)
    finally:
        lock.release()


def _generate(scenario: Scenario, out: Path, previous: dict | None, *, fmt, compress, password, chunk_size, workers,
              on_progress, cancel, run_id, fhir_profile, engine, persist, scenario_name, scenario_version,
              on_notice) -> dict:
    cleaned = runs.remove_leftovers(out)  # the lock is ours: any temporary file here is a dead run's
    run_id = run_id or runs.new_run_id()
    started = time.time()
    t0 = time.perf_counter()
    manifest = {
        "contract_version": CONTRACT_VERSION, "generator_version": core.__version__, "run_id": run_id,
        "seed": scenario.seed, "scenario": scenario.to_dict(), "scenario_sha256": scenario.sha256(),
        "patients": 0, "format": fmt, "compressed": compress, "encrypted": password is not None,
        "chunk_size": chunk_size, "workers": workers, "block_size": generator.BLOCK,
        "started_at": runs.utc_text(started),
    }
    if fmt == "fhir":
        manifest["fhir_profile"] = fhir_profile or "collection"
    if cleaned[0]:
        manifest["cleaned_up"] = {"files": cleaned[0], "bytes": cleaned[1]}
        if on_notice:
            on_notice(f"removed {cleaned[0]:,} file(s) ({cleaned[1] / 2**20:,.1f} MB) that an interrupted run left "
                      f"in {shown(out)}")
    done = 0
    status, error, files = "completed", None, []
    calibration = Calibration(scenario)
    simulation, schemas = None, None
    if scenario.medical_plan is not None:  # the medical plan at work; its patients carry waits and diversions
        from core.capacity.model import Simulation
        # blocks that wait for a casualty's long stay wait on disk, in the run folder (removed as they are written)
        simulation, schemas = Simulation(scenario, spill_dir=out), {"patients": PATIENTS_WITH_PLAN}
    database = None
    if engine is not None:  # registered as running now; with persist its tables stream in beside the files
        from core.sinks.database import DatabaseSink
        database = DatabaseSink(engine, manifest, out_dir=out, persist=persist, scenario_name=scenario_name,
                                scenario_version=scenario_version).open()
    staging = runs.Staging(out)
    try:
        # a sink with a block transform (fhir) has each block rendered in the worker process that generated it;
        # the stream closes first on any exit, so no worker still writes into the run folder when the sink aborts
        with (staging.holding(),
              create_sink(fmt, out, compress=compress, password=password, fhir_profile=fhir_profile,
                          seed=scenario.seed, schemas=schemas) as sink,
              contextlib.closing(generator.stream(scenario, chunk_size=chunk_size, workers=workers,
                                                  transform=(transform := _block_transform(sink, workers)),
                                                  simulation=simulation, stop=cancel))
              as batches):
            sinks = [sink] if database is None else [sink, database]
            for item in batches:
                batch, extras = item if transform else (item, None)
                if cancel is not None and cancel.is_set():
                    raise RunCancelled()
                for target in sinks:
                    target.write(batch) if extras is None else target.write(batch, extras)
                calibration.add(batch)
                done += batch.size
                if on_progress:
                    on_progress(Progress(done, scenario.patients, time.perf_counter() - t0))
            if cancel is not None and cancel.is_set():
                raise RunCancelled()
            if simulation is not None:  # the load of every facility over time, a table beside the four
                from core.capacity.report import load_pieces, report as capacity_report
                capacity = capacity_report(simulation)
                sink.write_table("load", load_pieces(simulation))
            seal = sink.seal if password is not None else None
        with staging.holding():
            files = sink.files
            report = calibration.report()
            files.append(_write_json(out, "calibration.json", report, rows=len(report["targets"]), seal=seal))
            manifest["calibration"] = report["summary"]
            if simulation is not None:
                files.append(_write_json(out, "capacity.json", capacity, rows=len(capacity["resources"]), seal=seal))
                manifest["capacity"] = {"verdict": capacity["verdict"], "summary": capacity["summary"],
                                        "deaths_attributable": capacity["deaths"]["attributable_to_capacity"]["total"]}
            if seal is not None:  # the scenario (and what the plan concluded) only in the encrypted file
                files.append(_write_json(out, "scenario.json", {"scenario": manifest["scenario"],
                                                                "capacity": manifest.get("capacity")}, seal=seal))
        if database is not None:
            database.close()  # the database load is part of the run's time
    except (RunCancelled, KeyboardInterrupt):
        status, error = "cancelled", getattr(cancel, "reason", None)
    except Exception as exc:
        if cancel is None or not cancel.is_set():
            return _failed(exc, out, manifest, started, t0, done, database, staging, previous)
        # what a cancel broke on its way (a worker stopped by the same SIGTERM) is the cancel
        status, error = "cancelled", getattr(cancel, "reason", None)
    try:
        return _finish(out, manifest, started, t0, done, status, error, files, database, staging, previous)
    except Exception as exc:  # the commit failed (e.g. disk full): nothing stands under a final name now
        manifest["status"], manifest["error"], manifest["files"] = "failed", failure_reason(exc), []
        manifest["patients"] = 0
        _unpublish(database, manifest)
        with contextlib.suppress(OSError):
            _write_unless_replacing(out, manifest, previous)
        raise


def _failed(exc, out, manifest, started, t0, done, database, staging, previous):
    """Record a failed run in its manifest (recorded, then raised for the caller to report)."""
    staging.discard()
    with contextlib.suppress(OSError):  # a full disk may refuse even the manifest: then the folder has none
        _finish(out, manifest, started, t0, done, "failed", failure_reason(exc), [], database, staging, previous)
    raise exc


def _block_transform(sink, workers: int):
    """The sink's per-block transform for the generator's worker processes (fhir bundles), or None."""
    return sink.block_transform() if workers > 1 and hasattr(sink, "block_transform") else None


def _finish(out, manifest, started, t0, done, status, error, files, database, staging, previous) -> dict:
    elapsed = time.perf_counter() - t0
    manifest.update({
        "patients": done if status == "completed" else 0, "patients_generated": done,
        "finished_at": runs.utc_text(started + elapsed), "elapsed_s": round(elapsed, 3),
        "patients_per_s": round(done / elapsed, 1) if elapsed > 0 else None,
        "peak_rss_mb": peak_rss_mb(), "status": status, "files": files,
    })
    if error:
        manifest["error"] = error
    if database is not None:  # completed: the run's rows become visible now; otherwise they are dropped
        database.finish(manifest)
    if manifest.get("encrypted"):  # what stays clear: enough to list and verify the run (README)
        manifest.pop("scenario", None)
        manifest.pop("capacity", None)
    if status == "completed":
        staging.commit(manifest)
    else:
        staging.discard()
        _write_unless_replacing(out, manifest, previous)
    return manifest


def _write_unless_replacing(out: Path, manifest: dict, previous: dict | None) -> None:
    """The manifest of a run that did not complete, unless it would hide a completed run it was to replace
    (--force): that one stays as it was."""
    if previous is not None and previous.get("status") == "completed" and runs.read_manifest(out) is not None:
        manifest["kept_previous_run"] = previous.get("run_id")
        return
    runs.write_manifest(out, manifest)


def _unpublish(database, manifest: dict) -> None:
    """A run whose files failed after its tables were published: the database says failed too (best effort)."""
    if database is None or database.run_key is None:
        return
    from core import db
    try:
        db.drop_run_rows(database.engine, database.run_key)
        db.finish_run(database.engine, database.run_key, manifest, database_error="the run's files failed")
        manifest["persisted"] = False
    except Exception:  # the database is away: its next check drops the rows (core.db.runs.recover_interrupted)
        pass
