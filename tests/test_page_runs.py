"""Runs page (AppTest): the run history, a run's summary and ZIP download, delete with confirmation."""
from __future__ import annotations

import resources
from core.scenario import load_scenario
from pages import by_label, metrics, open_page

PAGE = "views/runs.py"


def run(patients: int, seed: int, **options):
    registry = resources.job_registry()
    job = registry.submit(load_scenario("default").with_overrides(patients=patients, seed=seed), **options)
    return registry.wait(job.run_id, 120)


def table(at):
    return at.dataframe[0].value  # pandas DataFrame of the history table


def test_no_runs_yet(data_dir):
    at = open_page(PAGE)
    assert "No runs yet" in at.info[0].value


def test_history_lists_each_run_with_status_size_seed_and_timings(data_dir):
    first = run(2_000, seed=5, fmt="csv", compress=True)
    second = run(3_000, seed=6)
    at = open_page(PAGE)
    df = table(at)
    assert list(df["run"]) == [second.run_id, first.run_id]  # newest first
    row = df[df["run"] == first.run_id].iloc[0]
    assert (row["status"], row["seed"], row["patients"], row["format"]) == ("completed", 5, 2_000, "csv +gz")
    assert row["size"].endswith(("KB", "MB")) and row["seconds"] > 0 and row["patients/s"] > 0
    assert {"version", "started (UTC)", "peak MB", "in database"} <= set(df.columns)
    assert by_label(at.selectbox, "Run").value == second.run_id
    labels = metrics(at)
    assert labels["Patients"] == "3,000"
    assert [d.label for d in at.get("download_button")] == ["Download as ZIP"]


def test_a_cancelled_run_is_listed_without_a_download(data_dir):
    registry = resources.job_registry()
    job = registry.submit(load_scenario("default").with_overrides(patients=5_000_000, seed=1))
    while job.patients_done == 0 and job.active:
        job.done_event.wait(0.05)
    registry.cancel()
    registry.wait(job.run_id, 30)
    at = open_page(PAGE)
    assert table(at).iloc[0]["status"] == "cancelled"
    assert not at.get("download_button")


def test_delete_needs_confirmation_and_removes_the_run(data_dir):
    keep, gone = run(2_000, seed=1), run(2_000, seed=2)
    at = open_page(PAGE)
    by_label(at.selectbox, "Run").set_value(gone.run_id).run()
    delete = by_label(at.button, "Delete run")
    assert delete.disabled  # nothing happens without ticking the confirmation
    by_label(at.checkbox, f"Yes, delete run {gone.run_id} and its files").check().run()
    by_label(at.button, "Delete run").click().run()
    assert not at.exception
    assert f"Run {gone.run_id} deleted" in at.success[0].value
    assert not gone.out_dir.exists() and keep.out_dir.exists()
    assert list(table(at)["run"]) == [keep.run_id]
    assert not by_label(at.checkbox, f"Yes, delete run {keep.run_id} and its files").value  # confirmation reset


def test_a_running_run_cannot_be_deleted(data_dir):
    registry = resources.job_registry()
    job = registry.submit(load_scenario("default").with_overrides(patients=5_000_000, seed=1))
    at = open_page(PAGE)
    assert table(at).iloc[0]["status"] in ("queued", "running")
    assert by_label(at.checkbox, f"Yes, delete run {job.run_id} and its files").disabled
    registry.cancel()
    registry.wait(job.run_id, 30)


def test_a_run_saved_to_the_database_shows_its_counts_and_is_deleted_from_it(data_dir):
    from core import db
    saved = run(2_000, seed=3, persist=True)
    at = open_page(PAGE)
    row = table(at).iloc[0]
    assert row["run"] == saved.run_id and bool(row["in database"]) is True
    assert "Counts from the database" in [e.label for e in at.expander]
    by_label(at.checkbox, f"Yes, delete run {saved.run_id} and its files").check().run()
    by_label(at.button, "Delete run").click().run()
    assert db.get_run(resources.db_engine(), saved.run_id) is None and not saved.out_dir.exists()
    assert "No runs yet" in at.info[0].value
