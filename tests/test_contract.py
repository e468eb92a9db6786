"""The contract check (core.contract and `python -m core check`): every format the project writes meets the
contract, and runs broken on purpose fail with the rule they break."""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from conftest import cli, stderr_lines
from core.contract import RunUnreadable, check_run
from core.run import generate_run
from core.schema import TABLES


@pytest.fixture(scope="module")
def scenario(default_scenario):
    return default_scenario.with_overrides(patients=1500, seed=5)


@pytest.fixture(scope="module")
def run_of(tmp_path_factory, scenario):
    """One run per (format, gzip), generated on first use."""
    made: dict[tuple[str, bool], Path] = {}

    def make(fmt: str, compress: bool = False) -> Path:
        if (fmt, compress) not in made:
            out = tmp_path_factory.mktemp("contract") / f"{fmt}{'-gz' if compress else ''}"
            assert generate_run(scenario, out, fmt=fmt, compress=compress)["status"] == "completed"
            made[fmt, compress] = out
        return made[fmt, compress]
    return make


@pytest.fixture
def broken(run_of, tmp_path):
    """A copy of the parquet run to break: ``edit(table, change)`` rewrites a table and re-seals the manifest, so
    only the rule under test fails."""
    folder = tmp_path / "run"
    shutil.copytree(run_of("parquet"), folder)

    def edit(table: str, change) -> None:
        path = folder / f"{table}.parquet"
        change(pl.read_parquet(path)).write_parquet(path)
        reseal(folder)
    edit.folder = folder
    return edit


def reseal(folder: Path) -> None:
    """Recompute every listed file's bytes, sha256 and (for the tables) rows, as a writer would."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        data = (folder / entry["name"]).read_bytes()
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        if entry["table"] in TABLES:
            entry["rows"] = pl.read_parquet(folder / entry["name"]).height
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def problems(folder: Path) -> dict[str, list[str]]:
    """Broken rules of a run: rule -> messages."""
    out: dict[str, list[str]] = {}
    for p in check_run(folder).problems:
        out.setdefault(p.rule, []).append(p.message)
    return out


def patient_with(folder: Path, condition: pl.Expr) -> int:
    return int(pl.read_parquet(folder / "patients.parquet").filter(condition)["patient_id"][0])


# --- every format meets the contract ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, compress", [("parquet", False), ("csv", True), ("ndjson", False), ("json", False),
                                           ("fhir", False), ("json", True)])
def test_every_format_meets_the_contract(run_of, scenario, fmt, compress):
    report = check_run(run_of(fmt, compress))
    assert report.holds, "\n".join(report.lines())
    assert report.counts["patients"] == scenario.patients
    assert report.counts["events"] > report.counts["patients"] and report.counts["vitals"] > 0
    assert report.lines()[-1].startswith("contract holds: 1,500 patients")


def test_every_table_of_a_text_run_is_read_with_the_contract_types(run_of):
    report = check_run(run_of("csv", True))
    assert set(report.counts) == set(TABLES) and "types" not in report.rules


# --- broken on purpose ------------------------------------------------------------------------------------------

def test_an_event_after_death_breaks_rule_3(broken):
    dead = patient_with(broken.folder, pl.col("outcome").is_in(["KIA", "DOW"]))

    def after_death(events: pl.DataFrame) -> pl.DataFrame:
        last = events.filter(pl.col("patient_id") == dead).tail(1)
        extra = last.with_columns(seq=pl.col("seq") + 1, time=pl.col("time") + timedelta(minutes=5),
                                  event=pl.lit("treatment_start"), detail=pl.lit("18629005"))
        return pl.concat([events, extra]).sort("patient_id", "seq")
    broken("events", after_death)
    found = problems(broken.folder)
    assert any("terminal event is not the last" in m for m in found["rule 3"]), found
    assert "rule 6" in found  # outcome_time is no longer the last event's time


def test_a_duplicate_patient_id_is_found(broken):
    broken("patients", lambda p: p.with_columns(pl.when(pl.col("patient_id") == 2).then(1)
                                                .otherwise(pl.col("patient_id")).alias("patient_id")))
    found = problems(broken.folder)
    assert any("patient_id is not 1..N" in m for m in found["patients"]), found


def test_a_kia_who_arrived_at_role_1_breaks_rule_4(broken):
    events = pl.read_parquet(broken.folder / "events.parquet")
    arrived = int(events.filter((pl.col("event") == "arrival") & (pl.col("facility") == "R1"))["patient_id"][0])
    broken("patients", lambda p: p.with_columns(
        outcome=pl.when(pl.col("patient_id") == arrived).then(pl.lit("KIA")).otherwise(pl.col("outcome"))))
    found = problems(broken.folder)
    assert any(m.startswith("KIA without a death before any arrival") for m in found["rule 4"]), found
    kia = next(p for p in check_run(broken.folder).problems if p.rule == "rule 4")
    assert kia.count == 1 and kia.example == f"patient_id={arrived}"


def test_a_vital_sign_out_of_range_is_found(broken):
    broken("vitals", lambda v: v.with_columns(
        value=pl.when((pl.int_range(pl.len()) == 0) & (pl.col("code") == "8867-4")).then(400.0)
        .otherwise(pl.col("value"))))
    found = problems(broken.folder)
    assert found == {"vitals": ["value outside the physiologically possible range of its code (rows)"]}


def test_a_manifest_sha256_mismatch_is_found(broken):
    manifest = json.loads((broken.folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"][1]["sha256"] = "0" * 64
    (broken.folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    report = check_run(broken.folder)
    assert [(p.rule, p.message, p.example) for p in report.problems] == [
        ("files", "sha256 differs from manifest.json", manifest["files"][1]["name"])]


@pytest.mark.parametrize("table, change, rule, fragment", [
    ("events", lambda e: e.with_columns(event=pl.when(pl.col("seq") == 0).then(pl.lit("arrival")).otherwise("event")),
     "rule 1", "seq 0 is not 'injury'"),
    ("events", lambda e: e.filter(~((pl.col("event") == "departure") & (pl.col("patient_id") == 1)))
     .with_columns(seq=pl.int_range(pl.len()).over("patient_id").cast(pl.Int16)),
     "rule 2", "an arrival does not follow a departure"),
    ("patients", lambda p: p.with_columns(outcome=pl.when(pl.col("outcome") == "RTD").then(pl.lit("IN_CARE"))
                                          .otherwise("outcome")), "rule 3", "IN_CARE patients with a terminal event"),
    ("patients", lambda p: p.with_columns(outcome=pl.when(pl.col("outcome") == "RTD").then(pl.lit("ROLE4"))
                                          .otherwise("outcome")), "rule 5", "ROLE4 without 'evacuated'"),
    ("patients", lambda p: p.with_columns(outcome_time=pl.col("outcome_time") + timedelta(seconds=1)),
     "rule 6", "outcome_time differs"),
    ("events", lambda e: pl.concat([e, e.head(1)]).sort("patient_id", "seq"), "rule 7", "duplicate event rows"),
    ("conditions", lambda c: c.with_columns(code=pl.when(pl.col("rank") == 1).then(pl.lit("12345")).otherwise("code")),
     "conditions", "code is not a SNOMED CT identifier"),
    ("patients", lambda p: p.with_columns(age=pl.col("age") + 1), "patients", "age is not 18..65 whole years"),
    ("patients", lambda p: p.with_columns(mechanism=pl.when(pl.col("category") == "DIS").then(pl.lit("gunshot"))
                                          .otherwise("mechanism")), "patients", "mechanism not one of none"),
])
def test_a_broken_rule_is_named(broken, table, change, rule, fragment):
    broken(table, change)
    found = problems(broken.folder)
    assert any(fragment in m for m in found.get(rule, [])), found


def test_a_value_of_the_wrong_type_in_a_csv_run_is_found(run_of, tmp_path):
    folder = tmp_path / "csv"
    shutil.copytree(run_of("csv", True), folder)
    path = folder / "patients.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines(keepends=True)
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("age")] = "twenty"
    lines[1] = ",".join(row)
    path.write_bytes(gzip.compress("".join(lines).encode("utf-8")))
    found = problems(folder)
    assert any("patients.age values are not int16" in m for m in found["types"]), found
    assert "files" in found  # the file no longer matches the manifest


def test_nested_json_must_hold_the_flat_child_rows(run_of, tmp_path):
    folder = tmp_path / "json"
    shutil.copytree(run_of("json"), folder)
    path = folder / "events.json"
    events = pl.read_json(path)
    events.with_columns(detail=pl.when(pl.col("detail") == "ground").then(pl.lit("air"))
                        .otherwise("detail")).write_json(path)
    found = problems(folder)
    assert any("patients.json nests events rows that differ from events.json" in m for m in found["json"]), found


def test_a_file_not_in_the_manifest_and_a_wrong_patient_count_are_found(broken):
    shutil.copy(broken.folder / "patients.parquet", broken.folder / "patients.csv")
    manifest = json.loads((broken.folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["patients"] += 1
    (broken.folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    found = problems(broken.folder)
    assert found["files"] == ["files under a final name are not listed in manifest.json"]
    assert any("manifest.json says 1,501 patients" in m for m in found["manifest"]), found


# --- what is not a run to check -----------------------------------------------------------------------------------

def test_an_encrypted_run_is_refused(tmp_path, scenario):
    out = tmp_path / "secret"
    generate_run(scenario.with_overrides(patients=50), out, password="correct horse")
    with pytest.raises(RunUnreadable, match="encrypted"):
        check_run(out)


def test_a_cancelled_run_and_a_folder_without_manifest_are_refused(broken, tmp_path):
    manifest = json.loads((broken.folder / "manifest.json").read_text(encoding="utf-8"))
    (broken.folder / "manifest.json").write_text(json.dumps({**manifest, "status": "cancelled"}), encoding="utf-8")
    with pytest.raises(RunUnreadable, match="cancelled"):
        check_run(broken.folder)
    with pytest.raises(RunUnreadable, match="no manifest.json"):
        check_run(tmp_path)
    with pytest.raises(RunUnreadable, match="not a folder"):
        check_run(tmp_path / "missing")


# --- the command line -------------------------------------------------------------------------------------------

def test_check_exits_0_when_the_contract_holds(run_of):
    result = cli("check", str(run_of("ndjson")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("contract holds: 1,500 patients") and result.stderr == ""


def test_check_exits_1_and_lists_each_broken_rule(broken):
    broken("patients", lambda p: p.with_columns(outcome_time=pl.col("outcome_time") + timedelta(seconds=1)))
    result = cli("check", str(broken.folder))
    assert result.returncode == 1, result.stderr
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert fails == ["FAIL [rule 6] outcome_time differs from the time of the last event (patients): 1,500, "
                     "e.g. patient_id=1"]
    assert result.stdout.splitlines()[-1].startswith("contract broken: 1 rule fails")
    report = json.loads(cli("check", str(broken.folder), "--json").stdout)
    assert report["holds"] is False and report["problems"][0]["rule"] == "rule 6"


@pytest.mark.parametrize("target", ["missing", "empty"])
def test_check_exits_2_on_a_folder_that_holds_no_run(tmp_path, target):
    folder = tmp_path / target
    if target == "empty":
        folder.mkdir()
    result = cli("check", str(folder))
    assert result.returncode == 2 and result.stdout == ""
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(folder) in lines[0]
