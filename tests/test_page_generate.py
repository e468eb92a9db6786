"""Generate page (AppTest): real runs through the real job registry, second tab, cancel, failure, bad input, DB down."""
from __future__ import annotations

import dataclasses
import json
import time

import resources
from conftest import reset_dashboard
from core import exports
from core.exports import estimated_bytes
from core.labels import plain
from core.runs import new_run_id
from core.scenario import load_scenario
from pages import by_label, metrics, open_page, texts

PAGE = "views/generate.py"
DOWN_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/test"


def open_generate(session: dict | None = None):
    """The Generate page; ``session``: what the Scenario page leaves in the session state."""
    return open_page(PAGE, session)


def wait_finished(timeout: float = 120):
    job = resources.job_registry().current()
    assert job is not None
    return resources.job_registry().wait(job.run_id, timeout)


def wait_running(min_done: int = 1, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = resources.job_registry().active()
        if job is not None and job.patients_done >= min_done:
            return job
        time.sleep(0.05)
    raise AssertionError("no running job")


def test_default_scenario_is_offered_and_generate_is_enabled(data_dir):
    at = open_generate()
    default = load_scenario("default")
    assert by_label(at.number_input, "Patients").value == default.patients
    assert by_label(at.selectbox, "Format").value == "parquet"
    assert not by_label(at.button, "Generate").disabled
    assert plain(default.name) in texts(at.caption)
    assert "No run yet" in texts(at.info)


def test_generate_2000_patients_then_the_page_says_completed_with_downloads(data_dir):
    at = open_generate()
    by_label(at.number_input, "Patients").set_value(2_000)
    by_label(at.selectbox, "Format").set_value("csv")
    by_label(at.toggle, "Compress (gzip)").set_value(True)
    by_label(at.button, "Generate").click().run()
    assert not at.exception
    job = wait_finished()
    at.run()
    assert not at.exception
    assert "Completed: 2,000 patients" in texts(at.success)
    assert "Saved to the database" not in texts(at.success)  # not asked for
    labels = metrics(at)
    assert labels["Patients"] == "2,000"
    manifest = json.loads((data_dir / "runs" / job.run_id / "manifest.json").read_text())
    assert labels["Peak memory of the run"] == f"{manifest['peak_rss_mb']:,.0f} MB"  # the manifest's figure
    assert plain("2,000 patients · CSV + gzip") in texts(at.markdown)  # the run's label
    assert job.run_id in texts(at.expander[0].markdown)  # the id is a detail
    downloads = [d.label for d in at.get("download_button")]
    for table in ("patients", "events", "conditions", "vitals"):
        assert any(label.startswith(f"{table}.csv.gz (") for label in downloads), downloads
    assert any(label.startswith("All as ZIP") for label in downloads)
    manifest = json.loads((data_dir / "runs" / job.run_id / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["format"] == "csv" and manifest["compressed"] is True
    assert not by_label(at.button, "Generate").disabled  # free for the next run


def test_a_second_tab_shows_the_running_job_and_can_cancel_it(data_dir):
    first = open_generate()
    by_label(first.number_input, "Patients").set_value(5_000_000)
    by_label(first.button, "Generate").click().run()
    assert texts(first.subheader) in ("Waiting to start", "Running")
    assert by_label(first.button, "Generate").disabled  # one run at a time
    job = wait_running()
    second = open_generate()  # a reload or another tab: a new session, the same job
    assert "Running" in texts(second.subheader)
    assert plain("5,000,000 patients · Parquet · running") in texts(second.markdown)
    progress = second.get("progress")[0].proto
    assert "of 5,000,000 patients" in progress.text and "time left" in progress.text
    deadline = time.monotonic() + 30
    while len(job.view()["samples"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    second.run()  # what the page's one-second poll draws
    specs = [json.loads(c.proto.spec) for c in second.get("vega_lite_chart")]
    assert [s["title"]["text"] for s in specs][:1] == ["Patients generated"]  # the run's own progress first
    charts = [json.dumps(s) for s in specs]
    for series in ("patients done", "patients per second", "peak memory", "connections in use", "cache hit rate"):
        assert any(series in spec for spec in charts), series
    assert all(s["height"] >= 150 and s["autosize"]["type"] == "fit-x" for s in specs)  # the plot area's own height
    by_label(second.button, "Cancel").click().run()
    view = resources.job_registry().wait(job.run_id, 30).view()
    assert view["status"] == "cancelled"
    for at in (first, second):
        at.run()
        assert not at.exception
        assert "Cancelled after" in texts(at.warning) and "of 5,000,000 patients" in texts(at.warning)
        assert not by_label(at.button, "Generate").disabled
    assert [p.name for p in (data_dir / "runs" / job.run_id).iterdir()] == ["manifest.json"]


def test_a_failed_run_shows_its_reason(data_dir):
    registry = resources.job_registry()
    run_id = new_run_id()
    (registry.runs_root / run_id).write_text("a file where the run folder should go")
    registry.wait(registry.submit(load_scenario("default").with_overrides(patients=2_000), run_id=run_id).run_id, 60)
    at = open_generate()
    message = texts(at.error)
    assert "The run failed:" in message and "a file of that name exists" in message
    assert "FileExistsError" not in message  # the class name is a detail
    assert run_id in texts(at.expander[0].markdown)


def test_scenario_error_from_the_scenario_page_blocks_generate(data_dir):
    at = open_generate({"scenario_error": "fronts[0].casualty_share: -1 is not allowed (0 to 1)"})
    assert plain("fronts[0].casualty_share: -1 is not allowed") in texts(at.error)
    assert by_label(at.button, "Generate").disabled


def test_scenario_from_the_scenario_page_is_used(data_dir):
    chosen = load_scenario("peacekeeping").with_overrides(patients=2_500, seed=99)
    at = open_generate({"scenario": chosen, "scenario_version": None})
    assert by_label(at.number_input, "Patients").value == 2_500
    assert plain(chosen.name) in texts(at.caption) and "seed 99" in texts(at.caption)
    by_label(at.button, "Generate").click().run()
    view = wait_finished().view()
    assert (view["status"], view["seed"], view["scenario_name"], view["scenario_version"], view["patients_done"]) == (
        "completed", 99, chosen.name, None, 2_500)


def test_a_saved_scenario_runs_under_its_saved_name_and_version(data_dir):
    chosen = load_scenario("peacekeeping").with_overrides(patients=2_000, seed=4)
    at = open_generate({"scenario": chosen, "scenario_version": 3, "sc_saved": ("Blue helmets", 3, chosen.sha256())})
    assert f"saved as {plain('Blue helmets')}, version 3" in texts(at.caption)
    by_label(at.button, "Generate").click().run()
    view = wait_finished().view()
    assert (view["scenario_name"], view["scenario_version"]) == ("Blue helmets", 3)


def test_a_run_bigger_than_the_free_disk_is_refused_next_to_patients(data_dir, monkeypatch):
    free = 10 * 2**30  # a disk with 10 GB free, whatever this machine has
    monkeypatch.setattr(exports, "free_bytes", lambda folder: free)
    patients = free // estimated_bytes(1, "fhir", False) * 2  # twice what fits as uncompressed FHIR
    at = open_generate()
    by_label(at.number_input, "Patients").set_value(int(patients))
    by_label(at.selectbox, "Format").set_value("fhir").run()
    assert "but only 10.0 GB is free" in texts(at.error)
    assert by_label(at.button, "Generate").disabled
    by_label(at.selectbox, "Format").set_value("parquet").run()  # ~170 times smaller: fits
    assert not at.error and not by_label(at.button, "Generate").disabled


def test_encryption_needs_matching_passwords_and_the_password_is_not_kept(data_dir):
    at = open_generate()
    by_label(at.number_input, "Patients").set_value(2_000)
    by_label(at.toggle, "Encrypt (AES-256-GCM)").set_value(True).run()
    assert "Encryption needs a password" in texts(at.error)
    assert by_label(at.button, "Generate").disabled
    by_label(at.text_input, "Password").input("correct horse")
    by_label(at.text_input, "Repeat password").input("correct hose").run()
    assert "The two passwords differ" in texts(at.error)
    assert by_label(at.button, "Generate").disabled
    by_label(at.text_input, "Repeat password").input("correct horse").run()
    assert not at.error and not by_label(at.button, "Generate").disabled
    by_label(at.button, "Generate").click().run()
    view = wait_finished().view()
    assert view["status"] == "completed" and view["encrypted"]
    assert at.session_state["gen_password"] == "" and at.session_state["gen_password_repeat"] == ""
    names = [f["name"] for f in view["manifest"]["files"]]
    assert "patients.parquet.enc" in names


def test_database_down_shows_a_banner_and_files_are_still_generated(data_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", DOWN_URL)
    reset_dashboard()
    at = open_generate()
    banner = texts(at.warning)
    assert "Database unavailable" in banner and "files only" in banner
    assert "database unreachable at postgresql://postgres@127.0.0.1:1/test" in banner
    assert by_label(at.toggle, "Save to database").disabled
    by_label(at.number_input, "Patients").set_value(2_000)
    by_label(at.button, "Generate").click().run()
    view = wait_finished().view()
    assert view["status"] == "completed"
    assert (data_dir / "runs" / view["run_id"] / "patients.parquet").is_file()
    assert view["db_note"] and "database" in view["db_note"]


def test_save_to_database_loads_the_run_and_refuses_encryption(data_dir):
    from core import db
    at = open_generate()
    assert not texts(at.warning)  # the embedded database answers
    by_label(at.number_input, "Patients").set_value(2_000)
    by_label(at.toggle, "Save to database").set_value(True)
    by_label(at.toggle, "Encrypt (AES-256-GCM)").set_value(True).run()
    by_label(at.text_input, "Password").input("pw")
    by_label(at.text_input, "Repeat password").input("pw").run()
    assert "The database stores the tables unencrypted" in texts(at.error)
    assert by_label(at.button, "Generate").disabled
    by_label(at.toggle, "Encrypt (AES-256-GCM)").set_value(False).run()
    assert not at.error
    by_label(at.button, "Generate").click().run()
    view = wait_finished().view()
    assert view["status"] == "completed" and view["persist"] and view["db_note"] is None
    row = db.get_run(resources.db_engine(), view["run_id"])
    assert row["status"] == "completed" and row["persisted"] is True
    assert db.run_summary(resources.db_engine(), view["run_id"])["patients"] == 2_000
    at.run()
    assert "Saved to the database too: all 2,000 patients" in texts(at.success)  # said on Generate at the end


def test_an_invalid_patients_value_blocks_generate_with_the_reason_next_to_it(data_dir):
    at = open_generate()
    for typed, reason in ((0, "0 cannot be generated"), (150_000_000, "150,000,000 cannot be generated"),
                          (None, "Enter a number of patients")):
        by_label(at.number_input, "Patients").set_value(typed).run()
        assert reason in texts(at.error)
        assert by_label(at.button, "Generate").disabled
    by_label(at.number_input, "Patients").set_value(5_000).run()
    assert not at.error and not by_label(at.button, "Generate").disabled
    assert resources.job_registry().current() is None


def test_a_scenario_name_is_shown_as_text_not_markdown(data_dir):
    name = "**Bold** ![x](http://127.0.0.1:9/x.png) :red[red] $x$"
    chosen = load_scenario("default").with_overrides(patients=2_000)
    chosen = dataclasses.replace(chosen, name=name)
    at = open_generate({"scenario": chosen, "scenario_version": None})
    caption = texts(at.caption)
    assert plain(name) in caption and "![" not in caption and "**Bold**" not in caption
