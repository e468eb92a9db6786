"""SQLite: a patient's events, conditions and vital signs stored as one row each (tables ``event_lists``,
``condition_lists`` and ``vital_lists``: run_key, patient_id and a JSON array), read through views with the old
names, so every query still reads the contract's tables: ``events`` (one row per event), ``conditions``,
``vital_sets`` (one row per measurement set) and ``vitals`` (the contract's long rows, over ``vital_sets`` as
before). These are 12 of a persisted run's 13 rows per patient; binding their values one by one through Python's
sqlite3 module was most of the SQLite load (docs/database.md). PostgreSQL keeps its partitions (COPY is fast there): this revision does nothing on it.

Existing runs are converted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
# frozen copies (docs/data-contract.md, version 1): the fields of a list's elements, in order
EVENT_FIELDS = ("seq", "time", "facility", "event", "detail")
CONDITION_FIELDS = ("rank", "code", "display", "body_region", "severity")
SIGNS = (("8867-4", "Heart rate", "/min", "heart_rate"), ("9279-1", "Resp rate", "/min", "resp_rate"),
         ("8480-6", "BP sys", "mm[Hg]", "bp_sys"), ("8462-4", "BP dias", "mm[Hg]", "bp_dias"),
         ("59408-5", "SaO2 % BldA PulseOx", "%", "spo2"), ("8310-5", "Body temperature", "Cel", "temperature"),
         ("9269-2", "GCS total", "{score}", "gcs"))
SET_FIELDS = ("time", "facility", *(s[3] for s in SIGNS))
FLOAT_FIELDS = tuple(s[3] for s in SIGNS)


def time_text(us: str) -> str:
    """SQL: microseconds since 1970 UTC as SQLAlchemy's SQLite time text ('YYYY-MM-DD HH:MM:SS.ffffff', UTC); NULL
    stays NULL. The fraction is taken downwards, so a time before 1970 reads right too."""
    frac = f"((({us}) % 1000000 + 1000000) % 1000000)"
    return (f"CASE WHEN ({us}) IS NULL THEN NULL ELSE "
            f"printf('%s.%06d', datetime((({us}) - {frac}) / 1000000, 'unixepoch'), {frac}) END")


def time_us(text: str) -> str:
    """SQL: SQLAlchemy's SQLite time text as microseconds since 1970 UTC."""
    return (f"(CAST(strftime('%s', substr({text}, 1, 19)) AS INTEGER) * 1000000 "
            f"+ CAST(substr({text} || '.000000', 21, 6) AS INTEGER))")


def _unpacked(fields: tuple[str, ...], list_table: str, column: str, as_names: bool = True) -> str:
    """SELECT of a list table's elements, one row each, as columns named after ``fields`` (time converted)."""
    cols = []
    for i, name in enumerate(fields):
        value = f"json_extract(j.value, '$[{i}]')"
        value = time_text(value) if name == "time" else value
        cols.append(f"{value} AS {name}" if as_names else value)
    return f"SELECT l.run_key, l.patient_id, {', '.join(cols)} FROM {list_table} l, json_each(l.{column}) j"


def _item(field: str) -> str:
    if field == "time":
        return time_us("time")
    if field in FLOAT_FIELDS:  # 17 significant digits: SQLite's JSON would keep 15, which loses precision
        return f"CASE WHEN {field} IS NULL THEN NULL ELSE json(printf('%!.17g', {field})) END"
    return field


def _packed(fields: tuple[str, ...], table: str, order: str) -> str:
    """SELECT of a table's rows as one JSON array per patient (time converted), in ``order``."""
    items = ", ".join(_item(f) for f in fields)
    return (f"SELECT run_key, patient_id, json_group_array(json_array({items})) "
            f"FROM (SELECT * FROM {table} ORDER BY run_key, patient_id, {order}) GROUP BY run_key, patient_id "
            f"ORDER BY run_key, patient_id")


def _vitals_view() -> str:
    signs = " UNION ALL ".join(f"SELECT {i} AS k, '{code}' AS code, '{name}' AS name, '{unit}' AS unit"
                               for i, (code, name, unit, _) in enumerate(SIGNS))
    value = "CASE c.k " + " ".join(f"WHEN {i} THEN s.{col}" for i, (*_, col) in enumerate(SIGNS)) + " END"
    return (f"CREATE VIEW vitals AS SELECT s.run_key, s.patient_id, s.time, s.facility, c.code, c.name, "
            f"{value} AS value, c.unit FROM vital_sets s CROSS JOIN ({signs}) c")


def _list_table(name: str, column: str) -> None:
    op.create_table(name, sa.Column("run_key", sa.Integer, nullable=False), sa.Column("patient_id", sa.BigInteger),
                    sa.Column(column, sa.Text))
    op.create_index(f"ix_{name}_run_patient", name, ["run_key", "patient_id"])


def _is_table(conn, name: str) -> bool:
    return conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).scalar() > 0


def _convert(conn, table: str, lists: str, column: str, fields: tuple[str, ...], order: str) -> None:
    """``table`` -> ``lists`` + a view named ``table``. Safe to run again after an interruption: SQLite creates a
    table outside the transaction, so a stopped upgrade can leave an empty list table behind (the rows are only
    dropped from ``table`` in the transaction that fills the list table)."""
    if not _is_table(conn, table):
        return  # converted already
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {lists}")
    _list_table(lists, column)
    conn.exec_driver_sql(f"INSERT INTO {lists} (run_key, patient_id, {column}) {_packed(fields, table, order)}")
    conn.exec_driver_sql(f"DROP INDEX IF EXISTS ix_{table}_run_patient")
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(f"CREATE VIEW {table} AS {_unpacked(fields, lists, column)}")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    try:
        conn.exec_driver_sql("SELECT json_extract('[1]', '$[0]')")
    except sa.exc.OperationalError as exc:
        raise RuntimeError("this SQLite library has no JSON functions (JSON1), which the database needs from "
                           "revision 0003: use a Python whose sqlite3 module is built with them") from exc
    _convert(conn, "events", "event_lists", "events", EVENT_FIELDS, "seq")
    _convert(conn, "conditions", "condition_lists", "conditions", CONDITION_FIELDS, "rank")
    conn.exec_driver_sql("DROP VIEW IF EXISTS vitals")
    _convert(conn, "vital_sets", "vital_lists", "sets", SET_FIELDS, "time")
    conn.execute(sa.text(_vitals_view()))  # text(): escapes the '%' unit


def _restore(conn, table: str, columns: list, lists: str, column: str, fields: tuple[str, ...]) -> None:
    """The view ``table`` back to a table with ``columns`` (after run_key and patient_id), filled from ``lists``."""
    conn.exec_driver_sql(f"DROP VIEW {table}")
    op.create_table(table, sa.Column("run_key", sa.Integer, nullable=False), sa.Column("patient_id", sa.BigInteger),
                    *columns)
    op.create_index(f"ix_{table}_run_patient", table, ["run_key", "patient_id"])
    conn.exec_driver_sql(f"INSERT INTO {table} (run_key, patient_id, {', '.join(fields)}) "
                         f"{_unpacked(fields, lists, column, False)} ORDER BY 1, 2, 3")
    op.drop_index(f"ix_{lists}_run_patient", lists)
    op.drop_table(lists)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    _restore(conn, "events", [sa.Column("seq", sa.SmallInteger), sa.Column("time", TZ), sa.Column("facility", sa.Text),
                              sa.Column("event", sa.Text), sa.Column("detail", sa.Text)],
             "event_lists", "events", EVENT_FIELDS)
    _restore(conn, "conditions", [sa.Column("rank", sa.SmallInteger), sa.Column("code", sa.Text),
                                  sa.Column("display", sa.Text), sa.Column("body_region", sa.Text),
                                  sa.Column("severity", sa.Text)],
             "condition_lists", "conditions", CONDITION_FIELDS)
    conn.exec_driver_sql("DROP VIEW vitals")
    _restore(conn, "vital_sets", [sa.Column("time", TZ), sa.Column("facility", sa.Text),
                                  *(sa.Column(col, sa.Float) for *_, col in SIGNS)],
             "vital_lists", "sets", SET_FIELDS)
    conn.execute(sa.text(_vitals_view()))
