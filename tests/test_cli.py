"""The command line (python -m core): a run, bad input (exit 2, one line), encryption, gzip, interruption."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, TABLE_NAMES, assert_contract_holds, cli, stderr_lines

PRESET_IDS = ("nato_article_5", "peacekeeping", "urban_assault", "cbrn_incident", "training_exercise",
              "mass_casualty", "arctic_operation", "maritime_operation", "brigade_falklands", "brigade_okinawa")
PASSWORD = "correct horse battery staple"
DATA_NAMES = tuple(f"{t}." for t in TABLE_NAMES)


def assert_bad_input(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 2, exactly one line on stderr starting with 'error:', no traceback; returns the line."""
    lines = stderr_lines(result)
    assert result.returncode == 2, f"exit {result.returncode}, stderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one stderr line, got: {result.stderr!r}"
    assert lines[0].startswith("error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(DATA_NAMES)) if folder.exists() else []


@pytest.fixture(scope="module")
def seed3_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "seed3"
    result = cli("generate", "--patients", "2000", "--seed", "3", "--out", str(out))
    return out, result


# --- generate, presets, validate -----------------------------------------------------------------------------

def test_generate_writes_a_run_and_prints_a_summary(seed3_run):
    out, result = seed3_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "2,000 patients" in result.stdout
    assert "patients/s" in result.stdout
    assert "peak" in result.stdout and "MB" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed" and manifest["patients"] == 2000 and manifest["seed"] == 3
    assert data_files(out) == sorted(f"{t}.parquet" for t in TABLE_NAMES)
    assert_contract_holds(out)


def test_two_runs_with_the_same_seed_are_byte_identical(seed3_run, tmp_path):
    first, _ = seed3_run
    second = tmp_path / "again"
    result = cli("generate", "--patients", "2000", "--seed", "3", "--out", str(second), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""  # --quiet
    for table in TABLE_NAMES:
        assert (second / f"{table}.parquet").read_bytes() == (first / f"{table}.parquet").read_bytes(), table


def test_same_seed_other_chunk_size_and_workers_gives_the_same_tables(seed3_run, tmp_path):
    first, _ = seed3_run
    other = tmp_path / "other"
    result = cli("generate", "--patients", "2000", "--seed", "3", "--out", str(other), "--quiet",
                 "--chunk-size", "333", "--workers", "2")
    assert result.returncode == 0, result.stderr
    for table in TABLE_NAMES:
        assert pl.read_parquet(other / f"{table}.parquet").equals(pl.read_parquet(first / f"{table}.parquet")), table


def test_a_different_seed_gives_a_different_file(seed3_run, tmp_path):
    first, _ = seed3_run
    result = cli("generate", "--patients", "2000", "--seed", "4", "--out", str(tmp_path / "s4"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s4" / "patients.parquet").read_bytes() != (first / "patients.parquet").read_bytes()


def test_generate_a_preset_with_days(tmp_path):
    out = tmp_path / "arctic"
    result = cli("generate", "--scenario", "arctic_operation", "--patients", "600", "--days", "5",
                 "--format", "csv", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["scenario"]["name"] == "Arctic Winter Operation"
    assert (manifest["scenario"]["days"], manifest["patients"], manifest["format"]) == (5, 600, "csv")
    assert_contract_holds(out)


def test_presets_lists_every_preset_id():
    result = cli("presets")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]
    assert set(PRESET_IDS) <= set(listed)
    assert set(listed) - set(PRESET_IDS) <= {"default"}


def test_presets_as_json():
    result = cli("presets", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(PRESET_IDS) <= set(data)
    assert data["mass_casualty"]["patients"] == 800


def test_validate_a_valid_file(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"name": "Small", "patients": 50, "days": 2}), encoding="utf-8")
    result = cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "50 patients" in result.stdout
    shown = cli("validate", str(path), "--show")
    assert shown.returncode == 0
    assert '"patients": 50' in shown.stdout


@pytest.mark.parametrize("content, needles", [
    ({"patients": 50, "days": 0}, ("days", "0", "1 to 180")),
    ({"category_mix": {"BI": 35, "NBI": 20, "DIS": 33, "BSI": 12}}, ("category_mix", "fractions")),
    ({"colour": "red"}, ("colour",)),
])
def test_validate_an_invalid_file(tmp_path, content, needles):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    assert_bad_input(cli("validate", str(path)), *needles)


def test_validate_a_file_with_a_syntax_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "patients": 50,\n  "days": 2,,\n}\n', encoding="utf-8")
    assert_bad_input(cli("validate", str(path)), "line 3", "column")


# --- bad input: exit 2, one line, no traceback ------------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["--patients", "0"], ("patients", "0")),
    (["--patients", "abc"], ("patients", "abc")),
    (["--format", "xml"], ("format", "xml", "parquet")),
    (["--scenario", "nosuch"], ("nosuch",)),
    (["--days", "500"], ("days", "500", "180")),
    (["--workers", "0"], ("workers", "0")),
    (["--chunk-size", "0"], ("chunk", "0")),
    (["--seed", "-1"], ("seed",)),
])
def test_generate_bad_input(tmp_path, args, needles):
    out = tmp_path / "run"
    assert_bad_input(cli("generate", *args, "--out", str(out)), *needles)
    assert data_files(out) == []


def test_unknown_subcommand():
    assert_bad_input(cli("frobnicate"), "frobnicate")


def test_no_subcommand():
    assert_bad_input(cli())


def test_refuses_to_overwrite_an_earlier_run(seed3_run):
    out, _ = seed3_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    line = assert_bad_input(cli("generate", "--patients", "50", "--out", str(out)), str(out), "--force")
    assert "manifest.json" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched


def test_force_replaces_an_earlier_run(tmp_path):
    out = tmp_path / "run"
    assert cli("generate", "--patients", "100", "--out", str(out), "--quiet").returncode == 0
    result = cli("generate", "--patients", "150", "--out", str(out), "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "manifest.json").read_text())["patients"] == 150
    assert pl.read_parquet(out / "patients.parquet").height == 150


def test_bad_workers_does_not_block_a_corrected_rerun(tmp_path):
    out = tmp_path / "run"
    assert_bad_input(cli("generate", "--patients", "100", "--workers", "0", "--out", str(out)))
    result = cli("generate", "--patients", "100", "--workers", "1", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr


# --- encryption and gzip ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encrypted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "run"
    result = cli("generate", "--patients", "800", "--seed", "2", "--encrypt", "--out", str(out), "--quiet",
                 env={"ENCRYPTION_PASSWORD": PASSWORD})
    return out, result


def test_encrypt_writes_only_enc_files(encrypted_run):
    out, result = encrypted_run
    assert result.returncode == 0, result.stderr
    assert data_files(out) == sorted(f"{t}.parquet.enc" for t in TABLE_NAMES)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["encrypted"] is True
    assert b"PAR1" not in (out / "patients.parquet.enc").read_bytes()[:64]  # not a plain parquet file
    with pytest.raises(Exception):
        pl.read_parquet(out / "patients.parquet.enc")


def test_decrypt_with_the_right_password(encrypted_run, tmp_path):
    out, _ = encrypted_run
    target = tmp_path / "patients.parquet"
    result = cli("decrypt", str(out / "patients.parquet.enc"), str(target), env={"ENCRYPTION_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stderr
    patients = pl.read_parquet(target)
    assert patients.height == 800
    assert patients["patient_id"].to_list() == list(range(1, 801))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    rows = {f["name"]: f["rows"] for f in manifest["files"]}
    events = tmp_path / "events.parquet"
    assert cli("decrypt", str(out / "events.parquet.enc"), str(events),
               env={"ENCRYPTION_PASSWORD": PASSWORD}).returncode == 0
    assert pl.read_parquet(events).height == rows["events.parquet.enc"]


def test_decrypt_with_a_wrong_password(encrypted_run, tmp_path):
    out, _ = encrypted_run
    target = tmp_path / "patients.parquet"
    result = cli("decrypt", str(out / "patients.parquet.enc"), str(target),
                 env={"ENCRYPTION_PASSWORD": "not the password"})
    assert_bad_input(result, "password")
    assert list(tmp_path.iterdir()) == []  # no output, not even a partial one


def test_decrypt_refuses_to_overwrite(encrypted_run, tmp_path):
    out, _ = encrypted_run
    target = tmp_path / "exists.parquet"
    target.write_bytes(b"keep me")
    result = cli("decrypt", str(out / "patients.parquet.enc"), str(target), env={"ENCRYPTION_PASSWORD": PASSWORD})
    assert_bad_input(result, "--force")
    assert target.read_bytes() == b"keep me"


def test_encrypt_without_a_password_and_no_terminal(tmp_path):
    out = tmp_path / "run"
    result = cli("generate", "--patients", "100", "--encrypt", "--out", str(out))  # stdin is /dev/null
    assert_bad_input(result, "ENCRYPTION_PASSWORD")
    assert data_files(out) == []
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_compress_writes_gzip_files_that_decompress_to_valid_files(tmp_path, fmt):
    out = tmp_path / fmt
    result = cli("generate", "--patients", "700", "--format", fmt, "--compress", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    tables = TABLE_NAMES
    assert data_files(out) == sorted(f"{t}.{fmt}.gz" for t in tables)
    rows = {f["name"]: f["rows"] for f in manifest["files"]}
    plain = tmp_path / f"{fmt}-plain"
    plain.mkdir()
    for table in tables:
        raw = gzip.decompress((out / f"{table}.{fmt}.gz").read_bytes())
        (plain / f"{table}.{fmt}").write_bytes(raw)
        if fmt == "parquet":
            height = pl.read_parquet(plain / f"{table}.{fmt}").height
        elif fmt == "csv":
            height = pl.read_csv(plain / f"{table}.{fmt}", infer_schema_length=0).height
        else:
            height = len(json.loads(raw))
        assert height == rows[f"{table}.{fmt}.gz"], table
    assert_contract_holds(out)  # the contract check reads the .gz files itself


# --- interruption ----------------------------------------------------------------------------------------------

def test_an_interrupted_run_leaves_no_data_file(tmp_path):
    out = tmp_path / "big"
    env = {k: v for k, v in os.environ.items() if k != "ENCRYPTION_PASSWORD"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen([sys.executable, "-m", "core", "generate", "--patients", "3000000", "--out", str(out)],
                            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and any(".partial" in p.name for p in out.iterdir()):
                break  # the run is writing its temporary files
            time.sleep(0.02)
        assert proc.poll() is None, "the 3,000,000-patient run ended before it could be interrupted"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert data_files(out) == [], "a data file under its final name was left behind"
    leftovers = [p.name for p in out.iterdir() if p.name != "manifest.json"] if out.exists() else []
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    if (out / "manifest.json").exists():
        assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["status"] == "cancelled"


def test_patients_force_derives_n_from_force_sizes(tmp_path):
    data = {"fronts": [{"name": "North", "casualty_share": 1, "nationality_mix": {"POL": 1}, "force_size": 5000}],
            "days": 4, "intensity": "high", "special_events": []}
    path = tmp_path / "force.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "run"
    result = cli("generate", "--scenario", str(path), "--patients", "force", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["patients"] == round(5 * 3.81 * 4)


def test_patients_force_without_force_sizes_is_bad_input(tmp_path):
    result = cli("generate", "--patients", "force", "--out", str(tmp_path / "x"))
    assert_bad_input(result, "force_size", "fronts[0]")
    bad = cli("generate", "--patients", "many", "--out", str(tmp_path / "y"))
    assert_bad_input(bad, "'many'", "force")


def test_a_plain_run_loads_no_encryption_code_and_tunes_the_native_allocators(tmp_path):
    """Memory (core/memory.py): cryptography's native code is mapped only for --encrypt, and polars' and pyarrow's
    allocators get their settings before either library loads, unless the user set them."""
    code = ("import os, sys, pathlib\n"
            "from core.run import generate_run\nfrom core.scenario import load_scenario\n"
            f"generate_run(load_scenario('default').with_overrides(patients=300), pathlib.Path({str(tmp_path / 'r')!r}))\n"
            "print('cryptography' in sys.modules, os.environ['_RJEM_MALLOC_CONF'], os.environ['ARROW_DEFAULT_MEMORY_POOL'])\n"
            "import pyarrow as pa; print(pa.default_memory_pool().backend_name)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("_RJEM_MALLOC_CONF", "ARROW_DEFAULT_MEMORY_POOL")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    loaded, jemalloc, pool, backend = out.stdout.split()
    assert loaded == "False" and "background_thread:true" in jemalloc and pool == "system" and backend == "system"
    env["ARROW_DEFAULT_MEMORY_POOL"] = "mimalloc"  # the user's choice wins
    code = code.replace(repr(str(tmp_path / "r")), repr(str(tmp_path / "r2")))  # a run folder is never reused
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[2:] == ["mimalloc", "mimalloc"]


def test_help_lists_every_command_and_the_exit_codes():
    result = cli("--help")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    for text in ("generate", "replicate", "decrypt", "exit codes:", "130", "143", "the run failed on its way"):
        assert text in result.stdout
