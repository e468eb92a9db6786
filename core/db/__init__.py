"""The database: one SQLAlchemy engine (one small connection pool) per process, schema by Alembic, and the
repositories the dashboard and the CLI use (scenarios, runs, run tables, metrics).

    engine = get_engine()                 # DATABASE_URL (PostgreSQL) or data/mpg.sqlite; migrated on first use
    save_scenario(engine, "Baltic", scenario)
    list_runs(engine); run_summary(engine, run_id); patient_record(engine, run_id, 17)

Every function takes the engine first and raises ``DatabaseUnavailable`` (one-line message) when the database
cannot be reached, ``PoolExhausted`` when the connection budget stays used up for ``MPG_DB_POOL_TIMEOUT`` s.
All SQL is parameterised; the only identifiers built into SQL text are our own table names and integer keys.
Run tables are loaded by ``core.sinks.database`` (binary COPY on PostgreSQL, executemany on SQLite).

Modules, each depending only on those before it: ``errors`` · ``engine`` (creation, pool figures, ``connect``)
· ``tables`` · ``migration`` (Alembic) · ``scenarios`` · ``runs`` (registry, run tables, metrics, removal) ·
``link`` (the process's shared engine, health checks, ``DatabaseLink``). This package re-exports their public
names, so ``from core import db; db.get_engine()`` is the way in from outside.
"""
from .errors import DatabaseUnavailable, PoolExhausted, is_down, reason
from .engine import (APP_NAME, DRIVERS, MAX_OVERFLOW_DEFAULT, POOL_SIZE_DEFAULT, POOL_TIMEOUT_DEFAULT, connect,
                     create_engine, default_url, describe, dialect, parse_url, pool_settings, pool_status, redact,
                     unavailable)
from .tables import (DESCRIPTION_MAX, META, METRIC_FIELDS, METRICS, NAME_MAX, RUN_TABLES, RUNS, SCENARIOS,
                     STORED_TABLES, TZ, VITAL_SET_COLUMNS, VITAL_SETS, stored_tables)
from .migration import (MIGRATIONS, ForeignDatabase, alembic_config, head_revision, migrate, schema_revision,
                        status)
from .scenarios import (clean_description, clean_name, delete_scenario, list_scenarios, load_scenario,
                        save_scenario, scenario_versions)
from .runs import (RUN_LIST_COLS, defer_cleanup, delete_run, drop_run_rows, finish_run, finish_values, get_run,
                   list_runs, patient_record, record_metrics, recover_interrupted, register_run, run_metrics,
                   run_summary, run_table)
from .link import DatabaseLink, check, dispose_all, get_engine, is_available, unavailable_text

__all__ = [
    "DatabaseUnavailable", "PoolExhausted", "is_down", "reason",
    "APP_NAME", "DRIVERS", "MAX_OVERFLOW_DEFAULT", "POOL_SIZE_DEFAULT", "POOL_TIMEOUT_DEFAULT", "connect",
    "create_engine", "default_url", "describe", "dialect", "parse_url", "pool_settings", "pool_status", "redact",
    "unavailable",
    "DESCRIPTION_MAX", "META", "METRIC_FIELDS", "METRICS", "NAME_MAX", "RUN_TABLES", "RUNS", "SCENARIOS",
    "STORED_TABLES", "TZ", "VITAL_SET_COLUMNS", "VITAL_SETS", "stored_tables",
    "MIGRATIONS", "ForeignDatabase", "alembic_config", "head_revision", "migrate", "schema_revision", "status",
    "clean_description", "clean_name", "delete_scenario", "list_scenarios", "load_scenario", "save_scenario",
    "scenario_versions",
    "RUN_LIST_COLS", "defer_cleanup", "delete_run", "drop_run_rows", "finish_run", "finish_values", "get_run",
    "list_runs", "patient_record", "record_metrics", "recover_interrupted", "register_run", "run_metrics",
    "run_summary", "run_table",
    "DatabaseLink", "check", "dispose_all", "get_engine", "is_available", "unavailable_text",
]
