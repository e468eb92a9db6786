"""Engines and their pools: settings, creation (PostgreSQL or the embedded SQLite file), live pool figures, and
``connect``, the one way every query of the package gets a connection.

``create_engine`` makes a new engine; the process's shared one (one pool per URL, migrated on first use) is
``core.db.link.get_engine``.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event, exc as sa_exc

from core import settings

from .errors import DatabaseUnavailable, PoolExhausted, is_down, reason

# --- settings ---------------------------------------------------------------------------------------------------
POOL_SIZE_DEFAULT, MAX_OVERFLOW_DEFAULT, POOL_TIMEOUT_DEFAULT = 5, 5, 10.0
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


def default_url() -> str:
    return settings.database_url() or f"sqlite:///{settings.data_dir() / 'mpg.sqlite'}"


def parse_url(url: str | sa.URL) -> sa.URL:
    """A database URL, read as the user meant it: an ``@`` in the password (``user:p@ss@host``) belongs to the
    password, the host being what follows the last ``@`` (SQLAlchemy would take ``ss@host`` for the host)."""
    parsed = sa.make_url(url)
    if parsed.host and "@" in parsed.host:
        spill, host = parsed.host.rsplit("@", 1)
        if parsed.password is not None:
            parsed = parsed.set(password=f"{parsed.password}@{spill}", host=host)
        else:
            parsed = parsed.set(username=f"{parsed.username or ''}@{spill}", host=host)
    return parsed


def describe(engine_or_url: sa.Engine | str | sa.URL) -> str:
    """The URL with its password masked (and no driver name), for display: no character of the password is shown,
    whatever it holds."""
    try:
        url = engine_or_url.url if isinstance(engine_or_url, sa.Engine) else parse_url(engine_or_url)
    except sa_exc.ArgumentError:
        return "an unreadable DATABASE_URL"
    url = url.set(drivername=url.get_backend_name())
    return url.render_as_string(hide_password=True)


def redact(text: str, engine_or_url: sa.Engine | str | sa.URL | None = None) -> str:
    """``text`` (a driver's message) with the database password, and every piece of it, replaced by ***."""
    try:
        url = (engine_or_url.url if isinstance(engine_or_url, sa.Engine)
               else parse_url(engine_or_url or default_url()))
    except sa_exc.ArgumentError:
        return text
    password = url.password
    if not password:
        return text
    parts = password.split("@")  # and every run of its @-separated parts, as a misread URL would show them
    runs = {"@".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}
    pieces = sorted((p for p in runs | {password} if len(p) >= 2), key=len, reverse=True)
    for piece in pieces:
        text = text.replace(piece, "***")
    return text


def dialect(engine: sa.Engine) -> str:
    return engine.dialect.name


# the drivers this project is built and tested with (psycopg2 does the binary COPY of core/sinks/pgcopy.py)
DRIVERS = ("postgresql", "postgresql+psycopg2", "sqlite", "sqlite+pysqlite")


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


_STATS: dict[int, _Stats] = {}


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


# --- 'the database is not there', in one line ---------------------------------------------------------------------
def unavailable(engine: sa.Engine, exc: BaseException) -> DatabaseUnavailable:
    """The one-line error for ``exc`` (a refused connection, or a pool timeout, counted in pool_status)."""
    if isinstance(exc, sa_exc.TimeoutError):
        st = _stats(engine)
        st.timeouts += 1
        return PoolExhausted(
            f"database connection budget exhausted at {describe(engine)}: all {st.budget} connections stayed in use "
            f"for {engine.pool.timeout():g} s (MPG_DB_POOL_SIZE + MPG_DB_MAX_OVERFLOW); try again shortly")
    return DatabaseUnavailable(f"database unreachable at {describe(engine)}: {redact(reason(exc), engine)}")


def guarded(fn):
    """Turn 'the database is not there' errors into DatabaseUnavailable; everything else propagates."""
    @functools.wraps(fn)
    def wrapper(engine, *args, **kwargs):
        try:
            return fn(engine, *args, **kwargs)
        except DatabaseUnavailable:
            raise
        except sa_exc.DBAPIError as exc:
            if is_down(exc):
                raise unavailable(engine, exc) from None
            raise
        except sa_exc.TimeoutError as exc:
            raise unavailable(engine, exc) from None
    return wrapper


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
        if is_down(exc):
            raise unavailable(engine, exc) from None
        raise
    try:
        if begin:
            with conn.begin():
                yield conn
        else:
            yield conn
    finally:
        conn.close()


# --- a new engine ---------------------------------------------------------------------------------------------------
def create_engine(url: str | None = None, **pool_overrides) -> sa.Engine:
    """A new engine (its own pool), not migrated: ``get_engine`` is what the app uses."""
    url = url or default_url()
    try:
        parsed = parse_url(url)
    except sa_exc.ArgumentError:
        raise ValueError("DATABASE_URL is not a database URL (e.g. postgresql+psycopg2://user@host:5432/db)") from None
    backend = parsed.get_backend_name()
    if parsed.drivername not in DRIVERS:
        raise ValueError(f"DATABASE_URL driver {parsed.drivername!r} is not supported (PostgreSQL through "
                         f"postgresql:// or postgresql+psycopg2://, or unset DATABASE_URL for the embedded SQLite file)")
    if not parsed.database or parsed.database == ":memory:":  # never a server's default database, never one lost
        raise ValueError(f"DATABASE_URL {describe(parsed)} names no database (e.g. "
                         f"postgresql+psycopg2://user@host:5432/mpg, or sqlite:///path/to/mpg.sqlite)")
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
