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


class ForeignDatabase(ValueError):
    """The database holds tables of its own and no migration history of this project: it is not ours to change."""


def _check_ours(conn: sa.Connection, engine: sa.Engine) -> None:
    """Refuse a database (a PostgreSQL schema) that has tables but no history of this project's migrations."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is not None:
        cfg = alembic_config(conn)
        known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
        if revision in known:
            return
        raise ForeignDatabase(f"the database at {describe(engine)} has migration history of another project "
                              f"(revision {revision!r}): refusing to change it; point DATABASE_URL at a database of "
                              f"this project's own")
    tables = sorted(sa.inspect(conn).get_table_names())
    if tables:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        raise ForeignDatabase(f"the database at {describe(engine)} already holds {len(tables)} table(s) of its own "
                              f"({shown}) and no migration history of this project: refusing to create tables "
                              f"there; point DATABASE_URL at a database of its own, or run `python -m core db "
                              f"migrate` to add this project's tables to it")


@guarded
def migrate(engine: sa.Engine, *, adopt: bool = False) -> str:
    """Bring the schema to the newest revision (safe to run from several processes at once); returns it.

    A database that holds tables of its own but no history of this project's migrations raises ForeignDatabase
    unless ``adopt`` (what ``python -m core db migrate`` passes: the operator asked for it)."""
    from alembic import command
    with connect(engine) as conn:
        if dialect(engine) == "postgresql":
            conn.execute(sa.text(f"SELECT pg_advisory_lock({_MIGRATOR_LOCK})"))
            conn.commit()
        try:
            if not adopt:
                _check_ours(conn, engine)
                conn.commit()
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
    """What `python -m core db status` prints: where, revision, counts, pool, and (at head) the interrupted runs
    whose rows and staging tables this call cleaned up (``recovered``) and the runs still being written
    (``running``). A database that is not this project's (``foreign``: its own tables, no history) is only
    described, never changed; an empty one has no counts."""
    from .runs import recover_interrupted
    revision, head = schema_revision(engine), head_revision()
    info = {"database": describe(engine), "dialect": dialect(engine), "revision": revision, "head": head,
            "runs": None, "persisted_runs": None, "scenarios": None, "recovered": [], "running": None,
            "foreign": None, "pool": pool_status(engine)}
    with connect(engine) as conn:
        try:
            _check_ours(conn, engine)
        except ForeignDatabase as exc:
            info["foreign"] = str(exc)
            return info
        if revision is None:
            return info
    if revision == head:
        info["recovered"] = recover_interrupted(engine)
    with connect(engine) as conn:
        info["runs"] = conn.execute(sa.select(sa.func.count()).select_from(RUNS)).scalar_one()
        info["persisted_runs"] = conn.execute(sa.select(sa.func.count()).select_from(RUNS)
                                              .where(RUNS.c.persisted)).scalar_one()
        info["running"] = conn.execute(sa.select(sa.func.count()).select_from(RUNS)
                                       .where(RUNS.c.status == "running")).scalar_one()
        info["scenarios"] = conn.execute(sa.select(sa.func.count(sa.distinct(SCENARIOS.c.name)))).scalar_one()
    return info
