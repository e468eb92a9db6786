"""The database: one SQLAlchemy engine (one small connection pool) per process, schema by Alembic, and the
repositories the dashboard and the CLI use (scenarios, runs, run tables, metrics).

    engine = get_engine()                 # DATABASE_URL (PostgreSQL) or data/mpg.sqlite; migrated on first use
    save_scenario(engine, "Baltic", scenario)
    list_runs(engine); run_summary(engine, run_id); patient_record(engine, run_id, 17)

Every function takes the engine first and raises ``DatabaseUnavailable`` (one-line message) when the database
cannot be reached, ``PoolExhausted`` when the connection budget stays used up for ``MPG_DB_POOL_TIMEOUT`` s.
All SQL is parameterised; the only identifiers built into SQL text are our own table names and integer keys.
Run tables are loaded by ``core.sinks.database`` (binary COPY on PostgreSQL, executemany on SQLite).
"""
from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
import unicodedata
from collections import deque
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event, exc as sa_exc

from core import runs, schema, settings

# --- settings ---------------------------------------------------------------------------------------------------
POOL_SIZE_DEFAULT, MAX_OVERFLOW_DEFAULT, POOL_TIMEOUT_DEFAULT = 5, 5, 10.0
NAME_MAX, DESCRIPTION_MAX = 100, 1000
APP_NAME = "mpg"  # PostgreSQL application_name prefix (pg_stat_activity shows mpg:<pid>)


def _env_number(name: str, default: float, low: float, high: float, cast=int):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number ({low:g} to {high:g} allowed)") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r} is out of range ({low:g} to {high:g} allowed)")
    return value


def pool_settings() -> dict:
    """Pool budget from MPG_DB_POOL_SIZE (5), MPG_DB_MAX_OVERFLOW (5) and MPG_DB_POOL_TIMEOUT seconds (10)."""
    return {"pool_size": _env_number("MPG_DB_POOL_SIZE", POOL_SIZE_DEFAULT, 1, 100),
            "max_overflow": _env_number("MPG_DB_MAX_OVERFLOW", MAX_OVERFLOW_DEFAULT, 0, 100),
            "pool_timeout": _env_number("MPG_DB_POOL_TIMEOUT", POOL_TIMEOUT_DEFAULT, 0.1, 600, float)}


# --- errors -----------------------------------------------------------------------------------------------------
class DatabaseUnavailable(Exception):
    """The database cannot be reached; str() is one line for a banner or the CLI."""


class PoolExhausted(DatabaseUnavailable):
    """Every connection of the pool budget stayed in use for the whole pool timeout."""


def _reason(exc: BaseException) -> str:
    """The driver's reason in a few words ('connection refused', 'database "x" does not exist')."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    text = lines[0] if lines else type(orig).__name__
    if "failed:" in text:  # libpq: connection to server at "127.0.0.1", port 5432 failed: Connection refused
        text = text.rsplit("failed:", 1)[1].strip()
    return (text[:1].lower() + text[1:])[:200] if text else type(orig).__name__


def _unavailable(engine: sa.Engine, exc: BaseException) -> DatabaseUnavailable:
    if isinstance(exc, sa_exc.TimeoutError):
        st = _stats(engine)
        st.timeouts += 1
        return PoolExhausted(
            f"database connection budget exhausted at {describe(engine)}: all {st.budget} connections stayed in use "
            f"for {engine.pool.timeout():g} s (MPG_DB_POOL_SIZE + MPG_DB_MAX_OVERFLOW); try again shortly")
    return DatabaseUnavailable(f"database unreachable at {describe(engine)}: {_reason(exc)}")


_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def _is_down(exc: BaseException) -> bool:
    return isinstance(exc, _DOWN) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)


def _guarded(fn):
    """Turn 'the database is not there' errors into DatabaseUnavailable; everything else propagates."""
    @functools.wraps(fn)
    def wrapper(engine, *args, **kwargs):
        try:
            return fn(engine, *args, **kwargs)
        except DatabaseUnavailable:
            raise
        except sa_exc.DBAPIError as exc:
            if _is_down(exc):
                raise _unavailable(engine, exc) from None
            raise
        except sa_exc.TimeoutError as exc:
            raise _unavailable(engine, exc) from None
    return wrapper


# --- live pool metrics ------------------------------------------------------------------------------------------
class _Stats:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.waits = self.timeouts = self.connects = 0
        self.connect_s = 0.0
        self.queries = 0
        self.query_ms: deque[float] = deque(maxlen=2000)
        self.lock = threading.Lock()

    def percentile(self, q: float) -> float | None:
        with self.lock:
            data = sorted(self.query_ms)
        if not data:
            return None
        return round(data[min(len(data) - 1, int(q * (len(data) - 1) + 0.5))], 2)


_ENGINES: dict[str, sa.Engine] = {}
_STATS: dict[int, _Stats] = {}
_MIGRATED: set[int] = set()
_LOCK = threading.RLock()


def _stats(engine: sa.Engine) -> _Stats:
    st = _STATS.get(id(engine))
    if st is None:  # an engine made elsewhere (tests): count from now on
        st = _STATS[id(engine)] = _Stats(_budget(engine))
    return st


def _budget(engine: sa.Engine) -> int:
    pool = engine.pool
    return pool.size() + max(0, getattr(pool, "_max_overflow", 0)) if hasattr(pool, "size") else 1


def _instrument(engine: sa.Engine, st: _Stats) -> None:
    @event.listens_for(engine, "do_connect")
    def _timed_connect(dialect, conn_rec, cargs, cparams):
        t0 = time.perf_counter()
        conn = dialect.connect(*cargs, **cparams)
        with st.lock:
            st.connects += 1
            st.connect_s += time.perf_counter() - t0
        return conn

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("mpg_t0", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        stack = conn.info.get("mpg_t0")
        if stack:
            ms = (time.perf_counter() - stack.pop()) * 1000
            with st.lock:
                st.queries += 1
                st.query_ms.append(ms)


def pool_status(engine: sa.Engine) -> dict:
    """Live pool figures (no query): size, checked_out, idle, overflow, budget, waits, timeouts, connects,
    connect_ms_avg, query_ms_p50, query_ms_p95, queries."""
    st, pool = _stats(engine), engine.pool
    size = pool.size() if hasattr(pool, "size") else 1
    checked_out = pool.checkedout() if hasattr(pool, "checkedout") else 0
    return {"size": size, "checked_out": checked_out,
            "idle": pool.checkedin() if hasattr(pool, "checkedin") else 0,
            "overflow": max(0, pool.overflow()) if hasattr(pool, "overflow") else 0,
            "budget": st.budget, "waits": st.waits, "timeouts": st.timeouts, "connects": st.connects,
            "connect_ms_avg": round(st.connect_s / st.connects * 1000, 2) if st.connects else None,
            "query_ms_p50": st.percentile(0.5), "query_ms_p95": st.percentile(0.95), "queries": st.queries}


@contextmanager
def connect(engine: sa.Engine, *, begin: bool = False) -> Iterator[sa.Connection]:
    """A pooled connection (in a transaction with ``begin``), counting waits for a full pool."""
    st = _stats(engine)
    pool = engine.pool
    if hasattr(pool, "checkedout") and pool.checkedout() >= st.budget:
        with st.lock:
            st.waits += 1
    try:
        conn = engine.connect()
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        if _is_down(exc):
            raise _unavailable(engine, exc) from None
        raise
    try:
        if begin:
            with conn.begin():
                yield conn
        else:
            yield conn
    finally:
        conn.close()


# --- the engine ---------------------------------------------------------------------------------------------------
def default_url() -> str:
    return settings.database_url() or f"sqlite:///{settings.data_dir() / 'mpg.sqlite'}"


def describe(engine_or_url: sa.Engine | str | sa.URL) -> str:
    """The URL with its password masked (and no driver name), for display."""
    url = engine_or_url.url if isinstance(engine_or_url, sa.Engine) else sa.make_url(engine_or_url)
    url = url.set(drivername=url.get_backend_name())
    return url.render_as_string(hide_password=True)


def create_engine(url: str | None = None, **pool_overrides) -> sa.Engine:
    """A new engine (its own pool), not migrated: ``get_engine`` is what the app uses."""
    url = url or default_url()
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError:
        raise ValueError("DATABASE_URL is not a database URL (e.g. postgresql+psycopg2://user@host:5432/db)") from None
    backend = parsed.get_backend_name()
    opts = {**pool_settings(), **pool_overrides}
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "poolclass": sa.pool.QueuePool, **opts}
    if backend == "sqlite":
        db_path = parsed.database
        if db_path and db_path != ":memory:":
            try:
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(f"database unreachable at {describe(parsed)}: cannot create its folder "
                                          f"({exc.strerror or exc})") from None
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": opts["pool_timeout"]}
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg2")
        connect_args = {"connect_timeout": max(1, int(opts["pool_timeout"]))}
        if "application_name" not in parsed.query:
            connect_args["application_name"] = f"{APP_NAME}:{os.getpid()}"
        kwargs["connect_args"] = connect_args
    else:
        raise ValueError(f"database {backend!r} is not supported (PostgreSQL through postgresql+psycopg2://, "
                         f"or unset DATABASE_URL for the embedded SQLite file)")
    engine = sa.create_engine(parsed, **kwargs)
    if backend == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, rec):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(opts['pool_timeout'] * 1000)}")
            cur.close()
    st = _STATS[id(engine)] = _Stats(opts["pool_size"] + opts["max_overflow"])
    _instrument(engine, st)
    return engine


def get_engine(url: str | None = None) -> sa.Engine:
    """The process's engine for ``url`` (default: DATABASE_URL or data/mpg.sqlite), migrated on first use.

    Raises DatabaseUnavailable when the database cannot be reached (the next call tries again)."""
    key = url or default_url()
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = create_engine(key)
        if id(engine) not in _MIGRATED:
            migrate(engine)
            _MIGRATED.add(id(engine))
            recover_interrupted(engine)
    return engine


def dispose_all() -> None:
    """Close every pooled connection of every engine this process made (tests, shutdown)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
        _MIGRATED.clear()


@_guarded
def check(engine: sa.Engine) -> None:
    """Raise DatabaseUnavailable unless the database answers a trivial query."""
    with connect(engine) as conn:
        conn.execute(sa.text("SELECT 1"))
    _retry_cleanups(engine)  # half-loaded rows left while the database was away


def is_available(engine: sa.Engine) -> bool:
    try:
        check(engine)
        return True
    except DatabaseUnavailable:
        return False


def dialect(engine: sa.Engine) -> str:
    return engine.dialect.name


# --- migrations ---------------------------------------------------------------------------------------------------
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _alembic_config(conn: sa.Connection):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@_guarded
def migrate(engine: sa.Engine) -> str:
    """Bring the schema to the newest revision (safe to run from several processes at once); returns it."""
    from alembic import command
    with connect(engine) as conn:
        if dialect(engine) == "postgresql":  # one migrator at a time across processes
            conn.execute(sa.text("SELECT pg_advisory_lock(7262001)"))
            conn.commit()
        try:
            command.upgrade(_alembic_config(conn), "head")
            conn.commit()
        finally:
            if dialect(engine) == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(7262001)"))
                conn.commit()
    return schema_revision(engine)


@_guarded
def schema_revision(engine: sa.Engine) -> str | None:
    """The database's Alembic revision (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext
    with connect(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


@_guarded
def status(engine: sa.Engine) -> dict:
    """What `python -m core db status` prints: where, revision, counts, pool."""
    with connect(engine) as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(RUNS)).scalar_one()
        persisted = conn.execute(sa.select(sa.func.count()).select_from(RUNS).where(RUNS.c.persisted)).scalar_one()
        scenarios = conn.execute(sa.select(sa.func.count(sa.distinct(SCENARIOS.c.name)))).scalar_one()
    return {"database": describe(engine), "dialect": dialect(engine), "revision": schema_revision(engine),
            "head": head_revision(), "runs": runs, "persisted_runs": persisted, "scenarios": scenarios,
            "pool": pool_status(engine)}


# --- tables (Core; the migrations create them) ----------------------------------------------------------------------
META = sa.MetaData()
TZ = sa.DateTime(timezone=True)

SCENARIOS = sa.Table(
    "scenarios", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_MAX), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("parent_version", sa.Integer),
    sa.Column("description", sa.String(DESCRIPTION_MAX), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", TZ, nullable=False),
)

RUNS = sa.Table(
    "runs", META,
    sa.Column("run_key", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scenario_name", sa.String(NAME_MAX)),
    sa.Column("scenario_version", sa.Integer),
    sa.Column("scenario_sha256", sa.String(64)),
    sa.Column("seed", sa.BigInteger),
    sa.Column("patients", sa.BigInteger),
    sa.Column("patients_generated", sa.BigInteger),
    sa.Column("format", sa.String(16)),
    sa.Column("compressed", sa.Boolean),
    sa.Column("encrypted", sa.Boolean),
    sa.Column("generator_version", sa.String(32)),
    sa.Column("contract_version", sa.Integer),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("finished_at", TZ),
    sa.Column("elapsed_s", sa.Float),
    sa.Column("patients_per_s", sa.Float),
    sa.Column("peak_rss_mb", sa.Float),
    sa.Column("out_dir", sa.Text),
    sa.Column("persist", sa.Boolean, nullable=False),
    sa.Column("persisted", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("database_error", sa.Text),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("manifest", sa.JSON),
    sa.Column("summary", sa.JSON),
)

METRICS = sa.Table(
    "metrics", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.Integer, sa.ForeignKey("runs.run_key", ondelete="CASCADE"), nullable=False),
    sa.Column("t", sa.Float, nullable=False),
    sa.Column("patients_done", sa.BigInteger),
    sa.Column("patients_per_s", sa.Float),
    sa.Column("rss_mb", sa.Float),
    sa.Column("cpu_pct", sa.Float),
    sa.Column("pool_checked_out", sa.Integer),
    sa.Column("cache_hit_rate", sa.Float),
)
METRIC_FIELDS = ("t", "patients_done", "patients_per_s", "rss_mb", "cpu_pct", "pool_checked_out", "cache_hit_rate")


def _sql_type(dtype) -> sa.types.TypeEngine:
    import polars as pl
    if dtype == pl.Int64:
        return sa.BigInteger()
    if dtype in (pl.Int16, pl.Int8):
        return sa.SmallInteger()
    if dtype == pl.Int32:
        return sa.Integer()
    if dtype == pl.Float64:
        return sa.Float()
    if dtype == pl.Boolean:
        return sa.Boolean()
    if dtype == pl.Date:
        return sa.Date()
    if isinstance(dtype, pl.Datetime):
        return sa.DateTime(timezone=True)
    return sa.Text()


# the four contract tables, keyed by the run's integer key; columns as in core.schema (DATA_CONTRACT.md v1)
RUN_TABLES: dict[str, sa.Table] = {
    name: sa.Table(name, META, sa.Column("run_key", sa.Integer, nullable=False),
                   *(sa.Column(col, _sql_type(dt)) for col, dt in cols.items()))
    for name, cols in schema.TABLES.items()
}
# how they are stored (migration 0002): ``vitals`` is a view over ``vital_sets``, one row per measurement set
# (the 7 values of a set in columns, in schema.VITAL_CODES order), which reads exactly like the contract's table
VITAL_SET_COLUMNS = schema.VITAL_SET_COLUMNS
VITAL_SETS = sa.Table("vital_sets", META, sa.Column("run_key", sa.Integer, nullable=False),
                      sa.Column("patient_id", sa.BigInteger), sa.Column("time", sa.DateTime(timezone=True)),
                      sa.Column("facility", sa.Text), *(sa.Column(c, sa.Float) for c in VITAL_SET_COLUMNS))
STORED_TABLES: dict[str, sa.Table] = {"patients": RUN_TABLES["patients"], "events": RUN_TABLES["events"],
                                      "conditions": RUN_TABLES["conditions"], "vital_sets": VITAL_SETS}


# --- values in and out --------------------------------------------------------------------------------------------
def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: Any) -> Any:
    """SQLite hands times back without a zone; they were stored in UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _row(row: sa.Row | None) -> dict | None:
    return None if row is None else {k: _aware(v) for k, v in row._mapping.items()}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def clean_name(name: Any) -> str:
    """A scenario name: any Unicode (NFC), stripped, 1..100 characters, no control characters."""
    if not isinstance(name, str):
        raise ValueError(f"scenario name must be text, got {type(name).__name__}")
    text = unicodedata.normalize("NFC", name).strip()
    if not text:
        raise ValueError("scenario name is empty: give 1 to 100 characters")
    if len(text) > NAME_MAX:
        raise ValueError(f"scenario name is {len(text)} characters long: at most {NAME_MAX} allowed")
    bad = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn")})
    if bad:
        raise ValueError(f"scenario name contains control or unassigned characters ({', '.join(bad[:5])}): "
                         f"letters, digits, spaces, punctuation and symbols of any script are allowed")
    return text


def clean_description(text: Any) -> str:
    """A description: up to 1000 characters; line breaks and tabs allowed, other control characters not."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(f"scenario description must be text, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) > DESCRIPTION_MAX:
        raise ValueError(f"scenario description is {len(text)} characters long: at most {DESCRIPTION_MAX} allowed")
    bad = sorted({f"U+{ord(c):04X}" for c in text
                  if unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\r\t"})
    if bad:
        raise ValueError(f"scenario description contains control characters ({', '.join(bad[:5])}): "
                         f"text, line breaks and tabs are allowed")
    return text


# --- scenarios ----------------------------------------------------------------------------------------------------
_SCENARIO_COLS = (SCENARIOS.c.name, SCENARIOS.c.version, SCENARIOS.c.parent_version, SCENARIOS.c.description,
                  SCENARIOS.c.sha256, SCENARIOS.c.created_at)


@_guarded
def save_scenario(engine: sa.Engine, name: str, scenario, description: str = "") -> dict:
    """Save ``scenario`` under ``name`` as a new version (latest + 1; the first save is version 1)."""
    from core.scenario import Scenario
    name, description = clean_name(name), clean_description(description)
    if isinstance(scenario, dict):
        scenario = Scenario.from_dict(scenario)
    if not isinstance(scenario, Scenario):
        raise ValueError(f"save_scenario needs a Scenario or a scenario dict, got {type(scenario).__name__}")
    definition = scenario.to_dict()
    for attempt in range(5):  # two savers of one name at once: the unique (name, version) index decides
        try:
            with connect(engine, begin=True) as conn:
                latest = conn.execute(sa.select(sa.func.max(SCENARIOS.c.version))
                                      .where(SCENARIOS.c.name == name)).scalar()
                row = {"name": name, "version": (latest or 0) + 1, "parent_version": latest,
                       "description": description, "definition": definition, "sha256": scenario.sha256(),
                       "created_at": _utcnow()}
                conn.execute(SCENARIOS.insert().values(**row))
            return {k: v for k, v in row.items() if k != "definition"}
        except sa_exc.IntegrityError:
            if attempt == 4:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


@_guarded
def list_scenarios(engine: sa.Engine) -> list[dict]:
    """The latest version of every saved scenario name, by name."""
    latest = (sa.select(SCENARIOS.c.name, sa.func.max(SCENARIOS.c.version).label("v"))
              .group_by(SCENARIOS.c.name).subquery())
    q = (sa.select(*_SCENARIO_COLS)
         .join(latest, sa.and_(SCENARIOS.c.name == latest.c.name, SCENARIOS.c.version == latest.c.v))
         .order_by(SCENARIOS.c.name))
    with connect(engine) as conn:
        return [_row(r) for r in conn.execute(q)]


@_guarded
def scenario_versions(engine: sa.Engine, name: str) -> list[dict]:
    """Every version of ``name``, oldest first (empty for an unknown name)."""
    name = clean_name(name)
    q = sa.select(*_SCENARIO_COLS).where(SCENARIOS.c.name == name).order_by(SCENARIOS.c.version)
    with connect(engine) as conn:
        return [_row(r) for r in conn.execute(q)]


@_guarded
def load_scenario(engine: sa.Engine, name: str, version: int | None = None):
    """The saved scenario (its latest version by default) as a validated core.scenario.Scenario."""
    from core.scenario import Scenario
    name = clean_name(name)
    q = sa.select(SCENARIOS.c.definition, SCENARIOS.c.version).where(SCENARIOS.c.name == name)
    q = q.where(SCENARIOS.c.version == int(version)) if version is not None else \
        q.order_by(SCENARIOS.c.version.desc()).limit(1)
    with connect(engine) as conn:
        row = conn.execute(q).first()
    if row is None:
        which = f"version {version} of " if version is not None else ""
        raise LookupError(f"no saved scenario {which}{name!r}")
    definition = row.definition if isinstance(row.definition, dict) else json.loads(row.definition)
    return Scenario.from_dict(definition, base=definition)


@_guarded
def delete_scenario(engine: sa.Engine, name: str) -> int:
    """Delete every version of ``name``; returns how many were deleted (0 for an unknown name)."""
    name = clean_name(name)
    with connect(engine, begin=True) as conn:
        return conn.execute(SCENARIOS.delete().where(SCENARIOS.c.name == name)).rowcount


# --- runs ---------------------------------------------------------------------------------------------------------
RUN_LIST_COLS = ("run_id", "status", "scenario_name", "scenario_version", "seed", "patients", "format",
                 "created_at", "finished_at", "elapsed_s", "patients_per_s", "peak_rss_mb", "out_dir", "persisted",
                 "error")


@_guarded
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
           "created_at": _parse_time(manifest.get("started_at")) or _utcnow(),
           "out_dir": str(Path(out_dir).resolve()) if out_dir else None, "persist": bool(persist),
           "persisted": False, "host": socket.gethostname()[:255], "pid": os.getpid(), "manifest": None}
    with connect(engine, begin=True) as conn:
        return conn.execute(RUNS.insert().values(**row).returning(RUNS.c.run_key)).scalar_one()


def _finish_values(manifest: dict, *, persisted: bool, database_error: str | None, summary: dict | None) -> dict:
    slim = {k: v for k, v in manifest.items() if k != "scenario"}
    return {"status": manifest.get("status", "failed"), "patients": manifest.get("patients"),
            "patients_generated": manifest.get("patients_generated"),
            "finished_at": _parse_time(manifest.get("finished_at")), "elapsed_s": manifest.get("elapsed_s"),
            "patients_per_s": manifest.get("patients_per_s"), "peak_rss_mb": manifest.get("peak_rss_mb"),
            "error": manifest.get("error"), "database_error": database_error, "persisted": persisted,
            "manifest": json.loads(json.dumps(slim, default=str)), "summary": summary}


@_guarded
def finish_run(engine: sa.Engine, run_key: int, manifest: dict, *, database_error: str | None = None) -> None:
    """Record a run's end (status, timings, peak memory) for a run whose tables were not loaded."""
    with connect(engine, begin=True) as conn:
        conn.execute(RUNS.update().where(RUNS.c.run_key == run_key).values(
            **_finish_values(manifest, persisted=False, database_error=database_error, summary=None)))


@_guarded
def list_runs(engine: sa.Engine, limit: int = 200) -> list[dict]:
    """Runs newest first (run_id, status, scenario, seed, patients, format, times, speed, memory, persisted…)."""
    limit = max(1, min(int(limit), 10_000))
    q = (sa.select(*(RUNS.c[c] for c in RUN_LIST_COLS))
         .order_by(RUNS.c.created_at.desc(), RUNS.c.run_key.desc()).limit(limit))
    with connect(engine) as conn:
        return [_row(r) for r in conn.execute(q)]


@_guarded
def get_run(engine: sa.Engine, run_id: str) -> dict | None:
    """One run with every column except the stored summary (None when unknown)."""
    q = sa.select(*(c for c in RUNS.c if c.name != "summary")).where(RUNS.c.run_id == str(run_id))
    with connect(engine) as conn:
        return _row(conn.execute(q).first())


def _run_key(conn: sa.Connection, run_id: str, *, persisted: bool = False) -> int:
    row = conn.execute(sa.select(RUNS.c.run_key, RUNS.c.persisted, RUNS.c.status)
                       .where(RUNS.c.run_id == str(run_id))).first()
    if row is None:
        raise LookupError(f"no run {run_id!r} in the database")
    if persisted and not (row.persisted and row.status == "completed"):
        raise LookupError(f"run {run_id!r} was not saved to the database (status {row.status}; "
                          f"generate with --db or 'Save to database' to query its patients)")
    return row.run_key


@_guarded
def run_summary(engine: sa.Engine, run_id: str) -> dict:
    """Counts of a persisted run by category, triage, outcome, mechanism, front, nationality; deaths; RTD.

    Computed while the run streamed in and stored with it, so this is one indexed row read."""
    with connect(engine) as conn:
        _run_key(conn, run_id, persisted=True)
        summary = conn.execute(sa.select(RUNS.c.summary).where(RUNS.c.run_id == str(run_id))).scalar_one()
    return summary if isinstance(summary, dict) else json.loads(summary)


@_guarded
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
            return [_row(r) for r in conn.execute(q)]

        p = tables["patients"]
        head = conn.execute(sa.select(*(c for c in p.c if c.name != "run_key"))
                            .where(p.c.run_key == key, p.c.patient_id == pid)).first()
        if head is None:
            raise LookupError(f"run {run_id!r} has no patient {pid}")
        record = _row(head)
        record["events"] = rows("events", ("seq",))
        record["conditions"] = rows("conditions", ("rank",))
        order = {code: i for i, code in enumerate(schema.VITAL_CODES)}  # a set reads as it was measured
        record["vitals"] = sorted(rows("vitals", ("time",)), key=lambda v: (v["time"], order.get(v["code"], 99)))
    return record


@_guarded
def run_table(engine: sa.Engine, run_id: str, table: str):
    """A persisted run's whole table as a polars DataFrame in the contract's column order and types (for checks
    and exports of modest runs; the dashboard's views use the summary and patient_record)."""
    import polars as pl
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
            values = [_aware(v) for v in values]
        out[name] = pl.Series(name, values, dtype=plain if plain != pl.Datetime("us", "UTC") else None)
        if isinstance(dtype, pl.Datetime):
            out[name] = out[name].dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        elif out[name].dtype != plain:
            out[name] = out[name].cast(plain)
    return pl.DataFrame(out)


@_guarded
def delete_run(engine: sa.Engine, run_id: str, delete_files: bool = True) -> None:
    """Delete a run: its rows in every table and, with ``delete_files``, its output folder (only a folder whose
    manifest names this run is removed). A run still running in this or another process is refused."""
    from core.sinks import database as loader
    with connect(engine) as conn:
        row = conn.execute(sa.select(RUNS.c.run_key, RUNS.c.status, RUNS.c.out_dir, RUNS.c.host, RUNS.c.pid)
                           .where(RUNS.c.run_id == str(run_id))).first()
    if row is None:
        raise LookupError(f"no run {run_id!r} in the database")
    if row.status == "running" and not _is_dead(row.host, row.pid):
        raise ValueError(f"run {run_id!r} is still running (process {row.pid} on {row.host}); cancel it first")
    loader.drop_run_rows(engine, row.run_key)
    with connect(engine, begin=True) as conn:
        conn.execute(METRICS.delete().where(METRICS.c.run_key == row.run_key))
        conn.execute(RUNS.delete().where(RUNS.c.run_key == row.run_key))
    if delete_files and row.out_dir:
        _delete_run_folder(Path(row.out_dir), str(run_id))


def _delete_run_folder(folder: Path, run_id: str) -> None:
    runs.delete_run_folder(folder, run_id)  # the one deletion rule for run folders


def _is_dead(host: str | None, pid: int | None) -> bool:
    """A run's process is gone (only decidable for runs of this host)."""
    return runs.process_gone(host, pid)


@_guarded
def recover_interrupted(engine: sa.Engine) -> list[str]:
    """Runs left ``running`` by a process of this host that no longer exists become ``failed`` and lose any
    half-loaded rows; returns their run ids."""
    from core.sinks import database as loader
    with connect(engine) as conn:
        rows = conn.execute(sa.select(RUNS.c.run_key, RUNS.c.run_id, RUNS.c.host, RUNS.c.pid)
                            .where(RUNS.c.status == "running")).all()
    done = []
    for r in rows:
        if _is_dead(r.host, r.pid):
            loader.drop_run_rows(engine, r.run_key)
            with connect(engine, begin=True) as conn:
                conn.execute(RUNS.update().where(RUNS.c.run_key == r.run_key).values(
                    status="failed", persisted=False, finished_at=_utcnow(),
                    error="interrupted: the generating process ended before the run finished"))
            done.append(r.run_id)
    return done


_PENDING_CLEANUP: dict[int, dict[int, dict | None]] = {}  # engine id -> {run key: final manifest or None}


def defer_cleanup(engine: sa.Engine, run_key: int, manifest: dict | None = None) -> None:
    """Remember a run whose half-loaded rows (and end) could not reach the database; ``check`` retries."""
    with _LOCK:
        pending = _PENDING_CLEANUP.setdefault(id(engine), {})
        pending[run_key] = manifest if manifest is not None else pending.get(run_key)


def _retry_cleanups(engine: sa.Engine) -> None:
    from core.sinks import database as loader
    with _LOCK:
        pending = dict(_PENDING_CLEANUP.get(id(engine), {}))
    for key, manifest in pending.items():
        loader.drop_run_rows(engine, key, only_unfinished=True)
        if manifest is not None:
            finish_run(engine, key, manifest, database_error=manifest.get("database_error"))
        with _LOCK:
            _PENDING_CLEANUP.get(id(engine), {}).pop(key, None)


# --- metrics ------------------------------------------------------------------------------------------------------
@_guarded
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


@_guarded
def run_metrics(engine: sa.Engine, run_id: str) -> list[dict]:
    """A run's samples in time order."""
    with connect(engine) as conn:
        key = _run_key(conn, run_id)
        q = sa.select(*(METRICS.c[f] for f in METRIC_FIELDS)).where(METRICS.c.run_key == key).order_by(
            METRICS.c.t, METRICS.c.id)
        return [_row(r) for r in conn.execute(q)]
