"""One generation run: stream a scenario into its sinks (the files, and the database when asked) and write its
manifest last.

Used by the CLI and the dashboard. Progress goes to a callback; a threading.Event cancels cleanly (the sink
removes its temporary files, no final-named partial file is left, and the manifest says ``cancelled``).
"""
from __future__ import annotations

import contextlib
import hashlib
import resource
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import core
from core import generator, runs
from core.calibration import Calibration
from core.generator import BLOCK_DEFAULT
from core.memory import tune_allocator
from core.scenario import Scenario
from core.schema import CONTRACT_VERSION, PATIENTS_WITH_PLAN
from core.fhir import PROFILES as FHIR_PROFILES
from core.sinks import FORMATS, create_sink


class RunCancelled(Exception):
    pass


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
    """Peak resident memory of this process and its finished worker processes, in MB."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return round(max(own, kids) / 2**20, 1)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json(out: Path, name: str, data: dict, rows: int | None = None) -> dict:
    """Write a JSON file of the run atomically; returns its entry for the manifest's file list."""
    payload = runs.write_json(out / name, data)
    return {"name": name, "table": name.removesuffix(".json"), "rows": rows, "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest()}


def check_output_dir(out: Path, force: bool = False) -> None:
    """Refuse to overwrite an earlier run unless asked: a run folder is never silently replaced."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if (out / runs.MANIFEST).exists() and not force:
        raise ValueError(f"--out {out} already holds a run ({runs.MANIFEST}); choose another folder or pass --force")


def generate_run(scenario: Scenario, out: Path, *, fmt: str = "parquet", compress: bool = False,
                 password: str | None = None, chunk_size: int = BLOCK_DEFAULT, workers: int = 1,
                 on_progress: Callable[[Progress], None] | None = None,
                 cancel: threading.Event | None = None, run_id: str | None = None,
                 fhir_profile: str | None = None, engine=None, persist: bool = False,
                 scenario_name: str | None = None, scenario_version: int | None = None) -> dict:
    """Generate ``scenario`` into ``out``; returns the manifest (also written as out/manifest.json).

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
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or runs.new_run_id()
    started = time.time()
    t0 = time.perf_counter()
    manifest = {
        "contract_version": CONTRACT_VERSION, "generator_version": core.__version__, "run_id": run_id,
        "seed": scenario.seed, "scenario": scenario.to_dict(), "scenario_sha256": scenario.sha256(),
        "patients": 0, "format": fmt, "compressed": compress, "encrypted": password is not None,
        "chunk_size": chunk_size, "workers": workers, "block_size": generator.BLOCK,
        "started_at": _utc(started),
    }
    if fmt == "fhir":
        manifest["fhir_profile"] = fhir_profile or "collection"
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
    try:
        # a sink with a block transform (fhir) has each block rendered in the worker process that generated it;
        # the stream closes first on any exit, so no worker still writes into the run folder when the sink aborts
        with (create_sink(fmt, out, compress=compress, password=password, fhir_profile=fhir_profile,
                          seed=scenario.seed, schemas=schemas) as sink,
              contextlib.closing(generator.stream(scenario, chunk_size=chunk_size, workers=workers,
                                                  transform=(transform := _block_transform(sink, workers)),
                                                  simulation=simulation))
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
        files = sink.files
        report = calibration.report()
        files.append(_write_json(out, "calibration.json", report, rows=len(report["targets"])))
        manifest["calibration"] = report["summary"]
        if simulation is not None:
            files.append(_write_json(out, "capacity.json", capacity, rows=len(capacity["resources"])))
            manifest["capacity"] = {"verdict": capacity["verdict"], "summary": capacity["summary"],
                                    "deaths_attributable": capacity["deaths"]["attributable_to_capacity"]["total"]}
        if database is not None:
            database.close()  # the database load is part of the run's time
    except (RunCancelled, KeyboardInterrupt):
        status = "cancelled"
    except Exception as exc:  # recorded in the manifest, then raised for the caller to report
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        _finish(out, manifest, started, t0, done, status, error, [], database)
        raise
    return _finish(out, manifest, started, t0, done, status, error, files, database)


def _block_transform(sink, workers: int):
    """The sink's per-block transform for the generator's worker processes (fhir bundles), or None."""
    return sink.block_transform() if workers > 1 and hasattr(sink, "block_transform") else None


def _finish(out, manifest, started, t0, done, status, error, files, database=None) -> dict:
    elapsed = time.perf_counter() - t0
    manifest.update({
        "patients": done if status == "completed" else 0, "patients_generated": done,
        "finished_at": _utc(started + elapsed), "elapsed_s": round(elapsed, 3),
        "patients_per_s": round(done / elapsed, 1) if elapsed > 0 else None,
        "peak_rss_mb": peak_rss_mb(), "status": status, "files": files,
    })
    if error:
        manifest["error"] = error
    if database is not None:  # completed: the run's rows become visible now; otherwise they are dropped
        database.finish(manifest)
    runs.write_manifest(out, manifest)
    return manifest
