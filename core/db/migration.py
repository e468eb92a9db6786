"""The schema by Alembic (revisions in core/migrations): bring a database to the newest revision, and report where
it stands."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .engine import connect, describe, dialect, guarded, pool_status
from .tables import RUNS, SCENARIOS

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
_MIGRATOR_LOCK = 7262001  # PostgreSQL advisory lock key: one migrator at a time across processes


def alembic_config(conn: sa.Connection):
    """Alembic's configuration for migrating over ``conn`` (no alembic.ini: env.py takes the connection)."""
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@guarded
def migrate(engine: sa.Engine) -> str:
    """Bring the schema to the newest revision (safe to run from several processes at once); returns it."""
    from alembic import command
    with connect(engine) as conn:
        if dialect(engine) == "postgresql":
            conn.execute(sa.text(f"SELECT pg_advisory_lock({_MIGRATOR_LOCK})"))
            conn.commit()
        try:
            command.upgrade(alembic_config(conn), "head")
            conn.commit()
        finally:
            if dialect(engine) == "postgresql":
                conn.execute(sa.text(f"SELECT pg_advisory_unlock({_MIGRATOR_LOCK})"))
                conn.commit()
    return schema_revision(engine)


@guarded
def schema_revision(engine: sa.Engine) -> str | None:
    """The database's Alembic revision (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext
    with connect(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


@guarded
def status(engine: sa.Engine) -> dict:
    """What `python -m core db status` prints: where, revision, counts, pool."""
    with connect(engine) as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(RUNS)).scalar_one()
        persisted = conn.execute(sa.select(sa.func.count()).select_from(RUNS).where(RUNS.c.persisted)).scalar_one()
        scenarios = conn.execute(sa.select(sa.func.count(sa.distinct(SCENARIOS.c.name)))).scalar_one()
    return {"database": describe(engine), "dialect": dialect(engine), "revision": schema_revision(engine),
            "head": head_revision(), "runs": runs, "persisted_runs": persisted, "scenarios": scenarios,
            "pool": pool_status(engine)}
