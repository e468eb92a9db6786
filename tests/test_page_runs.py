"""Runs page (AppTest): the run history told apart by scenario, start time, patients and format; a run's figures
and ZIP download; deletion with confirmation, never of a run that may still be written."""
from __future__ import annotations

import os
import time

import resources
from core.labels import plain, run_labels
from core.scenario import load_scenario
from pages import by_label, metrics, open_page

PAGE = "views/runs.py"
CONFIRM = "Yes, delete this run and its files"


def run(patients: int, seed: int, **options):
    registry = resources.job_registry()
    job = registry.submit(load_scenario("default").with_overrides(patients=patients, seed=seed), **options)
    return registry.wait(job.run_id, 120)


def table(at):
    return at.dataframe[0].value  # pandas DataFrame of the history table


def test_no_runs_yet(data_dir):
    at = open_page(PAGE)
    assert "No runs yet" in at.info[0].value


def test_history_lists_each_run_in_plain_words_one_type_a_column(data_dir):
    first = run(2_000, seed=5, fmt="csv", compress=True)
    second = run(3_000, seed=6)
    at = open_page(PAGE)
    df = table(at)
    assert list(df["Run id"]) == [second.run_id, first.run_id]  # newest first, the id last
    row = df[df["Run id"] == first.run_id].iloc[0]
    assert (row["Status"], row["Seed"], row["Patients"], row["Format"]) == ("Completed", "5", "2,000", "CSV + gzip")
    assert row["Size"].endswith(("KB", "MB")) and row["Time"].endswith(" s") and row["Patients/s"] != "–"
    assert row["Memory"].endswith(" MB") and row["Database"] == "–"
    for column in df.columns:  # one type a column (no ArrowTypeError), never a "None" cell
        assert {type(v) for v in df[column]} == {str}, column
        assert "None" not in set(df[column]), column
    assert all(len(v) == 16 and v[10] == " " for v in df["Started (UTC)"])  # 2026-12-03 08:35
    assert not any("_" in c for c in df.columns)
    picker = by_label(at.selectbox, "Run")
    assert picker.value == second.run_id
    assert picker.options == run_labels(resources.run_rows())
    assert "2,000 patients · CSV + gzip" in picker.options[1] and " UTC · " in picker.options[1]
    labels = metrics(at)
    assert labels["Patients"] == "3,000"
    assert [d.label for d in at.get("download_button")] == ["Download as ZIP"]
    assert second.run_id in at.expander[-1].markdown[0].value  # the id and folder are details


def test_a_cancelled_run_says_how_many_patients_were_generated(data_dir):
    registry = resources.job_registry()
    job = registry.submit(load_scenario("default").with_overrides(patients=5_000_000, seed=1))
    while job.patients_done == 0 and job.active:
        job.done_event.wait(0.05)
    registry.cancel()
    registry.wait(job.run_id, 30)
    generated = job.view()["manifest"]["patients_generated"]
    assert generated > 0
    at = open_page(PAGE)
    row = table(at).iloc[0]
    assert row["Status"] == "Cancelled"
    assert row["Patients"] == f"{generated:,} of 5,000,000"  # not "0"
    assert metrics(at)["Patients"] == f"{generated:,}"
    assert f"Cancelled after {generated:,} of 5,000,000 patients" in at.warning[0].value
    assert not at.get("download_button")


def test_delete_needs_confirmation_and_removes_the_run(data_dir):
    keep, gone = run(2_000, seed=1), run(2_000, seed=2)
    at = open_page(PAGE)
    by_label(at.selectbox, "Run").set_value(gone.run_id).run()
    delete = by_label(at.button, "Delete run")
    assert delete.disabled  # nothing happens without ticking the confirmation
    by_label(at.checkbox, CONFIRM).check().run()
    by_label(at.button, "Delete run").click().run()
    assert not at.exception
    assert "Deleted: " in at.success[0].value and "2,000 patients" in at.success[0].value
    assert plain("seed 2") in at.success[0].value  # two runs alike but for their seed are told apart by it
    assert not gone.out_dir.exists() and keep.out_dir.exists()
    assert list(table(at)["Run id"]) == [keep.run_id]
    assert not by_label(at.checkbox, CONFIRM).value  # confirmation reset


def test_a_running_run_is_not_offered_for_deletion(data_dir):
    registry = resources.job_registry()
    job = registry.submit(load_scenario("default").with_overrides(patients=5_000_000, seed=1))
    at = open_page(PAGE)
    assert table(at).iloc[0]["Status"] in ("Waiting to start", "Running")
    assert by_label(at.checkbox, CONFIRM).disabled and by_label(at.button, "Delete run").disabled
    assert "cannot be deleted now: it is still being written" in " ".join(c.value for c in at.caption)
    registry.cancel()
    registry.wait(job.run_id, 30)


def test_a_folder_still_changing_without_a_manifest_is_not_offered_for_deletion(data_dir):
    """A command-line run writing into the runs folder has no manifest yet: while its files change, it stays."""
    folder = data_dir / "runs" / "20260101T000000Z-0badf00d"
    folder.mkdir(parents=True)
    (folder / ".patients.parquet.partial-1234").write_bytes(b"x" * 100)
    at = open_page(PAGE)
    assert table(at).iloc[0]["Status"] == "Interrupted"
    assert by_label(at.checkbox, CONFIRM).disabled
    assert "a process may still be writing it" in " ".join(c.value for c in at.caption)
    old = time.time() - 3600
    for p in (folder, *folder.iterdir()):
        os.utime(p, (old, old))
    resources.run_table_rows.clear()
    at.run()
    assert not by_label(at.checkbox, CONFIRM).disabled  # quiet for an hour: it may go


def test_a_run_saved_to_the_database_shows_its_counts_and_is_deleted_from_it(data_dir):
    from core import db
    saved = run(2_000, seed=3, persist=True)
    at = open_page(PAGE)
    row = table(at).iloc[0]
    assert row["Run id"] == saved.run_id and row["Database"] == "saved"
    stored = next(e for e in at.expander if e.label == "Stored in the database")
    assert {m.label for m in stored.metric} >= {"Deaths", "Returned to duty"}
    assert "Patients" in set(stored.dataframe[0].value["table"])
    by_label(at.checkbox, CONFIRM).check().run()
    by_label(at.button, "Delete run").click().run()
    assert db.get_run(resources.db_engine(), saved.run_id) is None and not saved.out_dir.exists()
    assert "No runs yet" in at.info[0].value


def test_a_run_whose_folder_is_elsewhere_is_not_offered_for_deletion(data_dir, tmp_path_factory):
    """A command-line run saved to the database (--db) lists its own folder: the dashboard never removes it."""
    from core import db
    from core.run import generate_run
    elsewhere = tmp_path_factory.mktemp("cli") / "run"
    generate_run(load_scenario("default").with_overrides(patients=1_000), elsewhere, engine=resources.db_engine(),
                 persist=False)
    at = open_page(PAGE)
    assert by_label(at.checkbox, CONFIRM).disabled
    assert "not in the dashboard's runs folder" in " ".join(c.value for c in at.caption)
    assert elsewhere.is_dir() and db.get_run(resources.db_engine(), table(at).iloc[0]["Run id"]) is not None
