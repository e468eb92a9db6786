"""This process's link to its database: the shared engine (one pool per URL), migrated and cleared of interrupted
runs on first use; the health check; and ``DatabaseLink``, which keeps re-checking in the background so the
dashboard's pages never wait on a database that is down."""
from __future__ import annotations

import threading

import sqlalchemy as sa

from .engine import connect, create_engine, default_url, describe, guarded, redact
from .errors import DatabaseUnavailable
from .migration import migrate
from .runs import recover_interrupted, retry_cleanups

RECHECK_S = 5.0  # how often DatabaseLink re-checks the database

_ENGINES: dict[str, sa.Engine] = {}
_MIGRATED: set[int] = set()
_LOCK = threading.RLock()


def unavailable_text(exc: Exception, url: str | None) -> str:
    """One line for a database that cannot be used: down (already worded), or a bad URL, a foreign database or a
    missing driver; never any part of the password."""
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    return redact(f"database unavailable: {exc}" if isinstance(exc, ValueError) else
                  f"database unavailable: {type(exc).__name__}: {exc}", url)


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


@guarded
def check(engine: sa.Engine) -> None:
    """Raise DatabaseUnavailable unless the database answers a trivial query."""
    with connect(engine) as conn:
        conn.execute(sa.text("SELECT 1"))
    retry_cleanups(engine)  # half-loaded rows left while the database was away


def is_available(engine: sa.Engine) -> bool:
    try:
        check(engine)
        return True
    except DatabaseUnavailable:
        return False


class DatabaseLink:
    """The process's engine (one pool) or the one-line reason there is none, re-checked in the background.

    Readers take ``engine`` / ``error`` / ``usable()`` without waiting: only the first look (at construction)
    connects in the caller's thread; after that a daemon thread retries a down database every ``recheck_s`` and
    notices one that went away.

        link = DatabaseLink()           # DATABASE_URL or data/mpg.sqlite
        link.usable()                   # the engine while the last check passed, else None (link.error says why)
        link.close()                    # stops the re-checking
    """

    def __init__(self, url: str | None = None, *, recheck_s: float = RECHECK_S) -> None:
        self.url = url
        self.engine: sa.Engine | None = None
        self.error: str | None = None
        self.described: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, args=(recheck_s,), name="mpg-db-check", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        """Connect (first time and until it works) or check the engine; record the reason when it fails."""
        engine, error = self.engine, None
        try:
            if engine is None:
                engine = get_engine(self.url)
                self.described = describe(engine)
            else:
                check(engine)
        except Exception as exc:
            error = unavailable_text(exc, self.url)
        with self._lock:
            self.engine, self.error = engine, error

    def usable(self) -> sa.Engine | None:
        """The engine when the last check passed, else None."""
        with self._lock:
            return self.engine if self.error is None else None

    def _loop(self, recheck_s: float) -> None:
        while not self._stop.wait(recheck_s):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
