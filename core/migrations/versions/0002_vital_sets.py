"""Vital signs stored one row per measurement set: table ``vital_sets`` (run_key, patient_id, time, facility and
the set's 7 values in columns) and a view ``vitals`` that gives the contract's long form (patient_id, time,
facility, code, name, value, unit), so every query still reads the contract's table. A set is 1 row instead of 7:
a persisted run has ~13 rows per patient instead of ~29, which is what makes the PostgreSQL load fast.

Existing runs are converted (on PostgreSQL partition by partition, each a partition of ``vital_sets``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
# frozen copy (docs/data-contract.md, version 1): LOINC code, short name, unit and the column holding it, in set order
SIGNS = (("8867-4", "Heart rate", "/min", "heart_rate"), ("9279-1", "Resp rate", "/min", "resp_rate"),
         ("8480-6", "BP sys", "mm[Hg]", "bp_sys"), ("8462-4", "BP dias", "mm[Hg]", "bp_dias"),
         ("59408-5", "SaO2 % BldA PulseOx", "%", "spo2"), ("8310-5", "Body temperature", "Cel", "temperature"),
         ("9269-2", "GCS total", "{score}", "gcs"))
KEYS = "run_key, patient_id, time, facility"
SET_COLUMNS = ", ".join(s[3] for s in SIGNS)
LONG_COLUMNS = "run_key, patient_id, time, facility, code, name, value, unit"


def _signs_sql() -> str:
    return " UNION ALL ".join(f"SELECT {i} AS k, '{code}' AS code, '{name}' AS name, '{unit}' AS unit"
                              for i, (code, name, unit, _) in enumerate(SIGNS))


def _long_select(source: str) -> str:
    """The long form of a vital_sets table: 7 rows per set, in the set's order."""
    value = "CASE c.k " + " ".join(f"WHEN {i} THEN s.{col}" for i, (*_, col) in enumerate(SIGNS)) + " END"
    return (f"SELECT s.run_key, s.patient_id, s.time, s.facility, c.code, c.name, {value} AS value, c.unit "
            f"FROM {source} s CROSS JOIN ({_signs_sql()}) c")


def _sets_select(source: str) -> str:
    """The sets of a long vitals table (rows of one patient, time and facility are one set)."""
    cols = ", ".join(f"max(CASE WHEN code = '{code}' THEN value END)" for code, *_ in SIGNS)
    return f"SELECT {KEYS}, {cols} FROM {source} GROUP BY {KEYS}"


def _partitions(conn, parent: str) -> list[tuple[str, int]]:
    rows = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"WHERE i.inhparent = '{parent}'::regclass").scalars().all()
    return [(name, int(name.rsplit("_r", 1)[1])) for name in rows]


def _drop_staging(conn, table: str) -> None:
    """Staging tables of runs that never completed (not partitions): their runs are failed on recovery."""
    for name in conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename ~ %(p)s",
            {"p": f"^{table}_r[0-9]+$"}).scalars().all():
        conn.exec_driver_sql(f'DROP TABLE "{name}"')


def upgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    kw = {"postgresql_partition_by": "LIST (run_key)"} if pg else {}
    op.create_table("vital_sets", sa.Column("run_key", sa.Integer, nullable=False),
                    sa.Column("patient_id", sa.BigInteger), sa.Column("time", TZ), sa.Column("facility", sa.Text),
                    *(sa.Column(col, sa.Float) for *_, col in SIGNS), **kw)
    if pg:
        op.create_index("ix_vital_sets_patient", "vital_sets", ["patient_id"], postgresql_using="brin")
        for name, key in _partitions(conn, "vitals"):
            conn.exec_driver_sql(f'CREATE TABLE "vital_sets_r{key}" PARTITION OF vital_sets FOR VALUES IN ({key})')
            conn.exec_driver_sql(f"INSERT INTO vital_sets ({KEYS}, {SET_COLUMNS}) "
                                 f'{_sets_select(chr(34) + name + chr(34))} ORDER BY patient_id, time')
            conn.exec_driver_sql(f'ANALYZE "vital_sets_r{key}"')
        op.drop_table("vitals")  # and its partitions
        _drop_staging(conn, "vitals")
    else:
        op.create_index("ix_vital_sets_run_patient", "vital_sets", ["run_key", "patient_id"])
        conn.exec_driver_sql(f"INSERT INTO vital_sets ({KEYS}, {SET_COLUMNS}) {_sets_select('vitals')} "
                             f"ORDER BY run_key, patient_id, time")
        op.drop_index("ix_vitals_run_patient", "vitals")
        op.drop_table("vitals")
    conn.execute(sa.text(f"CREATE VIEW vitals AS {_long_select('vital_sets')}"))  # text(): escapes the '%' unit


def downgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    conn.exec_driver_sql("DROP VIEW vitals")
    kw = {"postgresql_partition_by": "LIST (run_key)"} if pg else {}
    op.create_table("vitals", sa.Column("run_key", sa.Integer, nullable=False),
                    sa.Column("patient_id", sa.BigInteger), sa.Column("time", TZ), sa.Column("facility", sa.Text),
                    sa.Column("code", sa.Text), sa.Column("name", sa.Text), sa.Column("value", sa.Float),
                    sa.Column("unit", sa.Text), **kw)
    if pg:
        op.create_index("ix_vitals_patient", "vitals", ["patient_id"], postgresql_using="brin")
        for name, key in _partitions(conn, "vital_sets"):
            conn.exec_driver_sql(f'CREATE TABLE "vitals_r{key}" PARTITION OF vitals FOR VALUES IN ({key})')
            conn.execute(sa.text(f'INSERT INTO vitals ({LONG_COLUMNS}) {_long_select(chr(34) + name + chr(34))} '
                                 f"ORDER BY s.patient_id, s.time, c.k"))
        op.drop_table("vital_sets")
        _drop_staging(conn, "vital_sets")
    else:
        op.create_index("ix_vitals_run_patient", "vitals", ["run_key", "patient_id"])
        conn.execute(sa.text(f"INSERT INTO vitals ({LONG_COLUMNS}) {_long_select('vital_sets')} "
                             f"ORDER BY s.run_key, s.patient_id, s.time, c.k"))
        op.drop_index("ix_vital_sets_run_patient", "vital_sets")
        op.drop_table("vital_sets")
