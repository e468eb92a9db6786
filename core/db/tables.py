"""The tables (SQLAlchemy Core; the Alembic migrations in core/migrations create them) and how values cross
into and out of them."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import polars as pl
import sqlalchemy as sa

from core import schema

NAME_MAX, DESCRIPTION_MAX = 100, 1000

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


# the four contract tables, keyed by the run's integer key; columns as in core.schema (docs/data-contract.md, version 1)
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
# SQLite stores a patient's events, conditions and vital signs as one row each (migration 0003): ``events``,
# ``conditions`` and ``vital_sets`` are views there over ``event_lists``, ``condition_lists`` and ``vital_lists``,
# whose last column holds the JSON array of the patient's ``[seq, time, facility, event, detail]``,
# ``[rank, code, display, body_region, severity]`` or ``[time, facility, <the 7 values>]`` (time in microseconds
# since 1970 UTC)
EVENT_LISTS = sa.Table("event_lists", META, sa.Column("run_key", sa.Integer, nullable=False),
                       sa.Column("patient_id", sa.BigInteger), sa.Column("events", sa.Text))
CONDITION_LISTS = sa.Table("condition_lists", META, sa.Column("run_key", sa.Integer, nullable=False),
                           sa.Column("patient_id", sa.BigInteger), sa.Column("conditions", sa.Text))
VITAL_LISTS = sa.Table("vital_lists", META, sa.Column("run_key", sa.Integer, nullable=False),
                       sa.Column("patient_id", sa.BigInteger), sa.Column("sets", sa.Text))
SQLITE_STORED_TABLES: dict[str, sa.Table] = {"patients": RUN_TABLES["patients"], "event_lists": EVENT_LISTS,
                                             "condition_lists": CONDITION_LISTS, "vital_lists": VITAL_LISTS}


def stored_tables(dialect_name: str) -> dict[str, sa.Table]:
    """The tables a persisted run's rows are stored in on this kind of database."""
    return SQLITE_STORED_TABLES if dialect_name == "sqlite" else STORED_TABLES


def run_partition(table: str, run_key: int) -> str:
    """The name of a run's own table on PostgreSQL: its partition of ``table`` (a staging table while loading)."""
    return f"{table}_r{int(run_key)}"


def quoted(name: str) -> str:
    """An identifier quoted for SQL text (only our own table names are ever built into SQL)."""
    return '"' + name.replace('"', '""') + '"'


# --- values in and out --------------------------------------------------------------------------------------------
def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(value: Any) -> Any:
    """SQLite hands times back without a zone; they were stored in UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def row_dict(row: sa.Row | None) -> dict | None:
    return None if row is None else {k: aware(v) for k, v in row._mapping.items()}


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
