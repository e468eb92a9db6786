"""The run registry: every generation run (running -> completed / cancelled / failed), its performance samples,
and, for a persisted run, its four tables (loaded by core.sinks.database) read back by summary, patient or table.

A persisted run's rows are reachable only once the run is marked completed and persisted; rows a run left behind
(cancelled, failed, interrupted, or the database went away) are dropped here, at once or on a later ``check``.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from core import runs as run_folders, schema

from .engine import connect, dialect, guarded
from .tables import (METRIC_FIELDS, METRICS, NAME_MAX, RUN_TABLES, RUNS, STORED_TABLES, aware, parse_time, quoted,
                     row_dict, run_partition, stored_tables, utcnow)

RUN_LIST_COLS = ("run_id", "status", "scenario_name", "scenario_version", "seed", "patients", "format",
                 "created_at", "finished_at", "elapsed_s", "patients_per_s", "peak_rss_mb", "out_dir", "persisted",
                 "error")


# --- a run's start and end ----------------------------------------------------------------------------------------
@guarded
def register_run(engine: sa.Engine, manifest: dict, *, out_dir: str | Path | None = None, persist: bool = False,
                 scenario_name: str | None = None, scenario_version: int | None = None) -> int:
    """Insert a run as ``running`` (from the manifest as it is at the start); returns its integer key."""
    sc = manifest.get("scenario") or {}
    row = {"run_id": manifest["run_id"], "status": "running",
           "scenario_name": (scenario_name or sc.get("name") or "")[:NAME_MAX],
           "scenario_version": scenario_version, "scenario_sha256": manifest.get("scenario_sha256"),
           "seed": manifest.get("seed"), "patients": sc.get("patients"), "patients_generated": 0,
           "format": manifest.get("format"), "compressed": bool(manifest.get("compressed")),
           "encrypted": bool(manifest.get("encrypted")), "generator_version": manifest.get("generator_version"),
           "contract_version": manifest.get("contract_version"),
           "created_at": parse_time(manifest.get("started_at")) or utcnow(),
           "out_dir": str(Path(out_dir).resolve()) if out_dir else None, "persist": bool(persist),
           "persisted": False, "host": socket.gethostname()[:255], "pid": os.getpid(), "manifest": None}
    with connect(engine, begin=True) as conn:
        return conn.execute(RUNS.insert().values(**row).returning(RUNS.c.run_key)).scalar_one()


def finish_values(manifest: dict, *, persisted: bool, database_error: str | None, summary: dict | None) -> dict:
    """The ``runs`` columns that record a run's end, from its final manifest."""
    slim = {k: v for k, v in manifest.items() if k != "scenario"}
    return {"status": manifest.get("status", "failed"), "patients": manifest.get("patients"),
            "patients_generated": manifest.get("patients_generated"),
            "finished_at": parse_time(manifest.get("finished_at")), "elapsed_s": manifest.get("elapsed_s"),
            "patients_per_s": manifest.get("patients_per_s"), "peak_rss_mb": manifest.get("peak_rss_mb"),
            "error": manifest.get("error"), "database_error": database_error, "persisted": persisted,
            "manifest": json.loads(json.dumps(slim, default=str)), "summary": summary}


@guarded
def finish_run(engine: sa.Engine, run_key: int, manifest: dict, *, database_error: str | None = None) -> None:
    """Record a run's end (status, timings, peak memory) for a run whose tables were not loaded."""
    with connect(engine, begin=True) as conn:
        conn.execute(RUNS.update().where(RUNS.c.run_key == run_key).values(
            **finish_values(manifest, persisted=False, database_error=database_error, summary=None)))


# --- reading runs -------------------------------------------------------------------------------------------------
@guarded
def list_runs(engine: sa.Engine, limit: int = 200) -> list[dict]:
    """Runs newest first (run_id, status, scenario, seed, patients, format, times, speed, memory, persisted…)."""
    limit = max(1, min(int(limit), 10_000))
    q = (sa.select(*(RUNS.c[c] for c in RUN_LIST_COLS))
         .order_by(RUNS.c.created_at.desc(), RUNS.c.run_key.desc()).limit(limit))
    with connect(engine) as conn:
        return [row_dict(r) for r in conn.execute(q)]


@guarded
def get_run(engine: sa.Engine, run_id: str) -> dict | None:
    """One run with every column except the stored summary (None when unknown)."""
    q = sa.select(*(c for c in RUNS.c if c.name != "summary")).where(RUNS.c.run_id == str(run_id))
    with connect(engine) as conn:
        return row_dict(conn.execute(q).first())


def _run_key(conn: sa.Connection, run_id: str, *, persisted: bool = False) -> int:
    row = conn.execute(sa.select(RUNS.c.run_key, RUNS.c.persisted, RUNS.c.status)
                       .where(RUNS.c.run_id == str(run_id))).first()
    if row is None:
        raise LookupError(f"no run {run_id!r} in the database")
    if persisted and not (row.persisted and row.status == "completed"):
        raise LookupError(f"run {run_id!r} was not saved to the database (status {row.status}; "
                          f"generate with --db or 'Save to database' to query its patients)")
    return row.run_key


@guarded
def run_summary(engine: sa.Engine, run_id: str) -> dict:
    """Counts of a persisted run by category, triage, outcome, mechanism, front, nationality; deaths; RTD.

    Computed while the run streamed in and stored with it, so this is one indexed row read."""
    with connect(engine) as conn:
        _run_key(conn, run_id, persisted=True)
        summary = conn.execute(sa.select(RUNS.c.summary).where(RUNS.c.run_id == str(run_id))).scalar_one()
    return summary if isinstance(summary, dict) else json.loads(summary)


@guarded
def patient_record(engine: sa.Engine, run_id: str, patient_id: int) -> dict:
    """One patient of a persisted run: the patients row plus lists ``events``, ``conditions``, ``vitals``."""
    pid = int(patient_id)
    tables = RUN_TABLES
    with connect(engine) as conn:
        key = _run_key(conn, run_id, persisted=True)

        def rows(name, order):
            t = tables[name]
            q = (sa.select(*(c for c in t.c if c.name not in ("run_key", "patient_id")))
                 .where(t.c.run_key == key, t.c.patient_id == pid).order_by(*(t.c[o] for o in order)))
            return [row_dict(r) for r in conn.execute(q)]

        p = tables["patients"]
        head = conn.execute(sa.select(*(c for c in p.c if c.name != "run_key"))
                            .where(p.c.run_key == key, p.c.patient_id == pid)).first()
        if head is None:
            raise LookupError(f"run {run_id!r} has no patient {pid}")
        record = row_dict(head)
        record["events"] = rows("events", ("seq",))
        record["conditions"] = rows("conditions", ("rank",))
        order = {code: i for i, code in enumerate(schema.VITAL_CODES)}  # a set reads as it was measured
        record["vitals"] = sorted(rows("vitals", ("time",)), key=lambda v: (v["time"], order.get(v["code"], 99)))
    return record


@guarded
def run_table(engine: sa.Engine, run_id: str, table: str):
    """A persisted run's whole table as a polars DataFrame in the contract's column order and types (for checks
    and exports of modest runs; the dashboard's views use the summary and patient_record)."""
    if table not in RUN_TABLES:
        raise ValueError(f"table {table!r} is not one of {', '.join(RUN_TABLES)}")
    t = RUN_TABLES[table]
    cols = [c for c in t.c if c.name != "run_key"]
    order = {"patients": ("patient_id",), "events": ("patient_id", "seq"), "conditions": ("patient_id", "rank"),
             "vitals": ("patient_id", "time", "code")}[table]
    with connect(engine) as conn:
        key = _run_key(conn, run_id, persisted=True)
        result = conn.execute(sa.select(*cols).where(t.c.run_key == key).order_by(*(t.c[o] for o in order)))
        data = {c.name: [] for c in cols}
        for part in result.partitions(65_536):
            for i, c in enumerate(cols):
                data[c.name].extend(r[i] for r in part)
    out = {}
    for name, dtype in schema.TABLES[table].items():
        plain = pl.String if isinstance(dtype, pl.Enum) else dtype
        values = data[name]
        if isinstance(dtype, pl.Datetime):
            values = [aware(v) for v in values]
        out[name] = pl.Series(name, values, dtype=plain if plain != pl.Datetime("us", "UTC") else None)
        if isinstance(dtype, pl.Datetime):
            out[name] = out[name].dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        elif out[name].dtype != plain:
            out[name] = out[name].cast(plain)
    return pl.DataFrame(out)


# --- removing runs ------------------------------------------------------------------------------------------------
def drop_run_rows(engine: sa.Engine, run_key: int, *, only_unfinished: bool = False) -> None:
    """Remove a run's rows from the tables that hold them (PostgreSQL: drop its partitions or staging tables);
    with ``only_unfinished``, a run that completed and was persisted keeps them."""
    k = int(run_key)
    with connect(engine, begin=True) as conn:
        if only_unfinished:
            row = conn.execute(sa.select(RUNS.c.status, RUNS.c.persisted).where(RUNS.c.run_key == k)).first()
            if row is not None and row.persisted and row.status == "completed":
                return
        for table, t in stored_tables(dialect(engine)).items():
            if dialect(engine) == "postgresql":
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quoted(run_partition(table, k))}")
            else:
                conn.execute(t.delete().where(t.c.run_key == k))


@guarded
def delete_run(engine: sa.Engine, run_id: str, delete_files: bool = True, *, root: str | Path | None = None) -> bool:
    """Delete a run: its rows in every table and, with ``delete_files``, its output folder (only a folder whose
    manifest names this run, and with ``root`` only one directly inside ``root``: the dashboard passes its runs
    folder, so a run written elsewhere is only unregistered). A run still running in this or another process (its
    row says so, or its folder is locked) is refused. Returns whether the folder was removed."""
    with connect(engine) as conn:
        row = conn.execute(sa.select(RUNS.c.run_key, RUNS.c.status, RUNS.c.out_dir, RUNS.c.host, RUNS.c.pid)
                           .where(RUNS.c.run_id == str(run_id))).first()
    if row is None:
        raise LookupError(f"no run {run_id!r} in the database")
    if row.status == "running" and not _is_dead(row.host, row.pid):
        raise ValueError(f"run {run_id!r} is still running (process {row.pid} on {row.host}); cancel it first")
    folder = Path(row.out_dir) if row.out_dir else None
    if folder is not None and root is not None:
        busy = run_folders.deletable(folder, root)
    elif folder is not None and folder.is_dir() and run_folders.is_locked(folder):
        busy = f"run {run_id!r} is still being written by a live process; cancel it first"
    else:
        busy = None
    if busy:
        raise run_folders.RunInProgress(busy)
    drop_run_rows(engine, row.run_key)
    with connect(engine, begin=True) as conn:
        conn.execute(METRICS.delete().where(METRICS.c.run_key == row.run_key))
        conn.execute(RUNS.delete().where(RUNS.c.run_key == row.run_key))
    if delete_files and row.out_dir:
        return _delete_run_folder(Path(row.out_dir), str(run_id), root)
    return False


def _delete_run_folder(folder: Path, run_id: str, root: str | Path | None = None) -> bool:
    return run_folders.delete_run_folder(folder, run_id, root=root)  # the one deletion rule for run folders


def _is_dead(host: str | None, pid: int | None) -> bool:
    """A run's process is gone (only decidable for runs of this host)."""
    return run_folders.process_gone(host, pid)


INTERRUPTED = "interrupted: the generating process ended before the run finished"


@guarded
def recover_interrupted(engine: sa.Engine) -> list[str]:
    """Runs left ``running`` by a process of this host that no longer exists become ``failed`` and lose any
    half-loaded rows (PostgreSQL: their staging tables, and any staging table no running run owns); returns their
    run ids. Every process that opens the database runs this once (core.db.link.get_engine), and so does
    ``python -m core db status``."""
    # staging tables first: a run registers before it creates them, so the running rows read next include theirs
    staging = _staging_tables(engine) if dialect(engine) == "postgresql" else set()
    with connect(engine) as conn:
        rows = conn.execute(sa.select(RUNS.c.run_key, RUNS.c.run_id, RUNS.c.host, RUNS.c.pid)
                            .where(RUNS.c.status == "running")).all()
    done, alive = [], set()
    for r in rows:
        if not _is_dead(r.host, r.pid):
            alive.add(r.run_key)
            continue
        drop_run_rows(engine, r.run_key)
        with connect(engine, begin=True) as conn:
            conn.execute(RUNS.update().where(RUNS.c.run_key == r.run_key).values(
                status="failed", persisted=False, finished_at=utcnow(), error=INTERRUPTED))
        done.append(r.run_id)
    for key in sorted(staging - alive):  # what a load left when its database went away before it could drop it
        drop_run_rows(engine, key, only_unfinished=True)
    return done


def _staging_tables(engine: sa.Engine) -> set[int]:
    """Run keys with a staging table (``<table>_r<key>`` not attached as a partition) in this schema."""
    pattern = "^(" + "|".join(STORED_TABLES) + ")_r([0-9]+)$"
    with connect(engine) as conn:
        found = conn.execute(sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname ~ :p "
            "AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)"), {"p": pattern}).scalars().all()
    return {int(name.rsplit("_r", 1)[1]) for name in found}


_PENDING_CLEANUP: dict[int, dict[int, dict | None]] = {}  # engine id -> {run key: final manifest or None}
_PENDING_LOCK = threading.Lock()


def defer_cleanup(engine: sa.Engine, run_key: int, manifest: dict | None = None) -> None:
    """Remember a run whose half-loaded rows (and end) could not reach the database; ``retry_cleanups`` (called
    by ``check``) tries again."""
    with _PENDING_LOCK:
        pending = _PENDING_CLEANUP.setdefault(id(engine), {})
        pending[run_key] = manifest if manifest is not None else pending.get(run_key)


def retry_cleanups(engine: sa.Engine) -> None:
    """Drop the half-loaded rows and record the end of runs ``defer_cleanup`` remembered (raises while the
    database is still away)."""
    with _PENDING_LOCK:
        pending = dict(_PENDING_CLEANUP.get(id(engine), {}))
    for key, manifest in pending.items():
        drop_run_rows(engine, key, only_unfinished=True)
        if manifest is not None:
            finish_run(engine, key, manifest, database_error=manifest.get("database_error"))
        with _PENDING_LOCK:
            _PENDING_CLEANUP.get(id(engine), {}).pop(key, None)


# --- metrics ------------------------------------------------------------------------------------------------------
@guarded
def record_metrics(engine: sa.Engine, run_id: str, samples: list[dict]) -> None:
    """Store a run's performance samples (t, patients_done, patients_per_s, rss_mb, cpu_pct, pool_checked_out,
    cache_hit_rate); a run not in the database raises LookupError."""
    rows = [{f: (None if s.get(f) is None else s.get(f)) for f in METRIC_FIELDS} for s in samples]
    for r in rows:
        if r["t"] is None:
            raise ValueError("every metrics sample needs its time 't' (seconds since the run started)")
    with connect(engine, begin=True) as conn:
        key = _run_key(conn, run_id)
        if rows:
            conn.execute(METRICS.insert(), [dict(r, run_key=key) for r in rows])


@guarded
def run_metrics(engine: sa.Engine, run_id: str) -> list[dict]:
    """A run's samples in time order."""
    with connect(engine) as conn:
        key = _run_key(conn, run_id)
        q = sa.select(*(METRICS.c[f] for f in METRIC_FIELDS)).where(METRICS.c.run_key == key).order_by(
            METRICS.c.t, METRICS.c.id)
        return [row_dict(r) for r in conn.execute(q)]
