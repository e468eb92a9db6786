"""Initial schema: scenarios (versioned), runs, metrics and the four contract tables keyed by run.

On PostgreSQL the contract tables are LIST-partitioned by run_key: each persisted run is one partition, loaded
with COPY into a staging table and attached when the run completes (atomic visibility, instant delete).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# frozen copy of the contract columns (docs/data-contract.md, version 1); later contract changes get their own revision
CONTRACT = {
    "patients": [("patient_id", sa.BigInteger), ("service_number", sa.Text), ("given_name", sa.Text),
                 ("family_name", sa.Text), ("sex", sa.Text), ("birth_date", sa.Date), ("age", sa.SmallInteger),
                 ("nationality", sa.Text), ("rank", sa.Text), ("blood_group", sa.Text), ("front", sa.Text),
                 ("category", sa.Text), ("mechanism", sa.Text), ("body_region", sa.Text),
                 ("polytrauma", sa.Boolean), ("condition_code", sa.Text), ("condition_display", sa.Text),
                 ("severity", sa.Text), ("triage", sa.Text), ("injury_time", TZ), ("event_id", sa.Text),
                 ("mass_casualty", sa.Boolean), ("warfare_type", sa.Text), ("outcome", sa.Text),
                 ("outcome_time", TZ), ("last_facility", sa.Text), ("death_type", sa.Text)],
    "events": [("patient_id", sa.BigInteger), ("seq", sa.SmallInteger), ("time", TZ), ("facility", sa.Text),
               ("event", sa.Text), ("detail", sa.Text)],
    "conditions": [("patient_id", sa.BigInteger), ("rank", sa.SmallInteger), ("code", sa.Text),
                   ("display", sa.Text), ("body_region", sa.Text), ("severity", sa.Text)],
    "vitals": [("patient_id", sa.BigInteger), ("time", TZ), ("facility", sa.Text), ("code", sa.Text),
               ("name", sa.Text), ("value", sa.Float), ("unit", sa.Text)],
}


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "scenarios",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("parent_version", sa.Integer),
        sa.Column("description", sa.String(1000), nullable=False, server_default=""),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_scenarios_name_version"),
    )
    op.create_table(
        "runs",
        sa.Column("run_key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scenario_name", sa.String(100)),
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
        sa.Column("persist", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("persisted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("error", sa.Text),
        sa.Column("database_error", sa.Text),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer),
        sa.Column("manifest", JSON),
        sa.Column("summary", JSON),
        sa.UniqueConstraint("run_id", name="uq_runs_run_id"),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at", "run_key"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "metrics",
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
    op.create_index("ix_metrics_run_key_t", "metrics", ["run_key", "t"])
    for table, cols in CONTRACT.items():
        kw = {"postgresql_partition_by": "LIST (run_key)"} if pg else {}
        op.create_table(table, sa.Column("run_key", sa.Integer, nullable=False),
                        *(sa.Column(name, type_) for name, type_ in cols), **kw)
    # one patient's record: patients by (run, id); the child tables are written in patient order, so on
    # PostgreSQL a BRIN index per partition finds a patient's rows in a few pages and costs almost nothing to build
    op.create_index("ix_patients_run_patient", "patients", ["run_key", "patient_id"], unique=True)
    for table in ("events", "conditions", "vitals"):
        if pg:
            op.create_index(f"ix_{table}_patient", table, ["patient_id"], postgresql_using="brin")
        else:
            op.create_index(f"ix_{table}_run_patient", table, ["run_key", "patient_id"])


def downgrade() -> None:
    for table in ("vitals", "conditions", "events", "patients", "metrics", "runs", "scenarios"):
        op.drop_table(table)
