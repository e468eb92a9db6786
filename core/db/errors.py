"""What goes wrong with the database, as one line: it cannot be reached, or its connection budget stayed used up."""
from __future__ import annotations

from sqlalchemy import exc as sa_exc


class DatabaseUnavailable(Exception):
    """The database cannot be reached; str() is one line for a banner or the CLI."""


class PoolExhausted(DatabaseUnavailable):
    """Every connection of the pool budget stayed in use for the whole pool timeout."""


def reason(exc: BaseException) -> str:
    """The driver's reason in a few words ('connection refused', 'database "x" does not exist')."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    text = lines[0] if lines else type(orig).__name__
    if "failed:" in text:  # libpq: connection to server at "127.0.0.1", port 5432 failed: Connection refused
        text = text.rsplit("failed:", 1)[1].strip()
    return (text[:1].lower() + text[1:])[:200] if text else type(orig).__name__


_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def is_down(exc: BaseException) -> bool:
    """The error means the database is not there (or no connection was free), not that a query was wrong."""
    return isinstance(exc, _DOWN) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
