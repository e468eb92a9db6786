"""core.runs: the manifest, listing run folders, run ids, atomic writes and the one rule for deleting a run."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from core import runs


def manifest(run_id: str, started_at: str, status: str = "completed", **more) -> dict:
    files = [{"name": "patients.parquet", "table": "patients", "rows": 10, "bytes": 300},
             {"name": "events.parquet", "table": "events", "rows": 40, "bytes": 700}]
    return {"run_id": run_id, "status": status, "started_at": started_at, "patients": 10, "seed": 1,
            "format": "parquet", "compressed": False, "encrypted": False, "scenario": {"name": "Baltic"},
            "files": files, **more}


def make_run(folder, run_id: str, started_at: str = "2026-01-01T00:00:00Z", **more):
    folder.mkdir(parents=True)
    (folder / "patients.parquet").write_bytes(b"x" * 300)
    runs.write_manifest(folder, manifest(run_id, started_at, **more))
    return folder


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- manifest ----------------------------------------------------------------------------------------------------

def test_manifest_round_trip_as_indented_utf8_json(tmp_path):
    m = manifest("20260101T000000Z-00000001", "2026-01-01T00:00:00Z", note="Kraków, Ø")
    runs.write_manifest(tmp_path, m)
    assert runs.read_manifest(tmp_path) == m
    assert (tmp_path / "manifest.json").read_bytes() == json.dumps(m, indent=2, ensure_ascii=False).encode("utf-8")
    assert names(tmp_path) == ["manifest.json"]  # no temporary file left


def test_a_missing_or_unreadable_manifest_reads_as_none(tmp_path):
    assert runs.read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text('{"run_id": "cut sh')
    assert runs.read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text("[1, 2]")  # JSON, but not a manifest
    assert runs.read_manifest(tmp_path) is None


def test_the_stamp_changes_when_the_manifest_is_rewritten(tmp_path):
    assert runs.run_stamp(tmp_path) == "missing"
    runs.write_manifest(tmp_path, {"run_id": "a", "status": "running"})
    first = runs.run_stamp(tmp_path)
    time.sleep(0.01)
    runs.write_manifest(tmp_path, {"run_id": "a", "status": "completed"})
    assert runs.run_stamp(tmp_path) != first


def test_why_a_run_cannot_be_explored():
    ok = manifest("a", "2026-01-01T00:00:00Z")
    assert runs.why_not_explorable(ok) is None
    assert "cancelled" in runs.why_not_explorable(dict(ok, status="cancelled"))
    assert "python -m core decrypt" in runs.why_not_explorable(dict(ok, encrypted=True))
    assert runs.why_not_explorable(dict(ok, files=ok["files"][:1])) == "the manifest lists no events file"


# --- listing -----------------------------------------------------------------------------------------------------

def test_runs_are_listed_newest_first_with_interrupted_folders_and_folders_not_named_after_their_run(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "20260101T000000Z-00000001", "20260101T000000Z-00000001", "2026-01-01T00:00:00Z")
    make_run(root / "exercise-demo", "20260301T000000Z-00000003", "2026-03-01T00:00:00Z")  # a CLI run copied in
    make_run(root / "20260201T000000Z-00000002", "20260201T000000Z-00000002", "2026-02-01T00:00:00Z",
             status="cancelled")
    (root / "20260401T000000Z-00000004").mkdir()  # the server stopped before the manifest was written
    (root / "20260401T000000Z-00000004" / ".patients.parquet.partial-1a2b3c4d").write_bytes(b"x" * 123)
    (root / "notes.txt").write_text("a file, not a run folder")

    rows = runs.list_runs(root)
    assert [r["run_id"] for r in rows] == ["20260401T000000Z-00000004", "20260301T000000Z-00000003",
                                           "20260201T000000Z-00000002", "20260101T000000Z-00000001"]
    interrupted, demo, cancelled, first = rows
    assert (interrupted["status"], interrupted["on_disk"], interrupted["bytes"], interrupted["files"]) == (
        "interrupted", True, 123, 0)
    assert "interrupted" in interrupted["reason"] and interrupted["stamp"] == "missing"
    assert demo["out_dir"] == str(root / "exercise-demo") and demo["reason"] is None
    assert (demo["scenario_name"], demo["patients"], demo["bytes"], demo["files"]) == ("Baltic", 10, 1000, 2)
    assert demo["stamp"] == runs.run_stamp(root / "exercise-demo")
    assert "cancelled" in cancelled["reason"]
    assert first["created_at"] == "2026-01-01T00:00:00Z"
    # what Explore lists: only folders with a manifest
    assert [r["run_id"] for r in runs.list_runs(root, interrupted=False)] == [r["run_id"] for r in rows[1:]]


def test_a_root_may_be_a_run_folder_and_a_folder_reached_twice_is_listed_once(tmp_path):
    one = make_run(tmp_path / "elsewhere" / "one", "20260101T000000Z-0000000a")
    assert [r["out_dir"] for r in runs.list_runs(one)] == [str(one)]
    assert len(runs.list_runs(tmp_path / "elsewhere", one, tmp_path / "missing")) == 1


def test_equal_start_times_list_the_folder_written_last_first(tmp_path):
    make_run(tmp_path / "a", "20260101T000000Z-0000000a")
    time.sleep(0.01)
    make_run(tmp_path / "b", "20260101T000000Z-0000000b")
    assert [r["run_id"] for r in runs.list_runs(tmp_path)] == ["20260101T000000Z-0000000b",
                                                               "20260101T000000Z-0000000a"]


def test_database_rows_and_folder_rows_sort_together():
    rows = [{"run_id": "text", "created_at": "2026-01-02T00:00:00Z"},
            {"run_id": "naive", "created_at": datetime(2026, 1, 3)},
            {"run_id": "aware", "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc)},
            {"run_id": "none", "created_at": None}]
    assert [r["run_id"] for r in runs.sort_newest_first(rows)] == ["naive", "text", "aware", "none"]


# --- run ids -----------------------------------------------------------------------------------------------------

def test_run_ids_are_unique_and_start_with_the_utc_second():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    ids = [runs.new_run_id() for _ in range(200)]
    after = datetime.now(timezone.utc)
    assert len(set(ids)) == 200 and all(runs.RUN_ID.match(i) for i in ids)
    started = datetime.strptime(ids[0][:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= started <= after
    assert not runs.RUN_ID.match("../20260101T000000Z-00000001") and not runs.RUN_ID.match("exercise-demo")


# --- atomic writes -----------------------------------------------------------------------------------------------

def test_an_atomic_write_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "report.json"
    with runs.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".report.json.partial-")
        tmp.write_text("first")
        assert not target.exists()  # nothing under the final name before the block ends
    assert target.read_text() == "first"

    with pytest.raises(RuntimeError, match="disk full"):
        with runs.atomic_path(target) as tmp:
            tmp.write_text("half of the sec")
            raise RuntimeError("disk full")
    assert target.read_text() == "first"  # the earlier file is untouched
    assert names(tmp_path) == ["report.json"]  # and no partial file is left


def test_write_json_returns_the_bytes_it_wrote(tmp_path):
    payload = runs.write_json(tmp_path / "calibration.json", {"b": 1, "a": "é"})
    assert payload == (tmp_path / "calibration.json").read_bytes() == '{\n  "b": 1,\n  "a": "é"\n}'.encode()


# --- deleting ----------------------------------------------------------------------------------------------------

def ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_whether_a_writing_process_is_gone():
    host = socket.gethostname()
    assert runs.process_gone(host, ended_pid())
    assert not runs.process_gone(host, os.getpid())  # this process writes its own runs
    assert not runs.process_gone("another-host", ended_pid())  # cannot be checked from here
    assert not runs.process_gone(host, None)


def test_delete_removes_the_run_folder_under_the_root(tmp_path):
    root = tmp_path / "runs"
    folder = make_run(root / "exercise-demo", "20260101T000000Z-00000001")
    assert runs.delete_run_folder(folder, "20260101T000000Z-00000001", root=root)
    assert not folder.exists() and root.exists()
    assert not runs.delete_run_folder(folder, "20260101T000000Z-00000001", root=root)  # nothing left


def test_delete_refuses_a_folder_outside_the_root(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    outside = make_run(tmp_path / "elsewhere", "20260101T000000Z-00000001")
    deep = make_run(root / "a" / "b", "20260101T000000Z-00000002")
    assert not runs.delete_run_folder(outside, "20260101T000000Z-00000001", root=root)
    assert not runs.delete_run_folder(root / ".." / "elsewhere", "20260101T000000Z-00000001", root=root)
    assert not runs.delete_run_folder(deep, "20260101T000000Z-00000002", root=root)  # only directly under it
    assert runs.read_manifest(outside) and runs.read_manifest(deep)


def test_delete_refuses_a_run_still_in_progress(tmp_path):
    folder = tmp_path / "20260101T000000Z-00000001"
    folder.mkdir()
    (folder / ".patients.parquet.partial-1a2b3c4d").write_bytes(b"x")  # a sink writing
    with pytest.raises(runs.RunInProgress, match=f"process {os.getpid()} on .*cancel it first"):
        runs.delete_run_folder(folder, folder.name, writer=(socket.gethostname(), os.getpid()))
    with pytest.raises(runs.RunInProgress):  # nothing written yet (queued): still refused
        runs.delete_run_folder(tmp_path / "not-yet", "x", writer=(socket.gethostname(), os.getpid()))
    assert names(folder) == [".patients.parquet.partial-1a2b3c4d"]
    # once its process has ended the run is an interrupted one, and may go
    assert runs.delete_run_folder(folder, folder.name, writer=(socket.gethostname(), ended_pid()))
    assert not folder.exists()


def test_delete_keeps_a_folder_that_is_not_the_runs(tmp_path):
    other = make_run(tmp_path / "other", "20260101T000000Z-00000002")
    assert not runs.delete_run_folder(other, "20260101T000000Z-00000001")  # its manifest names another run
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "patients.csv").write_text("x")
    (mixed / "thesis.docx").write_text("someone's work")  # no manifest and a file no run writes
    assert not runs.delete_run_folder(mixed, "mixed")
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "patients.csv").write_text("x")
    (interrupted / ".events.csv.partial-00000000").write_text("x")
    assert runs.delete_run_folder(interrupted, "interrupted")
    assert names(tmp_path) == ["mixed", "other"]


# --- the folder lock: a run a live process writes is never deleted ------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def hold_lock(folder) -> subprocess.Popen:
    """Another live process holding the folder's lock, as a run writing it does (until its stdin closes)."""
    code = ("import sys; from core.runs import FolderLock; FolderLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_folder_a_live_process_writes_is_listed_running_and_never_deleted(tmp_path):
    root = tmp_path / "runs"
    folder = root / "20260101T000000Z-00000001"
    folder.mkdir(parents=True)
    (folder / ".patients.parquet.partial-1a2b3c4d").write_bytes(b"x")  # a sink writing, no manifest yet
    writer = hold_lock(folder)
    try:
        [row] = runs.list_runs(root)
        assert row["status"] == "running"
        assert "still being written" in runs.deletable(folder, root)
        with pytest.raises(runs.RunInProgress, match="still being written"):
            runs.delete_run_folder(folder, folder.name, root=root)
        with pytest.raises(runs.FolderInUse):
            runs.FolderLock(folder).acquire()  # and no second run may write it
        assert names(folder) == [".patients.parquet.partial-1a2b3c4d"]
    finally:
        writer.kill()  # kill -9: the kernel releases the lock
        writer.wait()
    [row] = runs.list_runs(root)
    assert row["status"] == "interrupted" and runs.deletable(folder, root) is None
    assert runs.leftovers(folder) == [folder / ".patients.parquet.partial-1a2b3c4d"]
    assert runs.delete_run_folder(folder, folder.name, root=root) and not folder.exists()


def test_only_folders_directly_inside_the_runs_folder_are_the_dashboards_to_remove(tmp_path):
    root = tmp_path / "runs"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(root / "a")
    assert runs.inside(root / "a", root) and runs.inside(tmp_path / "link", root)
    assert not runs.inside(root / "a" / "b", root) and not runs.inside(tmp_path, root)
    assert not runs.inside(root, root) and not runs.inside(root / ".." / "runs", root)


def test_a_manifest_file_name_is_a_plain_name_inside_the_run():
    for name in ("patients.parquet", "fhir/Bundle.ndjson.gz.enc", "calibration.json"):
        assert runs.unsafe_file_name(name) is None
    for name in ("../x", "/etc/passwd", "a/b/c", "fhir/../x", "other/x.csv", "", ".", "x\x00y", "a\\..\\b", None, 3):
        assert runs.unsafe_file_name(name), name


def test_the_runs_folder_and_its_parents_are_never_a_run_to_delete(tmp_path):
    root = tmp_path / "data" / "runs"
    root.mkdir(parents=True)
    for folder in (root, root.parent, tmp_path, "/"):
        assert "never a run's to delete" in runs.deletable(folder, root)
    assert runs.deletable(root / "20260101T000000Z-00000001", root) is None


def test_what_a_dead_run_left_is_its_temporary_files_never_an_operators_file(tmp_path):
    folder = tmp_path / "exercise-data"
    folder.mkdir()
    (folder / "patients.csv").write_text("the operator's own table")  # a name a run could write, but no run did
    (folder / ".events.csv.partial-00ff00ff").write_text("x")
    (folder / ".Bundle.ndjson.block-1a2b3c4d-16385").write_text("x")
    assert runs.remove_leftovers(folder) == (2, 2)
    assert names(folder) == ["patients.csv"]
    # a run killed while renaming its files into place: its manifest's temporary file says so
    cut = tmp_path / "cut-short"
    cut.mkdir()
    (cut / ".manifest.json.partial-12345678").write_text("{}")
    (cut / "events.csv").write_text("renamed before the kill")
    (cut / ".vitals.csv.partial-87654321").write_text("not yet renamed")
    assert runs.remove_leftovers(cut)[0] == 3 and names(cut) == []
