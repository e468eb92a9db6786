"""Faults a hostile tester found (issue 13), each reproduced: a dead run's leftovers, two runs into one folder,
--force, a full disk while the reports or the manifest are written, operating-system errors, manifests that
point outside their run, folders Explore may read, and what an encrypted run keeps in clear.

Real faults where the machine allows: real signals to real processes, FIFOs and devices, and, where a mount
namespace can be made (``unshare``), a real full and a real read-only file system."""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, cli, fail_stream_at
from core import explore, runs, settings
from core.__main__ import main
from core.run import generate_run
from core.scenario import load_scenario, preset
from core.sinks import decrypt_file

def small(patients: int = 300, seed: int = 5):
    return load_scenario("default").with_overrides(patients=patients, seed=seed)


def under_final_names(folder: Path) -> list[str]:
    """Files of a run under a final name, the manifest aside (data files and reports)."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and p.name != "manifest.json")


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def start_cli(out: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "ENCRYPTION_PASSWORD"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "core", "generate", "--out", str(out), *args], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_until_writing(proc: subprocess.Popen, out: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it was interrupted: {proc.communicate()[1][-2000:]}"
        if out.is_dir() and any(".partial-" in p.name or ".block-" in p.name for p in out.rglob(".*")):
            time.sleep(0.5)
            return
        time.sleep(0.02)
    raise AssertionError("the run never started writing")


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err[-3000:]
    return lines[0]


# --- item 2: what a killed run leaves, the next run removes (and says so) ---------------------------------------

def test_the_next_run_removes_what_a_killed_run_left_and_says_so(tmp_path):
    out = tmp_path / "run"
    proc = start_cli(out, "--patients", "3000000", "--format", "fhir", "--workers", "2")
    try:
        wait_until_writing(proc, out)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9: no handler runs, the temp and spill files stay
        proc.communicate()
    time.sleep(1.5)  # the killed run's workers notice their parent is gone and end
    left = everything(out)
    assert left and all(Path(name).name.startswith(".") for name in left), left
    result = cli("generate", "--patients", "500", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"note: removed {len(left)} file(s)" in result.stderr and "interrupted run" in result.stderr
    assert everything(out) == ["calibration.json", "conditions.parquet", "events.parquet", "manifest.json",
                               "patients.parquet", "vitals.parquet"]
    assert json.loads((out / "manifest.json").read_text())["cleaned_up"]["files"] == len(left)


# --- item 3: one run per folder; --force leaves only the new run's files ------------------------------------------

def test_a_second_run_into_a_folder_being_written_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    first = start_cli(out, "--patients", "3000000", "--format", "csv")
    try:
        wait_until_writing(first, out)
        for extra in ((), ("--force",)):
            second = cli("generate", "--patients", "100", "--out", str(out), "--quiet", *extra)
            assert second.returncode == 2
            assert "is in use by another run that is still writing it" in one_error_line(second.stderr)
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM, err
    assert everything(out) == ["manifest.json"]


def test_force_leaves_only_the_new_runs_files_and_nobody_elses(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "--patients", "300", "--format", "csv", "--compress", "--out", str(out), "--quiet"]) == 0
    (out / "notes.txt").write_text("the operator's own notes")
    assert main(["generate", "--patients", "200", "--out", str(out), "--quiet", "--force"]) == 0
    assert everything(out) == ["calibration.json", "conditions.parquet", "events.parquet", "manifest.json",
                               "notes.txt", "patients.parquet", "vitals.parquet"]
    assert pl.read_parquet(out / "patients.parquet").height == 200
    assert main(["generate", "--patients", "100", "--format", "fhir", "--out", str(out), "--quiet", "--force"]) == 0
    assert main(["generate", "--patients", "100", "--format", "ndjson", "--out", str(out), "--quiet", "--force"]) == 0
    assert everything(out) == ["calibration.json", "conditions.ndjson", "events.ndjson", "manifest.json",
                               "notes.txt", "patients.ndjson", "vitals.ndjson"]  # no fhir/ folder left either


def test_a_forced_run_that_fails_leaves_the_earlier_run_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "run"
    before = generate_run(small(400), out)
    files = {name: (out / name).read_bytes() for name in everything(out)}
    fail_stream_at(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_run(small(40_000), out, force=True, chunk_size=1_000)
    assert {name: (out / name).read_bytes() for name in everything(out)} == files
    assert runs.read_manifest(out)["run_id"] == before["run_id"]


# --- item 4: whatever fails, no data file under a final name without a manifest --------------------------------

def _full_disk_for(monkeypatch, victim: str) -> None:
    """Every write into a file whose name contains ``victim`` fails as on a full disk (opening still works)."""
    real_open = builtins.open

    class Full:
        def __init__(self, file):
            self._file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device", self._file.name)

        def __getattr__(self, name):
            return getattr(self._file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and victim in os.fspath(file) and any(m in mode for m in "wxa"):
            return Full(handle)
        return handle

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)


@pytest.mark.parametrize("victim", ["calibration.json", "capacity.json", "manifest.json"])
def test_a_full_disk_while_writing_a_report_or_the_manifest_leaves_no_data_file(tmp_path, monkeypatch, victim):
    out = tmp_path / "run"
    scenario = preset("brigade_okinawa").with_overrides(patients=2_000)  # a medical plan writes capacity.json
    _full_disk_for(monkeypatch, victim)
    with pytest.raises(OSError) as info:
        generate_run(scenario, out)
    assert info.value.errno == errno.ENOSPC
    assert under_final_names(out) == [], everything(out)
    assert [name for name in everything(out) if Path(name).name.startswith(".")] == []  # no temp file either
    manifest = runs.read_manifest(out)
    if victim == "manifest.json":
        assert manifest is None  # not even a failed one could be written: the folder reads as interrupted
    else:
        assert manifest["status"] == "failed" and manifest["files"] == [] and "the disk is full" in manifest["error"]


def test_a_full_disk_mid_run_is_one_line_and_exit_code_1(tmp_path, monkeypatch, capsys):
    _full_disk_for(monkeypatch, ".vitals.csv.partial")
    out = tmp_path / "run"
    assert main(["generate", "--patients", "3000", "--format", "csv", "--out", str(out), "--quiet"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: run failed: the disk is full") and "no data files were left" in line
    assert under_final_names(out) == [] and runs.read_manifest(out)["status"] == "failed"


# --- item 5: operating-system errors, each one line with a documented exit code ---------------------------------

@pytest.fixture(scope="module")
def encrypted_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "run"
    generate_run(small(100), out, password="pw")
    return out / "patients.parquet.enc"


def _os_error_cases(tmp: Path, encrypted: Path) -> dict:
    (tmp / "a-file").write_text("x")
    (tmp / "existing_dir").mkdir()
    fifo = tmp / "scenario.fifo"
    os.mkfifo(fifo)
    return {
        "a folder under /proc": (["generate", "--patients", "10", "--out", "/proc/x"], "/proc/x"),
        "a parent that is a file": (["generate", "--patients", "10", "--out", str(tmp / "a-file" / "run")],
                                    "a part of the path is a file"),
        "a 300-character folder name": (["generate", "--patients", "10", "--out", str(tmp / ("n" * 300))],
                                        "too long"),
        "decrypt into a missing folder": (["decrypt", str(encrypted), str(tmp / "missing" / "x")],
                                          "does not exist"),
        "decrypt onto a folder with --force": (["decrypt", str(encrypted), str(tmp / "existing_dir"), "--force"],
                                               "is a folder"),
        "a FIFO as the scenario": (["generate", "--scenario", str(fifo), "--out", str(tmp / "f")],
                                   "not a regular file"),
        "/dev/zero as the scenario": (["generate", "--scenario", "/dev/zero", "--out", str(tmp / "z")],
                                      "not a regular file"),
        "an unsupported database driver": (["generate", "--patients", "10", "--db", "--out", str(tmp / "d")],
                                           "driver 'postgresql+psycopg' is not supported"),
    }


CASE_NAMES = ["a folder under /proc", "a parent that is a file", "a 300-character folder name",
              "decrypt into a missing folder", "decrypt onto a folder with --force", "a FIFO as the scenario",
              "/dev/zero as the scenario", "an unsupported database driver"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_operating_system_errors_are_one_line_with_exit_code_2(case, tmp_path, encrypted_file, capsys, monkeypatch):
    monkeypatch.setenv("ENCRYPTION_PASSWORD", "pw")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("MPG_DATA_DIR", str(tmp_path / "data"))
    args, needle = _os_error_cases(tmp_path, encrypted_file)[case]
    assert main(args) == 2
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert needle in line and len(line) < 400, line
    assert not (tmp_path / "existing_dir").is_file() and list((tmp_path / "existing_dir").iterdir()) == []


def _can_mount() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def _in_a_small_file_system(folder: Path, options: str, *generate: str) -> tuple[int, str, list[str]]:
    """Run ``python -m core generate ...`` with a tmpfs mounted on ``folder`` (a private mount namespace: nothing
    outside the test sees it); returns the exit code, stderr and what the run left there."""
    script = (f"mount -t tmpfs -o {options} tmpfs {folder} || exit 99; "
              f"{sys.executable} -m core generate {' '.join(generate)} 2>{folder.parent / 'err'}; "
              f"echo $? > {folder.parent / 'rc'}; find {folder} -type f -printf '%P\\n' > {folder.parent / 'left'}")
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    left = sorted(line for line in (folder.parent / "left").read_text().splitlines() if line)
    return int((folder.parent / "rc").read_text()), (folder.parent / "err").read_text(), left


@pytest.mark.skipif(not _can_mount(), reason="no mount namespace here (unshare -rm): the in-process full-disk "
                                             "tests above stand in for the real one")
def test_a_real_full_disk_fails_the_run_in_one_line_and_leaves_no_data_file(tmp_path):
    disk = tmp_path / "disk"
    code, err, left = _in_a_small_file_system(disk, "size=3m", "--patients", "200000", "--format", "csv",
                                              "--out", str(disk / "run"), "--quiet")
    assert code == 1
    assert one_error_line(err).startswith("error: run failed: the disk is full")
    assert left in ([], ["run/manifest.json"]), left


@pytest.mark.skipif(not _can_mount(), reason="no mount namespace here (unshare -rm); as root a read-only folder "
                                             "cannot be made otherwise")
def test_a_read_only_output_folder_is_one_line_and_exit_code_2(tmp_path):
    disk = tmp_path / "disk"
    code, err, left = _in_a_small_file_system(disk, "ro,size=1m", "--patients", "100", "--out", str(disk / "run"))
    assert code == 2 and "read-only" in one_error_line(err) and left == []


# --- item 7: a manifest never sends a reader outside its run; Explore reads only allowed folders ---------------

def _hostile_run(folder: Path, name: str) -> Path:
    generate_run(small(200), folder)
    manifest = runs.read_manifest(folder)
    for entry in manifest["files"]:
        if entry["table"] == "patients":
            entry["name"] = name
    runs.write_manifest(folder, manifest)
    return folder


@pytest.mark.parametrize("name", ["../../../../outside/secret/patients.csv", "/etc/passwd", "fhir/../../x.csv",
                                  "sub/dir/patients.parquet"])
def test_a_manifest_naming_a_file_outside_its_run_is_refused(tmp_path, name):
    secret = tmp_path / "outside" / "secret"
    secret.mkdir(parents=True)
    pl.DataFrame({"patient_id": [1], "secret": ["do not show"]}).write_csv(secret / "patients.csv")
    folder = _hostile_run(tmp_path / "runs" / "a" / "b" / "c" / "run", name)
    with pytest.raises(explore.RunNotExplorable, match="outside"):
        explore.open_run(folder)
    [row] = runs.list_runs(folder.parent)
    assert row["reason"] and "refused" in row["reason"]


def test_a_manifest_file_that_is_a_link_out_of_the_run_is_refused(tmp_path):
    folder = tmp_path / "run"
    generate_run(small(200), folder)
    (folder / "patients.parquet").unlink()
    (folder / "patients.parquet").symlink_to(tmp_path.parent)  # a link out of the run folder
    with pytest.raises(explore.RunNotExplorable, match="outside"):
        explore.open_run(folder)


def test_explore_reads_only_the_data_folder_and_the_folders_the_operator_lists(tmp_path, monkeypatch):
    data, extra = tmp_path / "data", tmp_path / "exercise-share"
    (data / "runs").mkdir(parents=True)
    extra.mkdir()
    (data / "escape").symlink_to("/etc")
    monkeypatch.setenv("MPG_DATA_DIR", str(data))
    monkeypatch.delenv("MPG_EXPLORE_FOLDERS", raising=False)
    assert settings.explore_folder(str(data / "runs")) == (data / "runs").resolve()
    for text in ("/", "/etc", "/root", str(extra), str(data / "escape"), str(data / ".." / "exercise-share"), ""):
        with pytest.raises(settings.FolderNotAllowed):
            settings.explore_folder(text)
    monkeypatch.setenv("MPG_EXPLORE_FOLDERS", f"{extra}{os.pathsep}/nonexistent")
    assert settings.explore_folder(str(extra / "run-1")) == (extra / "run-1").resolve()
    with pytest.raises(settings.FolderNotAllowed, match="MPG_EXPLORE_FOLDERS"):
        settings.explore_folder("/etc")


# --- item 10: an encrypted run keeps in clear only what lists and verifies it ------------------------------------

def test_an_encrypted_run_keeps_its_scenario_and_reports_encrypted(tmp_path):
    scenario = preset("brigade_okinawa").with_overrides(patients=1_500, name="Operation Quiet Harbour")
    out = tmp_path / "run"
    manifest = generate_run(scenario, out, password="pw")
    assert all(name.endswith(".enc") for name in everything(out) if name != "manifest.json"), everything(out)
    assert {f["name"] for f in manifest["files"]} >= {"calibration.json.enc", "capacity.json.enc",
                                                      "scenario.json.enc", "load.parquet.enc"}
    text = (out / "manifest.json").read_text(encoding="utf-8")
    assert "scenario" not in manifest and "capacity" not in manifest
    assert "Quiet Harbour" not in text and "Okinawa" not in text
    for key in ("run_id", "status", "patients", "seed", "format", "encrypted", "files", "scenario_sha256"):
        assert key in manifest  # what lists and verifies the run stays readable
    decrypt_file(out / "scenario.json.enc", tmp_path / "scenario.json", "pw")
    kept = json.loads((tmp_path / "scenario.json").read_text())
    assert kept["scenario"] == scenario.to_dict() and kept["capacity"]["verdict"]
    decrypt_file(out / "calibration.json.enc", tmp_path / "calibration.json", "pw")
    assert json.loads((tmp_path / "calibration.json").read_text())["targets"]
    [row] = runs.list_runs(tmp_path)
    assert row["run_id"] == manifest["run_id"] and row["encrypted"] and row["reason"]
