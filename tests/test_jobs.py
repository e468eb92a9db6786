"""The job registry runs real generations in a worker thread: progress, ETA, samples, cancel, failure, delete."""
from __future__ import annotations

import hashlib
import json
import time
import zipfile

import pytest

from core.exports import zip_run
from core.jobs import JobBusy, JobRegistry
from core.runs import RunInProgress, new_run_id
from core.scenario import load_scenario

DATA_SUFFIXES = (".parquet", ".csv", ".ndjson", ".json", ".gz", ".enc")


@pytest.fixture
def registry(tmp_path):
    reg = JobRegistry(tmp_path / "runs", cache_hit_rate=lambda: 0.93, sample_interval=0.25)
    yield reg
    reg.cancel()
    for job in reg.jobs():
        job.done_event.wait(30)


def scenario(patients: int, seed: int = 3):
    return load_scenario("default").with_overrides(patients=patients, seed=seed)


def wait_for(predicate, timeout: float = 60.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def test_a_run_completes_into_its_folder_with_a_summary(registry):
    job = registry.submit(scenario(2_000), fmt="csv", compress=True)
    assert job.out_dir == registry.runs_root / job.run_id
    view = registry.wait(job.run_id, 120).view()
    assert view["status"] == "completed" and view["error"] is None
    assert view["patients_done"] == view["patients_total"] == 2_000
    manifest = json.loads((job.out_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["run_id"] == job.run_id and manifest["patients"] == 2_000
    assert {f["name"] for f in manifest["files"]} >= {"patients.csv.gz", "events.csv.gz", "conditions.csv.gz",
                                                      "vitals.csv.gz"}
    assert view["manifest"]["files"] == manifest["files"]
    history = registry.run_history()
    assert [r["run_id"] for r in history] == [job.run_id]
    row = history[0]
    assert (row["status"], row["patients"], row["seed"], row["format"], row["compressed"]) == (
        "completed", 2_000, 3, "csv", True)
    assert row["bytes"] == sum(f["bytes"] for f in manifest["files"]) > 0


def test_progress_eta_and_per_interval_samples_while_running(registry):
    job = registry.submit(scenario(400_000))
    wait_for(lambda: job.view()["patients_done"] > 0 and len(job.view()["samples"]) >= 2)
    live = job.view()
    assert live["status"] == "running"
    assert 0 < live["fraction"] < 1 and live["patients_per_s"] > 0 and live["eta_s"] > 0
    sample = live["samples"][-1]
    assert sample["rss_mb"] > 50 and sample["peak_rss_mb"] >= sample["rss_mb"]
    assert sample["cache_hit_rate"] == 0.93 and sample["pool_checked_out"] is None  # no database here
    view = registry.wait(job.run_id, 300).view()
    assert view["status"] == "completed" and view["eta_s"] is None
    samples = view["samples"]
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert samples[-1]["patients_done"] == 400_000
    assert max(s["patients_per_s"] for s in samples) > 1_000
    assert max(s["cpu_pct"] for s in samples) > 20  # generating keeps this process busy
    # the run process's own peak, as the operating system counted it (at least what the samples saw)
    assert view["peak_rss_mb"] == view["manifest"]["peak_rss_mb"] >= max(s["peak_rss_mb"] for s in samples) - 1


def test_one_run_at_a_time_and_cancel_leaves_no_data_file(registry):
    job = registry.submit(scenario(5_000_000))
    wait_for(lambda: job.patients_done > 0)
    with pytest.raises(JobBusy, match="already running"):
        registry.submit(scenario(2_000))
    assert registry.active() is job and registry.current() is job
    t0 = time.monotonic()
    assert registry.cancel() is True
    view = registry.wait(job.run_id, 30).view()
    assert time.monotonic() - t0 < 10
    assert view["status"] == "cancelled" and view["patients_done"] < 5_000_000
    names = [p.name for p in job.out_dir.iterdir()]
    assert names == ["manifest.json"], names  # temp files removed, nothing under a final data name
    assert json.loads((job.out_dir / "manifest.json").read_text())["status"] == "cancelled"
    assert registry.cancel() is False  # nothing left to cancel
    # the registry is free again
    again = registry.submit(scenario(2_000))
    assert registry.wait(again.run_id, 120).view()["status"] == "completed"


def test_a_failing_run_reports_its_reason_and_frees_the_registry(registry):
    run_id = new_run_id()
    (registry.runs_root / run_id).write_text("not a folder")  # the run's folder name is taken by a file
    job = registry.submit(scenario(2_000), run_id=run_id)
    view = registry.wait(run_id, 60).view()
    assert view["status"] == "failed"
    assert "a file of that name exists" in view["error"] and run_id in view["error"]
    assert registry.active() is None
    assert registry.wait(registry.submit(scenario(2_000)).run_id, 120).view()["status"] == "completed"
    assert job.finished_at is not None


def test_bad_options_are_refused_before_anything_starts(registry):
    with pytest.raises(ValueError, match="format 'xlsx' is not allowed.*parquet"):
        registry.submit(scenario(2_000), fmt="xlsx")
    with pytest.raises(ValueError, match="non-empty password"):
        registry.submit(scenario(2_000), password="")
    with pytest.raises(ValueError, match="chunk size 0"):
        registry.submit(scenario(2_000), chunk_size=0)
    with pytest.raises(ValueError, match="run id '../elsewhere' is not one"):  # it names the run's folder
        registry.submit(scenario(2_000), run_id="../elsewhere")
    assert registry.jobs() == [] and list(registry.runs_root.iterdir()) == []


def test_encrypted_run_keeps_no_password_on_the_job(registry):
    job = registry.submit(scenario(2_000), password="s3cret-pass")
    view = registry.wait(job.run_id, 120).view()
    assert view["status"] == "completed" and view["encrypted"] is True
    assert all(f["name"].endswith(".enc") for f in view["manifest"]["files"])  # the reports too
    assert "s3cret-pass" not in repr(job) and "s3cret-pass" not in json.dumps(view, default=str)


def test_delete_run_removes_the_folder_and_refuses_a_running_one(registry):
    done = registry.submit(scenario(2_000))
    registry.wait(done.run_id, 120)
    running = registry.submit(scenario(5_000_000))
    with pytest.raises(RunInProgress, match="still being written.*cancel it first"):
        registry.delete_run(running.run_id)
    registry.cancel()
    registry.wait(running.run_id, 30)
    version = registry.version
    registry.delete_run(done.run_id)
    assert not done.out_dir.exists() and registry.version > version
    assert [r["run_id"] for r in registry.run_history()] == [running.run_id]
    with pytest.raises(ValueError, match="no run"):
        registry.delete_run(done.run_id)
    with pytest.raises(ValueError, match="no run"):
        registry.delete_run("../../etc")


def test_a_cli_run_copied_into_the_runs_folder_is_listed_and_deleted_by_its_folder(registry, tmp_path):
    from core.run import generate_run
    folder = registry.runs_root / "exercise-demo"  # not named after its run id
    manifest = generate_run(scenario(1_000), folder)
    [row] = registry.run_history()
    assert row["run_id"] == manifest["run_id"] and row["out_dir"] == str(folder) and row["patients"] == 1_000
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ValueError, match="no run"):  # a folder outside the runs folder is never removed
        registry.delete_run(manifest["run_id"], outside)
    assert outside.exists() and folder.exists()
    registry.delete_run(manifest["run_id"], row["out_dir"])
    assert not folder.exists() and registry.run_history() == []


def test_folder_without_manifest_is_listed_as_interrupted(registry):
    (registry.runs_root / new_run_id()).mkdir()
    [row] = registry.run_history()
    assert row["status"] == "interrupted" and row["on_disk"]


def test_zip_of_a_run_holds_every_file_unchanged(registry, tmp_path):
    job = registry.submit(scenario(2_000), fmt="ndjson")
    manifest = registry.wait(job.run_id, 120).view()["manifest"]
    path = zip_run(job.out_dir, tmp_path / "exports")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert names == {f"{job.run_id}/{f['name']}" for f in manifest["files"]} | {f"{job.run_id}/manifest.json"}
        for f in manifest["files"]:
            assert hashlib.sha256(zf.read(f"{job.run_id}/{f['name']}")).hexdigest() == f["sha256"]
        assert zf.getinfo(f"{job.run_id}/patients.ndjson").compress_type == zipfile.ZIP_DEFLATED
    mtime = path.stat().st_mtime_ns
    assert zip_run(job.out_dir, tmp_path / "exports").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [path.name]  # no temp file left


# --- with the database (core.db: the embedded SQLite file, or a PostgreSQL URL that is down) -------------------
DOWN_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/test"


@pytest.fixture
def sqlite_engine(tmp_path):
    from core import db
    return db.get_engine(f"sqlite:///{tmp_path / 'mpg.sqlite'}")


def test_a_run_is_registered_persisted_and_its_samples_stored(tmp_path, sqlite_engine):
    from core import db
    registry = JobRegistry(tmp_path / "runs", engine=lambda: sqlite_engine, sample_interval=0.1)
    job = registry.submit(scenario(20_000, seed=8), persist=True, scenario_name="Baltic", scenario_version=2)
    view = registry.wait(job.run_id, 300).view()
    assert view["status"] == "completed" and view["db_note"] is None
    row = db.get_run(sqlite_engine, job.run_id)
    assert (row["status"], row["persisted"], row["patients"], row["scenario_name"], row["scenario_version"]) == (
        "completed", True, 20_000, "Baltic", 2)
    assert db.run_summary(sqlite_engine, job.run_id)["patients"] == 20_000
    stored = db.run_metrics(sqlite_engine, job.run_id)
    assert len(stored) == len(view["samples"]) >= 2
    assert stored[-1]["patients_done"] == 20_000
    assert all(s["pool_checked_out"] is not None for s in view["samples"])  # read from core.db.pool_status
    [listed] = registry.run_history()
    assert (listed["run_id"], listed["persisted"], listed["scenario_version"], listed["on_disk"]) == (
        job.run_id, True, 2, True)
    assert listed["bytes"] > 0
    registry.delete_run(job.run_id)
    assert db.get_run(sqlite_engine, job.run_id) is None and not job.out_dir.exists()
    assert registry.run_history() == []


def test_a_database_that_is_down_leaves_the_files_complete(tmp_path):
    from core import db

    def engine():
        return db.get_engine(DOWN_URL)

    registry = JobRegistry(tmp_path / "runs", engine=engine)
    job = registry.submit(scenario(2_000), persist=True)
    view = registry.wait(job.run_id, 120).view()
    assert view["status"] == "completed"
    assert "database unreachable at postgresql://postgres@127.0.0.1:1/test" in view["db_note"]
    assert "written to files only" in view["db_note"]
    assert (job.out_dir / "patients.parquet").is_file()
    assert [r["run_id"] for r in registry.run_history()] == [job.run_id]  # the folders are the history


# --- a run in its own process: its memory is its own, it ends with its server, its times have one type -----------

def test_each_run_runs_in_a_process_of_its_own_whose_peak_memory_is_the_runs_own(registry):
    import os

    import psutil
    ballast = b"\x01" * (600 << 20)  # the server holds 600 MB of its own: none of it is the run's
    job = registry.submit(scenario(200_000))
    wait_for(lambda: job.view()["status"] == "running" and job.view()["pid"])
    pid = job.view()["pid"]
    assert pid != os.getpid() and psutil.Process(pid).ppid() == os.getpid()
    view = registry.wait(job.run_id, 300).view()
    assert view["status"] == "completed" and view["pid"] is None
    manifest = view["manifest"]
    assert 50 < manifest["peak_rss_mb"] < 600 and view["peak_rss_mb"] == manifest["peak_rss_mb"]
    assert all(s["rss_mb"] < 600 for s in view["samples"])
    assert psutil.Process().memory_info().rss / 2**20 > 600 and len(ballast)


def test_a_run_killed_with_its_server_is_marked_so_and_a_new_server_lists_every_run(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import REPO
    root = tmp_path / "runs"
    server = (
        "import os, signal, sys, time\n"
        "from core.jobs import JobRegistry\n"
        "from core.scenario import load_scenario\n"
        f"registry = JobRegistry({str(root)!r})\n"
        "s = load_scenario('default')\n"
        "done = registry.submit(s.with_overrides(patients=1_000, seed=1))\n"
        "registry.wait(done.run_id, 120)\n"
        "job = registry.submit(s.with_overrides(patients=5_000_000, seed=2))\n"
        "while job.view()['patients_done'] == 0: time.sleep(0.05)\n"
        "print(done.run_id, job.run_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", server], cwd=REPO, env={**__import__("os").environ,
                          "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    finished, killed = proc.stdout.split()
    wait_for(lambda: (root / killed / "manifest.json").is_file(), timeout=60)
    manifest = json.loads((root / killed / "manifest.json").read_text())
    assert manifest["status"] == "cancelled" and manifest["error"] == "the dashboard server stopped during the run"
    assert [p.name for p in (root / killed).iterdir()] == ["manifest.json"]
    restarted = JobRegistry(root)
    assert {r["run_id"]: r["status"] for r in restarted.run_history()} == {finished: "completed", killed: "cancelled"}


def test_run_times_have_one_type_whether_from_a_folder_or_the_database(tmp_path, sqlite_engine):
    import pyarrow as pa

    from core.run import generate_run
    registry = JobRegistry(tmp_path / "runs", engine=lambda: sqlite_engine)
    registry.wait(registry.submit(scenario(1_000)).run_id, 120)
    generate_run(scenario(500), tmp_path / "elsewhere" / "cli-run", engine=sqlite_engine)  # in the database only
    history = registry.run_history()
    assert len(history) == 2 and {r["on_disk"] for r in history} == {True, False}
    for key in ("created_at", "finished_at"):
        assert {type(r[key]) for r in history} == {str}
        pa.array([r[key] for r in history])  # what st.dataframe does: one type, no ArrowTypeError
    assert all(r["created_at"].endswith("Z") for r in history)


def test_a_run_registered_from_another_folder_is_only_unregistered(tmp_path, sqlite_engine):
    from core import db
    from core.run import generate_run
    registry = JobRegistry(tmp_path / "runs", engine=lambda: sqlite_engine)
    outside = tmp_path / "exercise" / "cli-run"
    manifest = generate_run(scenario(500), outside, engine=sqlite_engine)
    [row] = registry.run_history()
    assert registry.deletable(row) is None
    done = registry.delete_run(manifest["run_id"], row["out_dir"])
    assert done == {"folder_removed": False, "unregistered": True, "folder": str(outside)}
    assert (outside / "manifest.json").is_file() and (outside / "patients.parquet").is_file()
    assert db.get_run(sqlite_engine, manifest["run_id"]) is None and registry.run_history() == []


def test_a_cli_run_writing_into_the_runs_folder_is_running_and_never_deleted(registry):
    import os
    import signal
    import subprocess
    import sys

    from conftest import REPO
    folder = registry.runs_root / "cli-run"
    proc = subprocess.Popen([sys.executable, "-m", "core", "generate", "--patients", "5000000", "--out", str(folder)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: folder.is_dir() and any(".partial-" in p.name for p in folder.iterdir()))
        [row] = registry.run_history()
        assert row["status"] == "running" and "still being written" in registry.deletable(row)
        with pytest.raises(RunInProgress):
            registry.delete_run(row["run_id"], row["out_dir"])
        assert folder.is_dir() and proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    [row] = registry.run_history()
    assert row["status"] == "cancelled" and registry.deletable(row) is None
    registry.delete_run(row["run_id"], row["out_dir"])
    assert not folder.exists()
