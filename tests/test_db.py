"""core.db against the embedded SQLite file and a real PostgreSQL (MPG_TEST_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/test): each test session works in its own PostgreSQL schema and drops it.
With CI set, an unreachable PostgreSQL fails these tests instead of skipping them."""
from __future__ import annotations

import json
from datetime import datetime, timezone
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest
import sqlalchemy as sa

from core import db, schema
from core.db.tables import aware
from core.run import generate_run
from core.scenario import load_scenario
from conftest import fail_stream_at

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("MPG_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DOWN_PG = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def _pg_admin():
    return sa.create_engine(sa.make_url(PG_URL).set(drivername="postgresql+psycopg2"), poolclass=sa.pool.NullPool,
                            connect_args={"connect_timeout": 5})


def _schema_url(schema_name: str, app: str | None = None) -> str:
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options={quote(f'-csearch_path={schema_name}')}"
    return url + (f"&application_name={app}" if app else "")


@pytest.fixture(scope="session")
def pg_schema():
    """A fresh schema for this session, dropped at the end; fail under CI when PostgreSQL is unreachable."""
    name = f"mpg_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _pg_admin()
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    except sa.exc.OperationalError as exc:
        msg = f"PostgreSQL unreachable at {PG_URL}: {str(exc.orig).strip().splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    yield name
    db.dispose_all()
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
    admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request, tmp_path_factory):
    """(name, url) of a migrated database used by the whole session."""
    if request.param == "sqlite":
        found = "sqlite", f"sqlite:///{tmp_path_factory.mktemp('db') / 'mpg.sqlite'}"
    else:
        found = "postgresql", _schema_url(request.getfixturevalue("pg_schema"))
    db.get_engine(found[1])  # migrated once
    return found


@pytest.fixture
def engine(backend):
    return db.get_engine(backend[1])


@pytest.fixture(scope="session")
def small():
    return load_scenario("default").with_overrides(patients=6_000, seed=11)


def _count_rows(engine, run_key: int) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t} WHERE run_key = :k"), {"k": run_key}).scalar()
                for t in schema.TABLES}


def _run_key(engine, run_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(db.RUNS.c.run_key).where(db.RUNS.c.run_id == run_id)).scalar_one()


def _pg_partitions(engine, run_key: int) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                    "AND tablename LIKE :p"), {"p": f"%\\_r{run_key}"}).scalars().all()


# --- schema -----------------------------------------------------------------------------------------------------
def test_migrations_from_empty(backend, tmp_path):
    if backend[0] == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh' / 'new.sqlite'}"  # the folder does not exist yet either
    else:
        name = f"mpg_fresh_{uuid.uuid4().hex[:8]}"
        with _pg_admin().begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = _schema_url(name)
    engine = db.create_engine(url)
    try:
        assert db.schema_revision(engine) is None
        assert db.migrate(engine) == db.head_revision()
        assert db.migrate(engine) == db.head_revision()  # running it again changes nothing
        insp = sa.inspect(engine)
        # vitals is a view over vital_sets (one row per measurement set) that reads as the contract's table
        assert {"scenarios", "runs", "metrics", "vital_sets", *schema.TABLES} <= {*insp.get_table_names(),
                                                                                 *insp.get_view_names()}
        for table, cols in schema.TABLES.items():  # the database holds every contract column
            assert [c["name"] for c in insp.get_columns(table)] == ["run_key", *cols]
        assert db.status(engine)["revision"] == db.head_revision()
    finally:
        engine.dispose()
        if backend[0] == "postgresql":
            with _pg_admin().begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')


def test_cli_db_migrate_and_status(backend):
    env = {**os.environ, "DATABASE_URL": backend[1], "PYTHONPATH": str(REPO)}
    if backend[0] == "sqlite":
        env.pop("DATABASE_URL")
        env["MPG_DATA_DIR"] = str(Path(backend[1].removeprefix("sqlite:///")).parent)
    out = subprocess.run([sys.executable, "-m", "core", "db", "migrate"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"-> {db.head_revision()}" in out.stdout
    out = subprocess.run([sys.executable, "-m", "core", "db", "status"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and f"schema    {db.head_revision()}" in out.stdout, out.stdout + out.stderr


# --- scenarios --------------------------------------------------------------------------------------------------
def test_scenario_versions(engine):
    name = f"Brigade {uuid.uuid4().hex[:6]}"
    base = load_scenario("default")
    v1 = db.save_scenario(engine, name, base, "first")
    v2 = db.save_scenario(engine, f"  {name} ", base.with_overrides(patients=777), "second")  # same name, stripped
    assert (v1["version"], v1["parent_version"]) == (1, None)
    assert (v2["version"], v2["parent_version"]) == (2, 1)
    assert [v["version"] for v in db.scenario_versions(engine, name)] == [1, 2]
    latest = next(s for s in db.list_scenarios(engine) if s["name"] == name)
    assert latest["version"] == 2 and latest["sha256"] == base.with_overrides(patients=777).sha256()
    assert db.load_scenario(engine, name).patients == 777
    assert db.load_scenario(engine, name, 1) == base
    with pytest.raises(LookupError, match="version 9"):
        db.load_scenario(engine, name, 9)
    assert db.delete_scenario(engine, name) == 2
    assert db.scenario_versions(engine, name) == []
    with pytest.raises(LookupError):
        db.load_scenario(engine, name)


HOSTILE = ["Robert'); DROP TABLE scenarios;--", '<script>alert("x")</script>', "O'Brien \"Quote\" \\ back",
           "שלום عملية 行动 🚑🪖", "Z̷̢a̶l̴g̸o", "%_ LIKE wildcards %", "x" * 100, "e\u0301clair"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_scenario_names_are_stored_as_given(engine, name):
    desc = "line one\nline two\t'; DELETE FROM runs; -- " + "é" * 900
    row = db.save_scenario(engine, name, load_scenario("default"), desc)
    stored = row["name"]
    assert stored == (name if name != "e\u0301clair" else "\u00e9clair")  # NFC: one name for what looks alike
    versions = db.scenario_versions(engine, stored)
    assert versions[-1]["description"] == desc.strip()
    assert db.load_scenario(engine, stored).name == load_scenario("default").name
    assert {t for t in sa.inspect(engine).get_table_names()} >= {"scenarios", "runs"}  # nothing was dropped
    assert db.delete_scenario(engine, stored) >= 1


@pytest.mark.parametrize("name, message", [
    ("", "empty"), ("   ", "empty"), ("x" * 101, "101 characters"), ("bad\x00name", "U\\+0000"),
    ("tab\tname", "U\\+0009"), ("\ud800", "U\\+D800"), (42, "must be text"),
])
def test_bad_scenario_names_are_refused_with_a_reason(engine, name, message):
    with pytest.raises(ValueError, match=message):
        db.save_scenario(engine, name, load_scenario("default"))


def test_overlong_description_is_refused(engine):
    with pytest.raises(ValueError, match="at most 1000"):
        db.save_scenario(engine, "desc", load_scenario("default"), "d" * 1001)


# --- runs -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def persisted(backend, small, tmp_path_factory):
    """One persisted run of the small scenario per backend: (engine, manifest, out dir)."""
    engine = db.get_engine(backend[1])
    out = tmp_path_factory.mktemp("run") / "r"
    manifest = generate_run(small, out, engine=engine, persist=True, scenario_name="small", scenario_version=3,
                            chunk_size=2_048)
    assert manifest["status"] == "completed" and manifest["persisted"] is True, manifest.get("database_error")
    return engine, manifest, out


def _file_table(out: Path, table: str) -> pl.DataFrame:
    frame = pl.read_parquet(out / f"{table}.parquet")
    return frame.with_columns(pl.col(c).cast(pl.String) for c, d in frame.schema.items() if isinstance(d, pl.Enum))


def test_persisted_run_equals_the_files_of_the_same_seed(persisted):
    engine, manifest, out = persisted
    for table in schema.TABLES:
        from_db, from_file = db.run_table(engine, manifest["run_id"], table), _file_table(out, table)
        assert from_db.schema == from_file.schema
        assert from_db.sort(from_db.columns).equals(from_file.sort(from_file.columns)), table


def test_run_registry_and_summary(persisted, small):
    engine, manifest, out = persisted
    run = db.get_run(engine, manifest["run_id"])
    assert run["status"] == "completed" and run["persisted"] is True
    assert (run["scenario_name"], run["scenario_version"], run["seed"]) == ("small", 3, small.seed)
    assert run["patients"] == small.patients and run["peak_rss_mb"] == manifest["peak_rss_mb"]
    assert Path(run["out_dir"]) == out.resolve()
    assert run["created_at"].tzinfo is not None and run["finished_at"] >= run["created_at"]
    listed = [r["run_id"] for r in db.list_runs(engine)]
    assert manifest["run_id"] in listed
    summary = db.run_summary(engine, manifest["run_id"])
    patients = pl.read_parquet(out / "patients.parquet")
    for col in ("category", "triage", "outcome", "mechanism", "front", "nationality"):
        expected = {str(k): v for k, v in patients.group_by(col).len().iter_rows()}
        assert summary[f"by_{col}"] == expected, col
    assert summary["deaths"] == patients.filter(pl.col("outcome").is_in(["KIA", "DOW"])).height
    assert summary["rtd"] == patients.filter(pl.col("outcome") == "RTD").height
    assert summary["rows"]["vitals"] == pl.read_parquet(out / "vitals.parquet").height


def test_patient_record(persisted):
    engine, manifest, out = persisted
    pid = 1234
    rec = db.patient_record(engine, manifest["run_id"], pid)
    row = pl.read_parquet(out / "patients.parquet").filter(pl.col("patient_id") == pid).row(0, named=True)
    assert rec["service_number"] == row["service_number"] and rec["injury_time"] == row["injury_time"]
    events = pl.read_parquet(out / "events.parquet").filter(pl.col("patient_id") == pid)
    assert [e["seq"] for e in rec["events"]] == events["seq"].to_list()
    assert [e["event"] for e in rec["events"]] == events["event"].cast(pl.String).to_list()
    vitals = pl.read_parquet(out / "vitals.parquet").filter(pl.col("patient_id") == pid)
    assert [v["code"] for v in rec["vitals"]] == vitals["code"].cast(pl.String).to_list()  # measured order
    assert len(rec["conditions"]) == pl.read_parquet(out / "conditions.parquet").filter(
        pl.col("patient_id") == pid).height
    with pytest.raises(LookupError, match="no patient 99999999"):
        db.patient_record(engine, manifest["run_id"], 99_999_999)


def test_patient_lookup_uses_the_runs_partition_index(persisted):
    engine, manifest, _ = persisted
    if db.dialect(engine) != "postgresql":
        pytest.skip("partitions exist on PostgreSQL only")
    key = _run_key(engine, manifest["run_id"])
    stored = {"patients": "patients", "events": "events", "conditions": "conditions", "vitals": "vital_sets"}
    for table in schema.TABLES:  # the vitals view reaches the run's partition of vital_sets
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")  # tiny test tables: ask whether an index exists
            plan = "\n".join(conn.exec_driver_sql(
                f"EXPLAIN SELECT * FROM {table} WHERE run_key = {key} AND patient_id = 17").scalars())
        assert f"{stored[table]}_r{key}" in plan and "Index" in plan and "Seq Scan" not in plan, plan


def test_a_patients_rows_on_sqlite_are_found_by_index_through_the_views(tmp_path):
    """The views over the per-patient lists find one patient's row by the lists' index, never by a scan."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    try:
        db.migrate(engine)
        with engine.connect() as conn:
            for view, stored in (("events", "event_lists"), ("conditions", "condition_lists"),
                                 ("vitals", "vital_lists"), ("vital_sets", "vital_lists")):
                plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN SELECT * FROM {view} WHERE run_key = 1 AND patient_id = 17"))
                assert f"USING INDEX ix_{stored}_run_patient" in plan, plan
                assert "SCAN l" not in plan, plan
    finally:
        engine.dispose()


def test_migration_0002_keeps_the_vitals_of_saved_runs(backend, tmp_path):
    """A database at 0001 with a saved run's long vitals rows: 0002 turns them into sets that read back as the
    same rows through the vitals view, and the downgrade gives the long table back."""
    from alembic import command
    if backend[0] == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    else:
        name = f"mpg_mig_{uuid.uuid4().hex[:8]}"
        with _pg_admin().begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = _schema_url(name)
    engine = db.create_engine(url)
    batch = next(iter(__import__("core.generator", fromlist=["stream"]).stream(
        load_scenario("default").with_overrides(patients=300, seed=3), chunk_size=300)))
    long = batch.vitals.with_columns(pl.col(c).cast(pl.String) for c in ("facility", "code", "name", "unit"))

    def read_vitals(conn):
        t = db.RUN_TABLES["vitals"]
        return pl.DataFrame([{**r._mapping, "time": aware(r.time)} for r in conn.execute(
            sa.select(*(c for c in t.c if c.name != "run_key")).where(t.c.run_key == 1))])

    def same(frame):
        frame = frame.with_columns(pl.col("time").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
        return frame.sort(long.columns).equals(long.sort(long.columns))
    try:
        with engine.connect() as conn:
            command.upgrade(db.alembic_config(conn), "0001")
            if backend[0] == "postgresql":
                conn.exec_driver_sql("CREATE TABLE vitals_r1 PARTITION OF vitals FOR VALUES IN (1)")
            conn.execute(db.RUN_TABLES["vitals"].insert(), [{"run_key": 1, **r} for r in long.to_dicts()])
            conn.commit()
            command.upgrade(db.alembic_config(conn), "head")
            conn.commit()
            assert conn.execute(sa.text("SELECT count(*) FROM vital_sets")).scalar() == long.height // 7
            assert same(read_vitals(conn))
            command.downgrade(db.alembic_config(conn), "0001")
            conn.commit()
            assert "vital_sets" not in sa.inspect(conn).get_table_names()
            assert same(read_vitals(conn))
    finally:
        engine.dispose()
        if backend[0] == "postgresql":
            with _pg_admin().begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')


def test_migration_0003_keeps_the_events_conditions_and_vitals_of_saved_sqlite_runs(tmp_path):
    """A SQLite database at 0002 with a saved run's rows (an event detail and a diagnosis that need escaping, a time
    with microseconds): 0003 packs them one row per patient and the views read back the same rows; the downgrade
    gives the tables back."""
    from alembic import command
    from core.sinks.database import vital_sets
    engine = db.create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    batch = next(iter(__import__("core.generator", fromlist=["stream"]).stream(
        load_scenario("default").with_overrides(patients=300, seed=3), chunk_size=300)))
    row = pl.int_range(pl.len())
    before_1970 = pl.lit(datetime(1944, 6, 6, 6, 30, 0, 250_000, tzinfo=timezone.utc)).dt.cast_time_unit("us")
    tables = {
        "events": batch.events.with_columns(
            detail=pl.when(row == 5).then(pl.lit('say "stop"\\ now')).otherwise(pl.col("detail")),
            time=pl.when(row == 6).then(pl.col("time") + pl.duration(microseconds=123))
            .when(row == 7).then(before_1970).otherwise(pl.col("time"))),
        "conditions": batch.conditions.with_columns(
            display=pl.when(row == 2).then(pl.lit('a "b"\nc')).otherwise(pl.col("display"))),
        "vitals": batch.vitals.with_columns(  # needs 17 significant digits (SQLite's JSON keeps 15)
            value=pl.when(row == 3).then(pl.lit(36.60000000000001)).otherwise(pl.col("value")))}
    sets = vital_sets(tables["vitals"])
    tables = {t: f.with_columns(pl.col(c).cast(pl.String) for c, d in f.schema.items() if isinstance(d, pl.Enum))
              for t, f in tables.items()}
    order = {"events": ("patient_id", "seq"), "conditions": ("patient_id", "rank"),
             "vitals": ("patient_id", "time", "code")}

    def read(conn, name):
        t = db.RUN_TABLES[name]
        frame = pl.DataFrame([{**r._mapping, "time": aware(r.time)} if "time" in r._mapping else dict(r._mapping)
                              for r in conn.execute(sa.select(*(c for c in t.c if c.name != "run_key"))
                                                    .where(t.c.run_key == 1))])
        if "time" in frame.columns:
            frame = frame.with_columns(pl.col("time").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
        return frame.cast(tables[name].schema).sort(order[name])

    def same(conn):
        for name, frame in tables.items():
            assert read(conn, name).equals(frame.sort(order[name])), name
        return True
    try:
        with engine.connect() as conn:
            command.upgrade(db.alembic_config(conn), "0002")
            for name in ("events", "conditions"):
                conn.execute(db.RUN_TABLES[name].insert(), [{"run_key": 1, **r} for r in tables[name].to_dicts()])
            conn.execute(db.VITAL_SETS.insert(), [{"run_key": 1, **r} for r in sets.to_dicts()])
            conn.commit()
            assert same(conn)
            # what an upgrade stopped part-way leaves behind (SQLite creates tables outside the transaction)
            conn.exec_driver_sql("CREATE TABLE event_lists (run_key INTEGER NOT NULL, patient_id BIGINT, events TEXT)")
            conn.commit()
            command.upgrade(db.alembic_config(conn), "head")
            conn.commit()
            for name, source in (("event_lists", "events"), ("condition_lists", "conditions"),
                                 ("vital_lists", "vitals")):  # one row per patient who has any (KIA: no vitals)
                assert (conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar()
                        == tables[source]["patient_id"].n_unique() > 0)
            assert not {"events", "conditions", "vital_sets"} & set(sa.inspect(conn).get_table_names())
            assert same(conn)
            command.downgrade(db.alembic_config(conn), "0002")
            conn.commit()
            assert "event_lists" not in sa.inspect(conn).get_table_names()
            assert same(conn)
    finally:
        engine.dispose()


def test_events_with_text_that_needs_escaping_are_stored_exactly(tmp_path):
    """A detail with quotes, a backslash and a line break survives the SQLite load (JSON escaping)."""
    from core.sinks.database import event_lists
    batch = next(iter(__import__("core.generator", fromlist=["stream"]).stream(
        load_scenario("default").with_overrides(patients=50, seed=3), chunk_size=50)))
    odd = batch.events.with_columns(
        detail=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit('a "b"\\c\nd')).otherwise(pl.col("detail")))
    packed = event_lists(odd)
    assert packed.height == batch.patients.height
    rows = [json.loads(text) for text in packed["events"]]
    flat = [e for patient in rows for e in patient]
    assert [e[4] for e in flat] == odd["detail"].to_list()
    assert [e[0] for e in flat] == odd["seq"].to_list()
    assert [e[1] for e in flat] == odd["time"].dt.epoch("us").to_list()


def test_a_missing_value_is_stored_as_null_and_a_nul_character_is_refused():
    """A null in any field of an event stays in the patient's list as JSON null (not a dropped event); text with
    a NUL character is refused with a clear message (SQLite's JSON functions would end the text there)."""
    from core.sinks.database import condition_lists, event_lists
    batch = next(iter(__import__("core.generator", fromlist=["stream"]).stream(
        load_scenario("default").with_overrides(patients=20, seed=3), chunk_size=20)))
    holes = batch.events.with_columns(time=pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("time")))
    flat = [e for text in event_lists(holes)["events"] for e in json.loads(text)]
    assert len(flat) == holes.height and flat[1][1] is None
    nul = batch.conditions.with_columns(display=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("a\x00b"))
                                        .otherwise(pl.col("display")))
    with pytest.raises(ValueError, match="NUL character"):
        condition_lists(nul)


def test_vitals_that_are_not_whole_sets_are_refused_not_stored_wrong():
    from core import generator
    from core.sinks.database import vital_sets
    batch = next(iter(generator.stream(load_scenario("default").with_overrides(patients=200, seed=3),
                                       chunk_size=200)))
    sets = vital_sets(batch.vitals)
    assert sets.height * 7 == batch.vitals.height
    assert sets["heart_rate"].to_list() == batch.vitals.filter(pl.col("code") == "8867-4")["value"].to_list()
    assert sets["gcs"].to_list() == batch.vitals.filter(pl.col("code") == "9269-2")["value"].to_list()
    for broken in (batch.vitals.slice(1), batch.vitals.reverse(),
                   batch.vitals.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None)
                                             .otherwise(pl.col("value")).alias("value"))):
        with pytest.raises(ValueError, match="not whole measurement sets"):
            vital_sets(broken)


def _first_batches_then(event: threading.Event, after: int):
    def progress(p):
        if p.patients_done >= after:
            event.set()
    return progress


@pytest.mark.parametrize("how", ["cancel", "failure"])
def test_cancelled_or_failed_run_leaves_nothing_partial(engine, small, tmp_path, monkeypatch, how):
    cancel = threading.Event()
    kwargs = {"cancel": cancel, "on_progress": _first_batches_then(cancel, 4_000)}
    if how == "failure":
        fail_stream_at(monkeypatch, 2)
        kwargs = {}
    run_id = f"test-{how}-{uuid.uuid4().hex[:6]}"
    if how == "cancel":
        manifest = generate_run(small, tmp_path / "r", engine=engine, persist=True, chunk_size=1_024,
                                run_id=run_id, **kwargs)
    else:
        with pytest.raises(RuntimeError, match="disk on fire"):
            generate_run(small, tmp_path / "r", engine=engine, persist=True, chunk_size=1_024, run_id=run_id)
        manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    expected = "cancelled" if how == "cancel" else "failed"
    assert manifest["status"] == expected and manifest["persisted"] is False
    run = db.get_run(engine, run_id)
    assert run["status"] == expected and run["persisted"] is False
    key = _run_key(engine, run_id)
    if db.dialect(engine) == "postgresql":
        assert _pg_partitions(engine, key) == []
    assert _count_rows(engine, key) == dict.fromkeys(schema.TABLES, 0)
    with pytest.raises(LookupError, match="not saved"):
        db.run_summary(engine, run_id)


def test_delete_run_removes_rows_and_files(engine, tmp_path):
    scenario = load_scenario("default").with_overrides(patients=1_500, seed=5)
    manifest = generate_run(scenario, tmp_path / "gone", engine=engine, persist=True)
    assert manifest["persisted"], manifest.get("database_error")
    key = _run_key(engine, manifest["run_id"])
    db.record_metrics(engine, manifest["run_id"], [{"t": 0.5, "patients_done": 10, "rss_mb": 100.0},
                                                   {"t": 1.0, "patients_done": 1500, "cpu_pct": 50.0}])
    assert [m["patients_done"] for m in db.run_metrics(engine, manifest["run_id"])] == [10, 1500]
    assert _count_rows(engine, key)["patients"] == 1_500
    db.delete_run(engine, manifest["run_id"])
    assert db.get_run(engine, manifest["run_id"]) is None
    assert _count_rows(engine, key) == dict.fromkeys(schema.TABLES, 0)
    assert not (tmp_path / "gone").exists()
    with pytest.raises(LookupError):
        db.run_metrics(engine, manifest["run_id"])


def test_delete_run_never_removes_a_foreign_folder(engine, tmp_path):
    scenario = load_scenario("default").with_overrides(patients=300, seed=5)
    manifest = generate_run(scenario, tmp_path / "mine", engine=engine)
    (tmp_path / "mine" / "manifest.json").write_text(json.dumps({"run_id": "someone-else"}))
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    db.delete_run(engine, manifest["run_id"])
    assert (tmp_path / "mine" / "notes.txt").exists()


# --- pool budget and failures -----------------------------------------------------------------------------------
def test_connection_budget_holds_under_concurrency(backend, persisted, tmp_path):
    _, manifest, _ = persisted
    app = f"mpgtest{uuid.uuid4().hex[:8]}"
    url = backend[1] if backend[0] == "sqlite" else f"{backend[1]}&application_name={app}"
    engine = db.create_engine(url, pool_size=2, max_overflow=1, pool_timeout=30)
    budget, seen, errors = 3, [], []
    stop = threading.Event()

    def watch():
        admin = _pg_admin() if backend[0] == "postgresql" else None
        while not stop.is_set():
            seen.append(db.pool_status(engine)["checked_out"])
            if admin is not None:
                with admin.connect() as conn:
                    seen.append(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                                                     "application_name = :a"), {"a": app}).scalar())
            time.sleep(0.01)

    def session(i):
        try:
            for _ in range(5):
                db.list_runs(engine)
                db.run_summary(engine, manifest["run_id"])
                db.patient_record(engine, manifest["run_id"], 1 + i)
                db.list_scenarios(engine)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=session, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    gen = generate_run(load_scenario("default").with_overrides(patients=5_000, seed=2), tmp_path / "c",
                       engine=engine, persist=True, chunk_size=1_024)
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert not errors, errors[:3]
    assert gen["persisted"] is True, gen.get("database_error")
    assert max(seen) <= budget and max(seen) >= 1
    status = db.pool_status(engine)
    assert status["checked_out"] == 0 and status["budget"] == budget and status["waits"] > 0
    engine.dispose()
    if backend[0] == "postgresql":
        with _pg_admin().connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                                {"a": app}).scalar()
        assert left == 0


def test_pool_exhausted_is_a_clear_error(backend):
    engine = db.create_engine(backend[1], pool_size=1, max_overflow=0, pool_timeout=0.3)
    with db.connect(engine):
        with pytest.raises(db.PoolExhausted, match="all 1 connections stayed in use for 0.3 s"):
            db.list_runs(engine)
    assert db.pool_status(engine)["timeouts"] == 1
    db.list_runs(engine)  # the connection is back: the next call works
    engine.dispose()


@pytest.mark.parametrize("url", [DOWN_PG, "sqlite:////proc/no-such-folder/mpg.sqlite"])
def test_database_down_at_start_is_one_clear_line(url):
    with pytest.raises(db.DatabaseUnavailable) as err:
        db.get_engine(url)
    text = str(err.value)
    assert "\n" not in text and text.startswith("database unreachable at ")
    assert db.describe(url) in text


def test_database_down_means_files_only(tmp_path):
    engine = db.create_engine(DOWN_PG, pool_timeout=2)
    assert db.is_available(engine) is False
    scenario = load_scenario("default").with_overrides(patients=2_000, seed=4)
    manifest = generate_run(scenario, tmp_path / "r", engine=engine, persist=True)
    assert manifest["status"] == "completed" and manifest["persisted"] is False
    assert "connection refused" in manifest["database_error"].lower()
    assert pl.read_parquet(tmp_path / "r" / "patients.parquet").height == 2_000
    engine.dispose()


def test_database_lost_mid_run_then_recovers(backend, tmp_path):
    if backend[0] != "postgresql":
        pytest.skip("cutting a server connection needs PostgreSQL")
    app = f"mpgcut{uuid.uuid4().hex[:8]}"
    engine = db.create_engine(f"{backend[1]}&application_name={app}")
    admin = _pg_admin()
    cut = threading.Event()

    def progress(p):
        if p.patients_done >= 4_000 and not cut.is_set():
            cut.set()
            with admin.connect() as conn:  # what a server restart does to our connections
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE application_name = :a"), {"a": app})
    scenario = load_scenario("default").with_overrides(patients=12_000, seed=8)
    manifest = generate_run(scenario, tmp_path / "r", engine=engine, persist=True, chunk_size=1_024,
                            on_progress=progress)
    assert cut.is_set()
    assert manifest["status"] == "completed" and manifest["persisted"] is False
    assert "database" in manifest["database_error"] and "files are complete" in manifest["database_error"]
    assert pl.read_parquet(tmp_path / "r" / "vitals.parquet").height > 0
    db.check(engine)  # the database answers again: pre-ping replaced the dead connections
    run = db.get_run(engine, manifest["run_id"])
    assert run["persisted"] is False and run["status"] == "completed"
    assert _pg_partitions(engine, _run_key(engine, manifest["run_id"])) == []
    engine.dispose()
    admin.dispose()


def test_cli_generate_db(backend, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPG_DATA_DIR": str(tmp_path / "data")}
    if backend[0] == "sqlite":
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"] = backend[1]
    args = [sys.executable, "-m", "core", "generate", "--patients", "1500", "--seed", "9", "--db", "--quiet"]
    out = subprocess.run([*args, "--out", str(tmp_path / "ok")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    engine = db.get_engine(backend[1] if backend[0] == "postgresql" else f"sqlite:///{tmp_path / 'data' / 'mpg.sqlite'}")
    assert db.get_run(engine, manifest["run_id"])["persisted"] is True
    assert db.run_summary(engine, manifest["run_id"])["patients"] == 1500
    down = subprocess.run([*args, "--out", str(tmp_path / "down")], env={**env, "DATABASE_URL": DOWN_PG},
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 3
    assert "not saved to the database" in down.stderr and "Traceback" not in down.stderr
    assert json.loads((tmp_path / "down" / "manifest.json").read_text())["status"] == "completed"
    refused = subprocess.run([*args, "--encrypt", "--out", str(tmp_path / "enc")],
                             env={**env, "ENCRYPTION_PASSWORD": "pw"}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--db cannot be combined with --encrypt" in refused.stderr


def test_pool_settings_are_checked():
    os.environ["MPG_DB_POOL_SIZE"] = "zero"
    try:
        with pytest.raises(ValueError, match="MPG_DB_POOL_SIZE='zero' is not a number"):
            db.pool_settings()
    finally:
        del os.environ["MPG_DB_POOL_SIZE"]
    assert db.pool_settings() == {"pool_size": 5, "max_overflow": 5, "pool_timeout": 10.0}


def test_binary_copy_round_trips_every_column_type_through_postgresql(pg_schema):
    """What core/sinks/pgcopy.py encodes, PostgreSQL stores as the same values (NULLs, Unicode, extremes)."""
    from tests.test_pgcopy import sample
    from core.sinks import pgcopy
    frame = sample()
    frame = frame.select(pgcopy.copy_columns(frame.schema))
    engine = sa.create_engine(sa.make_url(_schema_url(pg_schema)).set(drivername="postgresql+psycopg2"),
                              poolclass=sa.pool.NullPool)
    types = {"id": "bigint", "seq": "smallint", "rank": "smallint", "n32": "integer", "value": "double precision",
             "flag": "boolean", "born": "date", "time": "timestamptz", "facility": "text", "name": "text"}
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE copy_types (" + ", ".join(f"{c} {t}" for c, t in types.items()) + ")")
        cur = conn.connection.dbapi_connection.cursor()
        cur.copy_expert(f"COPY copy_types ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT binary)",
                        pgcopy.CopyReader(pgcopy.encode(frame, slice_rows=3)), size=16)
        back = conn.exec_driver_sql(f"SELECT {', '.join(frame.columns)} FROM copy_types ORDER BY seq").all()
        conn.exec_driver_sql("DROP TABLE copy_types")
    engine.dispose()
    expected = frame.with_columns(pl.col("facility").cast(pl.String)).sort("seq").rows()
    assert [tuple(r) for r in back] == expected


# --- safety: which database, whose tables, no password shown, what a killed run left --------------------------------

@pytest.mark.parametrize("url", ["postgresql://", "postgresql://postgres@127.0.0.1:5432", "postgresql+psycopg2://h/",
                                 "sqlite://", "sqlite:///:memory:"])
def test_a_database_url_without_a_database_is_refused(url):
    with pytest.raises(ValueError, match="names no database"):
        db.create_engine(url)


def test_an_unsupported_driver_is_refused_in_one_line():
    with pytest.raises(ValueError, match="driver 'postgresql\\+psycopg' is not supported"):
        db.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _foreign_database(backend, tmp_path) -> tuple[str, callable]:
    """A database holding a table of its own (and no history of ours); returns its URL and a cleanup."""
    if backend[0] == "sqlite":
        url = f"sqlite:///{tmp_path / 'theirs.sqlite'}"
        engine = sa.create_engine(url)
        cleanup = engine.dispose
    else:
        name = f"mpg_theirs_{uuid.uuid4().hex[:8]}"
        with _pg_admin().begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = _schema_url(name)
        engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"))

        def cleanup():
            engine.dispose()
            with _pg_admin().begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE inventory (item text, qty integer)")
    return url, cleanup


def _tables(url: str) -> set[str]:
    engine = db.create_engine(url)  # a new engine is never migrated
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_tables_are_never_created_in_a_database_with_tables_of_its_own_unless_asked(backend, tmp_path):
    url, cleanup = _foreign_database(backend, tmp_path)
    try:
        with pytest.raises(db.ForeignDatabase, match="inventory.*python -m core db migrate"):
            db.get_engine(url)
        assert _tables(url) == {"inventory"}
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}
        run = [sys.executable, "-m", "core"]
        refused = subprocess.run([*run, "generate", "--patients", "100", "--db", "--out", str(tmp_path / "r")],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "refusing to create tables" in refused.stderr
        assert refused.stderr.count("\n") == 1 and not (tmp_path / "r").exists()
        status = subprocess.run([*run, "db", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 1 and "not this project's" in status.stdout, status.stdout + status.stderr
        assert _tables(url) == {"inventory"}
        asked = subprocess.run([*run, "db", "migrate"], env=env, capture_output=True, text=True, timeout=120)
        assert asked.returncode == 0, asked.stderr
        assert {"inventory", "runs", "scenarios", "patients"} <= _tables(url)
    finally:
        db.dispose_all()
        cleanup()


def test_no_part_of_a_password_holding_at_signs_is_ever_shown(tmp_path):
    url = "postgresql://postgres:s3cr@t@pa55word@127.0.0.1:1/test"  # nothing listens on port 1
    pieces = ("s3cr", "pa55", "t@pa", "word@127")
    shown = db.describe(url)
    assert shown == "postgresql://postgres:***@127.0.0.1:1/test"
    with pytest.raises(db.DatabaseUnavailable) as err:
        db.get_engine(url)
    engine = db.create_engine(url, pool_timeout=2)
    manifest = generate_run(load_scenario("default").with_overrides(patients=300), tmp_path / "r", engine=engine)
    engine.dispose()
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    cli = subprocess.run([sys.executable, "-m", "core", "generate", "--patients", "100", "--db", "--quiet",
                          "--out", str(tmp_path / "c")], env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 3
    for text in (shown, str(err.value), (tmp_path / "r" / "manifest.json").read_text(), cli.stderr, cli.stdout,
                 json.dumps(manifest)):
        assert not any(piece in text for piece in pieces), text
    assert "database unreachable at postgresql://postgres:***@127.0.0.1:1/test" in str(err.value)


def test_a_killed_db_run_is_cleaned_up_by_the_next_process_and_db_status_says_so(backend, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPG_DATA_DIR": str(tmp_path / "data")}
    if backend[0] == "sqlite":
        env.pop("DATABASE_URL", None)
        url = f"sqlite:///{tmp_path / 'data' / 'mpg.sqlite'}"
    else:
        env["DATABASE_URL"] = url = backend[1]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "core", "generate", "--patients", "3000000", "--db", "--quiet",
                             "--out", str(out)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(".partial-" in p.name for p in out.iterdir())):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(1.0)  # rows are loading
    finally:
        os.killpg(proc.pid, 9)  # kill -9: no cleanup of its own
        proc.communicate()
    engine = db.create_engine(url)
    try:
        [row] = [r for r in db.list_runs(engine) if r["status"] == "running" and r["out_dir"] == str(out.resolve())]
        key = _run_key(engine, row["run_id"])
        if backend[0] == "postgresql":
            assert _pg_partitions(engine, key)  # its staging tables are still there
        status = subprocess.run([sys.executable, "-m", "core", "db", "status"], env=env, capture_output=True,
                                text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "cleaned   1 interrupted run(s)" in status.stdout and row["run_id"] in status.stdout
        after = db.get_run(engine, row["run_id"])
        assert after["status"] == "failed" and after["error"].startswith("interrupted")
        assert _count_rows(engine, key) == dict.fromkeys(schema.TABLES, 0)
        if backend[0] == "postgresql":
            assert _pg_partitions(engine, key) == []
        again = subprocess.run([sys.executable, "-m", "core", "db", "status"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert "cleaned" not in again.stdout  # once is enough
    finally:
        engine.dispose()
