"""The database sink (``DatabaseSink``): a run registered in the database when it starts, its four tables streamed
in while it is generated, and made visible all at once when it completes (or dropped when it is cancelled or fails).

Vital signs are stored one row per measurement set (table ``vital_sets``, read through the view ``vitals``;
migration 0002): ~13 rows per patient instead of ~29.

PostgreSQL: each stored table of the run is COPYed (binary format, built column-wise by core/sinks/pgcopy.py while
the server reads; FREEZE, the table being emptied in the writer's transaction) into its own staging table
``<table>_r<run_key>`` that already carries the partition's CHECK constraint; two writer threads on two pooled
connections (events on one; patients, conditions and vital sets on the other: about equal COPY work) overlap with
generation. On completion each writer indexes and analyzes its tables and one transaction ATTACHes the four
partitions and marks the run completed: readers see the whole run or nothing. Cancel, failure or delete drops the
tables.

SQLite: a render thread turns each batch into SQL values — patients row by row, and a patient's events,
conditions and vital sets as one row each (tables ``event_lists``, ``condition_lists``, ``vital_lists`` holding JSON
arrays, read through views with the contract's names; migration 0003), built column-wise by polars — while one
writer thread inserts the batch before with ``executemany`` of many-row INSERTs (categories bound as integer codes),
one transaction per batch (a single transaction per run would lock every other writer, such as a scenario save, out
for the whole run); the rows are reachable through core.db only once the run is marked completed, and a cancelled
or failed run's rows are deleted. Python's sqlite3 binds value by value holding the interpreter lock: storing by
patient binds 6.6 million values for 200,000 patients instead of 22 million (benchmarks/bench_sqlite.py).

Either way a writer loads batch n while batch n + 1 is generated (on SQLite: rendered), never more, so the run's
progress counts the load.
"""
from __future__ import annotations

import json
import queue
import re
import sqlite3
import threading
import time
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from core import schema
from core.db.engine import connect, describe, dialect, pool_status, unavailable
from core.db.errors import DatabaseUnavailable, is_down, reason
from core.db.runs import defer_cleanup, drop_run_rows, finish_run, finish_values, register_run
from core.db.tables import RUNS, SQLITE_STORED_TABLES, STORED_TABLES, quoted, run_partition
from core.schema import VITAL_SET_COLUMNS, Batch

from . import pgcopy

SUMMARY_COLUMNS = ("category", "triage", "outcome", "mechanism", "front", "nationality", "severity",
                   "last_facility", "body_region", "sex", "warfare_type")
_STOP = object()


def _driver_down(exc: BaseException) -> bool:
    """A raw driver error (our writers use the DBAPI connection directly) that means the server is gone."""
    for mod in ("psycopg2", "sqlite3"):
        dbapi = __import__(mod)
        if isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError)):
            return True
    return False


def one_line(exc: BaseException, engine: sa.Engine) -> str:
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    if isinstance(exc, (sa.exc.DBAPIError, sa.exc.TimeoutError)) and is_down(exc):
        return str(unavailable(engine, exc))
    if _driver_down(exc):
        return f"database unreachable at {describe(engine)}: {reason(exc)}"
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class Summary:
    """Counts a run's patients by the dashboard's categories while the batches stream past (no second pass)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {c: {} for c in SUMMARY_COLUMNS}
        self.rows = {name: 0 for name in schema.TABLES}
        self.mass_casualty = 0
        self.polytrauma = 0

    def add(self, batch: Batch) -> None:
        p = batch.patients
        for col in SUMMARY_COLUMNS:
            acc = self.counts[col]
            for value, n in p.group_by(col).len().iter_rows():
                key = "" if value is None else str(value)
                acc[key] = acc.get(key, 0) + n
        for name, frame in batch.tables().items():
            self.rows[name] += frame.height
        self.mass_casualty += int(p["mass_casualty"].sum())
        self.polytrauma += int(p["polytrauma"].sum())

    def result(self) -> dict:
        out = {"patients": self.rows["patients"], "rows": dict(self.rows)}
        for col, acc in self.counts.items():
            out[f"by_{col}"] = dict(sorted(acc.items(), key=lambda kv: (-kv[1], kv[0])))
        outcomes = self.counts["outcome"]
        out.update(kia=outcomes.get("KIA", 0), dow=outcomes.get("DOW", 0), rtd=outcomes.get("RTD", 0),
                   role4=outcomes.get("ROLE4", 0), in_care=outcomes.get("IN_CARE", 0),
                   mass_casualty=self.mass_casualty, polytrauma=self.polytrauma)
        out["deaths"] = out["kia"] + out["dow"]
        return out


_TABLES = {**STORED_TABLES, **SQLITE_STORED_TABLES}


def _columns(table: str) -> list[str]:
    return [c.name for c in _TABLES[table].c if c.name != "run_key"]


def vital_sets(vitals: pl.DataFrame) -> pl.DataFrame:
    """The long vitals rows of a batch as measurement sets (migration 0002; schema.measurement_sets)."""
    sets = schema.measurement_sets(vitals)
    if sets is None:
        raise ValueError("vitals rows are not whole measurement sets (7 consecutive rows of one patient, time and "
                         "facility in LOINC order, no missing value); the database stores vitals by set")
    return sets


SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%6f"  # how SQLAlchemy's SQLite DateTime stores a time (UTC)
_PLAIN = re.compile(r"^[A-Za-z0-9_ .\-]*$")  # category texts that need no escaping inside a JSON string


def _json_lists(frame: pl.DataFrame, elements: list[pl.Expr], name: str) -> pl.DataFrame:
    """One row per patient: ``patient_id`` and ``name``, the JSON array of the patient's rows as arrays of
    ``elements`` (already JSON texts), in row order (the rows come in patient order)."""
    parts = [e.fill_null("null") for e in elements]  # a missing value is JSON null (read back as NULL)
    element = pl.concat_str([pl.lit("["), pl.concat_str(parts, separator=","), pl.lit("]")])
    return (frame.lazy().select(pl.col("patient_id"), element.alias(name))
            .group_by("patient_id", maintain_order=True).agg(pl.col(name).str.join(","))
            .with_columns(pl.concat_str([pl.lit("["), pl.col(name), pl.lit("]")]).alias(name)).collect())


def _json_time(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("us").cast(pl.String)


def _json_category(frame: pl.DataFrame, col: str) -> pl.Expr:
    dtype = frame.schema[col]
    if not isinstance(dtype, pl.Enum) or not all(_PLAIN.match(c) for c in dtype.categories.to_list()):
        raise ValueError(f"{col} must be one of the contract's plain categories")
    return pl.concat_str([pl.lit('"'), pl.col(col).cast(pl.String), pl.lit('"')])


def _json_text(frame: pl.DataFrame, col: str) -> pl.Expr:
    """A string column as JSON text (null as null); escaped by json.dumps only where a value needs it. A NUL
    character is refused: SQLite's JSON functions end the text there."""
    if frame[col].str.contains("\x00", literal=True).any():
        raise ValueError(f"{col}: text with a NUL character cannot be stored in the database")
    if frame[col].str.contains(r"[\x00-\x1f\\\"]").any():
        return pl.col(col).map_elements(json.dumps, return_dtype=pl.String, skip_nulls=True).fill_null("null")
    return pl.concat_str([pl.lit('"'), pl.col(col), pl.lit('"')]).fill_null("null")


def condition_lists(conditions: pl.DataFrame) -> pl.DataFrame:
    """A batch's conditions as one row per patient (SQLite's ``condition_lists``, migration 0003): ``patient_id``
    and ``conditions``, the JSON array of the patient's ``[rank, code, display, body_region, severity]`` in order."""
    return _json_lists(conditions, [pl.col("rank").cast(pl.String), _json_text(conditions, "code"),
                                    _json_text(conditions, "display"), _json_category(conditions, "body_region"),
                                    _json_category(conditions, "severity")], "conditions")


def event_lists(events: pl.DataFrame) -> pl.DataFrame:
    """A batch's events as one row per patient (SQLite's ``event_lists``, migration 0003): ``patient_id`` and
    ``events``, the JSON array of the patient's ``[seq, time, facility, event, detail]`` in order, ``time`` in
    microseconds since 1970 UTC (the view ``events`` turns it back into SQLite's time text). Built column-wise; a
    detail holding a quote, a backslash or a control character is escaped as JSON requires."""
    return _json_lists(events, [pl.col("seq").cast(pl.String), _json_time("time"),
                                _json_category(events, "facility"), _json_category(events, "event"),
                                _json_text(events, "detail")], "events")


def vital_lists(vitals: pl.DataFrame) -> pl.DataFrame:
    """A batch's vital signs as one row per patient (SQLite's ``vital_lists``, migration 0003): ``patient_id`` and
    ``sets``, the JSON array of the patient's measurement sets ``[time, facility, <the 7 values>]`` in order (floats
    written so that they read back exactly)."""
    sets = vital_sets(vitals)
    values = sets.select(VITAL_SET_COLUMNS)
    if any(values[c].is_nan().any() or values[c].is_infinite().any() for c in VITAL_SET_COLUMNS):
        raise ValueError("a vital sign is not a number; the database stores only numbers")
    return _json_lists(sets, [_json_time("time"), _json_category(sets, "facility"),
                              *(pl.col(c).cast(pl.String) for c in VITAL_SET_COLUMNS)], "sets")


# stored tables that are not a contract table as it is: how each is made from a batch
_STORED_FORMS = {"vital_sets": lambda b: vital_sets(b.vitals), "event_lists": lambda b: event_lists(b.events),
                 "condition_lists": lambda b: condition_lists(b.conditions),
                 "vital_lists": lambda b: vital_lists(b.vitals)}


# --- writers -------------------------------------------------------------------------------------------------------
class _Stage(threading.Thread):
    """A thread that takes items one at a time. ``offer`` returns once the thread has taken the item, so it works
    on item n while item n + 1 is made, never more: a run's progress (patients generated) is never more than a
    batch or two ahead of what is stored, its ETA counts the load, and memory stays flat."""

    def __init__(self, loader: "_Loader", name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.loader = loader
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None

    def offer(self, item) -> None:
        """Hand an item to a live thread and wait until it has taken it (never for a thread that ended)."""
        while self.is_alive():
            try:
                self.queue.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        while self.is_alive() and not self.queue.empty():
            time.sleep(0.002)

    def failed(self, exc: BaseException) -> None:
        """Record the error (finish() reports it) and drain the queue so that offer() never blocks."""
        self.error = exc
        self.loader.failed.set()
        while True:
            try:
                if self.queue.get(timeout=30) is _STOP:
                    break
            except queue.Empty:
                break


class _Writer(_Stage):
    """Loads batches (or what the loader's renderer made of them) into the database on a connection of its own."""

    def __init__(self, loader: "_Loader", tables: tuple[str, ...]) -> None:
        super().__init__(loader, f"mpg-db-{'-'.join(tables)}")
        self.tables = tables

    def run(self) -> None:
        try:
            with connect(self.loader.engine) as conn:
                raw = conn.connection.dbapi_connection
                try:
                    while True:
                        item = self.queue.get()
                        if item is _STOP:
                            break
                        if self.error is None and not self.loader.failed.is_set():
                            self.loader.load(raw, item, self.tables)
                    if not self.loader.failed.is_set():
                        self.loader.seal(raw, self.tables)
                    raw.commit()
                except BaseException as exc:
                    if _driver_down(exc):  # a dead connection goes, it is not handed back to the pool
                        conn.invalidate()
                    raise
        except BaseException as exc:
            self.failed(exc)


class _Renderer(_Stage):
    """Turns batches into what the writers load (``loader.render``) while the writers load the one before."""

    def __init__(self, loader: "_Loader") -> None:
        super().__init__(loader, "mpg-db-render")

    def run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    break
                if not self.loader.failed.is_set():
                    rendered = self.loader.render(item)
                    for w in self.loader.writers:
                        if not self.loader.failed.is_set():
                            w.offer(rendered)
        except BaseException as exc:
            self.failed(exc)


class _Loader:
    writers_tables: tuple[tuple[str, ...], ...] = (tuple(STORED_TABLES),)

    def __init__(self, engine: sa.Engine, run_key: int) -> None:
        self.engine, self.run_key = engine, run_key
        self.failed = threading.Event()
        # seconds spent per table and stage (render, copy, index, analyze), for benchmarks/bench_db.py
        self.timings: dict[str, dict[str, float]] = {t: {} for ts in self.writers_tables for t in ts}
        self.writers = [_Writer(self, t) for t in self.writers_tables]
        self.renderer = _Renderer(self) if type(self).render is not _Loader.render else None

    def start(self) -> None:
        self.prepare()
        for w in self.writers:
            w.start()
        if self.renderer is not None:
            self.renderer.start()

    def put(self, batch: Batch) -> None:
        if self.renderer is not None:
            self.renderer.offer(batch)
            return
        for w in self.writers:
            if not self.failed.is_set():
                w.offer(batch)

    def close(self) -> BaseException | None:
        """Wait for the renderer and the writers; the first error, if any."""
        stages = [*([self.renderer] if self.renderer is not None else []), *self.writers]
        if self.renderer is not None:
            self.renderer.offer(_STOP)
            self.renderer.join()
        for w in self.writers:
            w.offer(_STOP)
        for w in self.writers:
            w.join()
        return next((s.error for s in stages if s.error is not None), None)

    # dialect parts
    def render(self, batch: Batch):
        """What the writers load instead of the batch itself (a loader that defines it gets a renderer thread)."""
        return batch

    def prepare(self) -> None: ...
    def load(self, raw, batch: Batch, tables) -> None: ...
    def seal(self, raw, tables) -> None: ...
    def publish(self, conn: sa.Connection) -> None: ...

    def _timed(self, table: str, stage: str, t0: float) -> None:
        acc = self.timings[table]
        acc[stage] = acc.get(stage, 0.0) + time.perf_counter() - t0

    @staticmethod
    def frame(batch: Batch, table: str) -> pl.DataFrame:
        build = _STORED_FORMS.get(table)
        return build(batch) if build else batch.tables()[table]


class _PostgresLoader(_Loader):
    # the server's COPY parsing is the bound: events (~8 rows a patient) on one connection, the rest (patients'
    # 27 columns, ~1.5 conditions, ~2.7 vital sets) on the other take about the same time
    writers_tables = (("events",), ("patients", "conditions", "vital_sets"))

    def __init__(self, engine: sa.Engine, run_key: int) -> None:
        if pool_status(engine)["budget"] < 3:  # leave a connection for everyone else
            self.writers_tables = (tuple(STORED_TABLES),)
        super().__init__(engine, run_key)
        self.started: set[str] = set()

    def prepare(self) -> None:
        k = int(self.run_key)
        with connect(self.engine, begin=True) as conn:
            for table in STORED_TABLES:
                part = quoted(run_partition(table, k))
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {part}")
                conn.exec_driver_sql(f"CREATE TABLE {part} (LIKE {quoted(table)} INCLUDING DEFAULTS)")
                conn.exec_driver_sql(f"ALTER TABLE {part} ALTER COLUMN run_key SET DEFAULT {k}")
                # the partition's constraint, proven up front so ATTACH does not scan the table
                conn.exec_driver_sql(f"ALTER TABLE {part} ADD CONSTRAINT {quoted(run_partition(table, k) + '_key')} "
                                     f"CHECK (run_key IS NOT NULL AND run_key = {k})")

    def load(self, raw, batch: Batch, tables) -> None:
        cur = raw.cursor()
        for table in tables:
            part = quoted(run_partition(table, self.run_key))
            if table not in self.started:  # emptied in this transaction, so COPY may write the rows frozen
                cur.execute(f"TRUNCATE {part}")
                self.started.add(table)
            frame = self.frame(batch, table)
            cols = pgcopy.copy_columns({c: frame.schema[c] for c in _columns(table)})
            # encoded lazily, slice by slice, while the server reads: "encode" and "copy" split the elapsed time
            reader = pgcopy.CopyReader(pgcopy.encode(frame.select(cols)))
            t0 = time.perf_counter()
            cur.copy_expert(f"COPY {part} ({', '.join(map(quoted, cols))}) FROM STDIN WITH (FORMAT binary, FREEZE)",
                            reader, size=4 << 20)
            acc = self.timings[table]
            acc["encode"] = acc.get("encode", 0.0) + reader.seconds
            acc["copy"] = acc.get("copy", 0.0) + time.perf_counter() - t0 - reader.seconds
        cur.close()

    def seal(self, raw, tables) -> None:
        """The partition's indexes, built once after the load (cheaper than maintaining them row by row)."""
        cur = raw.cursor()
        for table in tables:
            part = quoted(run_partition(table, self.run_key))
            t0 = time.perf_counter()
            if table == "patients":
                cur.execute(f"CREATE UNIQUE INDEX ON {part} (run_key, patient_id)")
            else:
                cur.execute(f"CREATE INDEX ON {part} USING brin (patient_id)")
            self._timed(table, "index", t0)
            # statistics now, not when autovacuum gets to it: without the physical order (correlation) the
            # planner would not know the BRIN index finds a patient in a few pages
            t0 = time.perf_counter()
            cur.execute(f"ANALYZE {part}")
            self._timed(table, "analyze", t0)
        cur.close()

    def publish(self, conn: sa.Connection) -> None:
        k = int(self.run_key)
        for table in STORED_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {quoted(table)} ATTACH PARTITION {quoted(run_partition(table, k))} "
                                 f"FOR VALUES IN ({k})")


class _SqliteLoader(_Loader):
    """SQLite binds every value through Python's sqlite3 module: its cost is per statement and per value, so each
    statement inserts many rows (``ROWS_PER_INSERT``) from one flat list of the batch's values (built column by
    column, no tuple per row), and categorical columns are bound as their small integer codes, turned back into
    their text by the statement. SQLite does its own work with the interpreter lock released: generation goes on."""

    writers_tables = (tuple(SQLITE_STORED_TABLES),)  # events, conditions, vital sets: one row per patient
    ROWS_PER_INSERT = 200
    CACHE_KIB = 256 * 1024  # the writer's page cache while loading: a batch's pages stay in memory until commit

    def render(self, batch: Batch) -> dict[str, tuple[list, list[str]]]:
        out = {}
        for table in SQLITE_STORED_TABLES:
            t0 = time.perf_counter()
            out[table] = sqlite_values(self.frame(batch, table), _columns(table))
            self._timed(table, "render", t0)
        return out

    def load(self, raw, rendered: dict[str, tuple[list, list[str]]], tables) -> None:
        if not getattr(self, "_tuned", False):
            raw.execute(f"PRAGMA cache_size=-{self.CACHE_KIB}")
            self._tuned = True
        cur = raw.cursor()
        for table in tables:
            values, marks = rendered[table]
            t0 = time.perf_counter()
            sqlite_insert(cur, table, _columns(table), values, marks, run_key=self.run_key,
                          rows=max(1, min(self.ROWS_PER_INSERT, _variable_limit(raw) // len(marks))))
            self._timed(table, "insert", t0)
        raw.commit()
        cur.close()

    def seal(self, raw, tables) -> None:
        raw.execute("PRAGMA cache_size=-2000")  # the pooled connection goes back with SQLite's default cache


def _variable_limit(raw) -> int:
    """How many ``?`` one SQLite statement may hold (32,766 since SQLite 3.32; 999 before)."""
    try:
        return raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    except AttributeError:  # Python < 3.11
        return 999


def sqlite_insert(cur, table: str, columns: list[str], values: list, marks: list[str], *, run_key: int,
                  rows: int) -> None:
    """INSERT ``values`` (``sqlite_values``) into ``table`` under ``run_key``, ``rows`` rows a statement."""
    head = f"INSERT INTO {quoted(table)} (run_key, {', '.join(map(quoted, columns))}) VALUES "
    row = f"({int(run_key)}, {', '.join(marks)})"
    width = len(marks)
    step = rows * width
    whole = len(values) - len(values) % step
    cur.executemany(head + ", ".join([row] * rows), (values[i:i + step] for i in range(0, whole, step)))
    if whole < len(values):
        cur.executemany(head + row, (values[i:i + width] for i in range(whole, len(values), width)))


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sqlite_values(frame: pl.DataFrame, columns: list[str]) -> tuple[list, list[str]]:
    """The values of ``columns`` for SQLite, row after row in one flat list, and each column's placeholder SQL.

    Times become SQLAlchemy's SQLite DateTime text (UTC), dates ISO text, booleans 0/1; an Enum column is bound as
    its integer code and its placeholder turns the code back into the category's text (a NULL stays NULL)."""
    exprs, marks = [], []
    for c in columns:
        dtype = frame.schema[c]
        mark = "?"
        if isinstance(dtype, pl.Datetime):
            expr = pl.col(c).dt.convert_time_zone("UTC").dt.strftime(SQLITE_TIME)
        elif dtype == pl.Date:
            expr = pl.col(c).dt.strftime("%Y-%m-%d")
        elif isinstance(dtype, pl.Enum):
            expr = pl.col(c).to_physical()
            mark = ("CASE ? " + " ".join(f"WHEN {i} THEN {_text(v)}" for i, v in enumerate(dtype.categories.to_list()))
                    + " END")
        elif isinstance(dtype, pl.Categorical):
            expr = pl.col(c).cast(pl.String)
        elif dtype == pl.Boolean:
            expr = pl.col(c).cast(pl.Int8)
        else:
            expr = pl.col(c)
        exprs.append(expr)
        marks.append(mark)
    picked = frame.select(exprs)
    width = len(columns)
    values: list = [None] * (picked.height * width)
    for j, series in enumerate(picked.get_columns()):
        values[j::width] = series.to_list()
    return values, marks


def loader_for(engine: sa.Engine, run_key: int) -> _Loader:
    return (_PostgresLoader if dialect(engine) == "postgresql" else _SqliteLoader)(engine, run_key)


# --- the sink -------------------------------------------------------------------------------------------------------
class DatabaseSink:
    """A run's database side, as a sink beside the file sink. Never raises: a database problem becomes ``error``
    (one line) and the files go on.

        database = DatabaseSink(engine, manifest, out_dir=out, persist=True).open()  # registered as running
        for batch in stream: sink.write(batch); database.write(batch)
        database.close()              # every batch loaded and indexed (the load is part of the run's time)
        database.finish(manifest)     # manifest["status"] decides: completed -> visible, else dropped
        manifest["database_error"]    # set when something did not reach the database

    Without ``persist`` only the run's start and end are recorded (``write`` does nothing).
    """

    def __init__(self, engine: sa.Engine, manifest: dict, *, out_dir: str | Path | None = None,
                 persist: bool = False, scenario_name: str | None = None,
                 scenario_version: int | None = None) -> None:
        self.engine, self.manifest, self.out_dir, self.persist = engine, manifest, out_dir, persist
        self.scenario_name, self.scenario_version = scenario_name, scenario_version
        self.run_key: int | None = None
        self.loader: _Loader | None = None
        self.summary = Summary() if persist else None
        self.error: str | None = None

    def open(self) -> DatabaseSink:
        """Register the run as ``running`` and, with ``persist``, start loading."""
        try:
            self.run_key = register_run(self.engine, self.manifest, out_dir=self.out_dir, persist=self.persist,
                                        scenario_name=self.scenario_name, scenario_version=self.scenario_version)
            if self.persist:
                self.loader = loader_for(self.engine, self.run_key)
                self.loader.start()
        except Exception as exc:
            self.error = one_line(exc, self.engine)
            if self.run_key is not None:
                self._drop()
        return self

    def write(self, batch: Batch, extras=None) -> None:
        """Queue ``batch`` for loading (``extras``, what a file sink's block transform rendered, is not needed)."""
        if self.loader is None or self.error is not None:
            return
        if self.loader.failed.is_set():  # a writer failed: stop feeding it; finish() reports and drops
            err = self.loader.close()
            self.error = one_line(err, self.engine) if err else "database load stopped"
            return
        self.summary.add(batch)
        self.loader.put(batch)

    def close(self) -> list[dict]:
        """Wait until every batch is loaded and indexed (a failure becomes ``error``); no files to list."""
        if self.loader is not None:
            err = self.loader.close()
            if err is not None and self.error is None:
                self.error = one_line(err, self.engine)
        return []

    def abort(self) -> None:
        """Stop loading: the writers skip what is still queued (``finish`` drops what they loaded)."""
        if self.loader is not None:
            self.loader.failed.set()
        self.close()

    def _drop(self) -> None:
        try:
            drop_run_rows(self.engine, self.run_key)
        except Exception:
            defer_cleanup(self.engine, self.run_key)

    def finish(self, manifest: dict) -> None:
        """Make a completed run visible (or drop a cancelled/failed one) and record the run's end; notes any
        database problem in ``manifest["database_error"]`` and whether the tables are in ``manifest["persisted"]``."""
        if self.run_key is None:
            manifest["persisted"] = False
            if self.error:
                manifest["database_error"] = self.error
            return
        completed = manifest.get("status") == "completed"
        persisted = False
        if self.loader is not None:
            if completed:
                self.close()
            else:
                self.abort()
            if completed and self.error is None:
                try:
                    with connect(self.engine, begin=True) as conn:  # readers see the whole run or nothing
                        self.loader.publish(conn)
                        conn.execute(RUNS.update().where(RUNS.c.run_key == self.run_key).values(
                            **finish_values(manifest, persisted=True, database_error=None,
                                            summary=self.summary.result())))
                    persisted = True
                except Exception as exc:
                    self.error = one_line(exc, self.engine)
        if self.persist and not persisted:
            self._drop()
        if self.error:
            manifest["database_error"] = self.error + ("; the run's files are complete" if completed else "")
        manifest["persisted"] = persisted
        if not persisted:
            try:
                finish_run(self.engine, self.run_key, manifest, database_error=manifest.get("database_error"))
            except Exception as exc:
                manifest.setdefault("database_error", one_line(exc, self.engine))
                defer_cleanup(self.engine, self.run_key, manifest)
