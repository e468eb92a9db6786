"""The streaming generator and a whole run (core/generator.py, core/run.py) against the data contract (docs/data-contract.md)."""
from __future__ import annotations

import hashlib
import json
import math
import threading
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from conftest import TABLE_NAMES, assert_contract_holds, tables
from core import arrivals, generator
from core.run import generate_run
from core.scenario import load_scenario
from core.schema import CATEGORIES

PRESET_IDS = ("nato_article_5", "peacekeeping", "urban_assault", "cbrn_incident", "training_exercise",
              "mass_casualty", "arctic_operation", "maritime_operation")

FINAL_NAME = ("patients.", "events.", "conditions.", "vitals.", "fhir")


def category_counts(patients: pl.DataFrame) -> list[int]:
    return [patients.filter(pl.col("category") == c).height for c in CATEGORIES]


def hare_split(total: int, weights: list[float]) -> list[int]:
    """Largest-remainder (Hare) split, written out independently of core: floors, then +1 by largest remainder."""
    raw = [total * w / sum(weights) for w in weights]
    parts = [math.floor(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: -(raw[i] - parts[i]))  # stable: ties keep order
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts


def expected_counts(scenario) -> list[int]:
    weights = [scenario.category_mix[c] for c in CATEGORIES]
    core_split = [int(x) for x in arrivals.largest_remainder(scenario.patients, np.array(weights))]
    assert core_split == hare_split(scenario.patients, weights)
    return core_split


# --- exact N ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 999, generator.BLOCK - 1, generator.BLOCK, generator.BLOCK + 1])
def test_exactly_n_patients_with_ids_1_to_n(default_scenario, n):
    s = default_scenario.with_overrides(patients=n)
    batch = generator.generate(s)
    ids = batch.patients["patient_id"]
    assert batch.size == n
    assert ids.to_list() == list(range(1, n + 1))
    assert ids.dtype == pl.Int64
    # every child row belongs to a patient of the run
    for table in ("events", "conditions", "vitals"):
        child = batch.tables()[table]["patient_id"]
        assert child.min() >= 1 and child.max() <= n
    assert batch.events["patient_id"].n_unique() == n  # every patient has a timeline


@pytest.mark.parametrize("n", [1, 7, 999, generator.BLOCK + 1])
def test_category_counts_are_the_largest_remainder_split(default_scenario, n):
    s = default_scenario.with_overrides(patients=n)
    assert category_counts(generator.generate(s).patients) == expected_counts(s)


def test_largest_remainder_is_exact_and_proportional():
    parts = arrivals.largest_remainder(999, np.array([0.35, 0.20, 0.33, 0.12]))
    assert parts.sum() == 999
    assert list(parts) == [349, 200, 330, 120]
    assert list(arrivals.largest_remainder(7, np.array([0.35, 0.20, 0.33, 0.12]))) == [3, 1, 2, 1]
    assert list(arrivals.largest_remainder(0, np.array([1.0, 2.0]))) == [0, 0]


@pytest.mark.parametrize("preset_id", PRESET_IDS)
def test_every_preset_gives_exact_n_and_category_counts(preset_id):
    s = load_scenario(preset_id)
    patients = generator.generate(s).patients
    assert patients.height == s.patients
    assert category_counts(patients) == expected_counts(s)


@pytest.mark.parametrize("days", [1, 2])
def test_one_and_two_day_scenarios_give_exact_n(default_scenario, days):
    """Regression: the lagged BSI day weights once spilled a 1-day scenario's BSI budget onto a missing day 2."""
    s = default_scenario.with_overrides(patients=1000, days=days)
    patients = generator.generate(s).patients
    assert patients.height == 1000
    assert category_counts(patients) == expected_counts(s)


@pytest.mark.parametrize("days", [3, 30])
def test_short_and_long_windows_give_exact_n(default_scenario, days):
    s = default_scenario.with_overrides(patients=1000, days=days)
    patients = generator.generate(s).patients
    assert patients.height == 1000
    assert category_counts(patients) == expected_counts(s)


# --- reproducibility --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_tables(scenario_20k):
    return tables(generator.stream(scenario_20k, chunk_size=generator.BLOCK))


@pytest.mark.parametrize("chunk_size", [1000, 16_384, 100_000, 7_777])
def test_same_tables_for_any_chunk_size(scenario_20k, reference_tables, chunk_size):
    batches = list(generator.stream(scenario_20k, chunk_size=chunk_size))
    sizes = [b.size for b in batches]
    assert sum(sizes) == scenario_20k.patients
    assert all(size == chunk_size for size in sizes[:-1]) and 0 < sizes[-1] <= chunk_size
    got = tables(batches)
    for name in TABLE_NAMES:
        assert got[name].equals(reference_tables[name]), f"{name} differs with chunk_size={chunk_size}"


def test_stream_equals_generate(batch_20k, reference_tables):
    for name in TABLE_NAMES:
        assert batch_20k.tables()[name].equals(reference_tables[name])


def test_same_tables_with_two_worker_processes(scenario_20k, reference_tables):
    got = tables(generator.stream(scenario_20k, chunk_size=5000, workers=2))
    for name in TABLE_NAMES:
        assert got[name].equals(reference_tables[name]), f"{name} differs with workers=2"


def test_a_fresh_generation_is_identical(scenario_3k):
    a, b = generator.generate(scenario_3k), generator.generate(scenario_3k)
    for name in TABLE_NAMES:
        assert a.tables()[name].equals(b.tables()[name])


def test_a_different_seed_gives_different_data(scenario_3k):
    a = generator.generate(scenario_3k)
    b = generator.generate(scenario_3k.with_overrides(seed=scenario_3k.seed + 1))
    assert a.size == b.size  # still exactly N
    for column in ("service_number", "given_name", "injury_time", "condition_code", "outcome"):
        assert not a.patients[column].equals(b.patients[column]), f"{column} is the same for two seeds"
    assert not a.events.equals(b.events)


@pytest.mark.parametrize("chunk_size, workers", [(0, 1), (5_000_001, 1), (1000, 0), (1000, 65)])
def test_stream_rejects_bad_chunk_size_and_workers(default_scenario, chunk_size, workers):
    with pytest.raises(ValueError, match="not allowed"):
        next(generator.stream(default_scenario, chunk_size=chunk_size, workers=workers))


# --- a whole run meets the contract -----------------------------------------------------------------------

def test_parquet_run_meets_the_contract(parquet_run):
    out, manifest = parquet_run
    assert manifest["status"] == "completed"
    assert_contract_holds(out)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_text_run_meets_the_contract(tmp_path, scenario_3k, fmt):
    out = tmp_path / fmt
    manifest = generate_run(scenario_3k, out, fmt=fmt)
    assert manifest["status"] == "completed"
    assert {f["name"] for f in manifest["files"]} == {f"{t}.{fmt}" for t in TABLE_NAMES} | {"calibration.json"}
    assert_contract_holds(out)


def test_text_formats_hold_the_same_rows_as_parquet(tmp_path, parquet_run, scenario_3k):
    out, manifest = parquet_run
    scenario_rows = {f["name"].split(".")[0]: f["rows"] for f in manifest["files"]}
    csv_out = tmp_path / "csv"
    csv_manifest = generate_run(scenario_3k, csv_out, fmt="csv")
    assert {f["name"].split(".")[0]: f["rows"] for f in csv_manifest["files"]} == scenario_rows
    a = pl.read_parquet(out / "patients.parquet")
    b = pl.read_csv(csv_out / "patients.csv", infer_schema_length=0)
    assert a["service_number"].to_list() == b["service_number"].to_list()
    assert a["given_name"].to_list() == b["given_name"].to_list()  # diacritics kept through CSV


def test_json_run_holds_every_patient_with_nested_rows(tmp_path, scenario_3k, parquet_run):
    out = tmp_path / "json"
    manifest = generate_run(scenario_3k, out, fmt="json")
    assert manifest["status"] == "completed" and manifest["patients"] == scenario_3k.patients
    files = {f["name"]: f for f in manifest["files"]}
    assert set(files) == {"patients.json", "events.json", "conditions.json", "vitals.json", "calibration.json"}
    records = json.loads((out / "patients.json").read_text(encoding="utf-8"))
    assert isinstance(records, list)
    assert len(records) == files["patients.json"]["rows"] == scenario_3k.patients
    assert [r["patient_id"] for r in records] == list(range(1, scenario_3k.patients + 1))
    # the nested children hold every row of the flat tables
    flat = {f["name"].split(".")[0]: f["rows"] for f in parquet_run[1]["files"]}
    for child in ("events", "conditions", "vitals"):
        assert sum(len(r[child]) for r in records) == flat[child], child
        assert files[f"{child}.json"]["rows"] == flat[child], child
    first = records[0]
    assert first["events"][0]["seq"] == 0 and first["events"][0]["event"] == "injury"
    assert "patient_id" not in first["events"][0]


@pytest.mark.parametrize("preset_id", PRESET_IDS)
def test_every_preset_run_meets_the_contract(tmp_path, preset_id):
    s = load_scenario(preset_id).with_overrides(patients=2000)
    manifest = generate_run(s, tmp_path / preset_id, fmt="parquet")
    assert manifest["status"] == "completed"
    assert manifest["patients"] == 2000
    assert_contract_holds(tmp_path / preset_id)


def test_partner_nations_appear_only_where_allowed(tmp_path):
    patients = generator.generate(load_scenario("maritime_operation").with_overrides(patients=2000)).patients
    assert {"AUS", "NZL"} <= set(patients["nationality"].unique())
    default = generator.generate(load_scenario().with_overrides(patients=2000)).patients
    assert set(default["nationality"].unique()) <= {"POL", "LTU", "NLD", "ESP", "EST", "GBR", "FIN", "USA"}


# --- time window, ordering, manifest -----------------------------------------------------------------------

def test_injury_times_inside_the_window(scenario_20k, batch_20k):
    t = batch_20k.patients["injury_time"]
    assert t.min() >= scenario_20k.start
    assert t.max() < scenario_20k.end
    # spread over the window, not bunched on the first day
    assert t.max() - t.min() > timedelta(days=scenario_20k.days - 1)


def test_no_event_after_the_follow_up(scenario_20k, batch_20k):
    horizon = scenario_20k.end + timedelta(hours=scenario_20k.follow_up_h)
    assert batch_20k.events["time"].max() <= horizon
    assert batch_20k.patients["outcome_time"].max() <= horizon
    assert batch_20k.vitals["time"].max() <= horizon


def test_short_follow_up_leaves_patients_in_care(default_scenario):
    s = default_scenario.with_overrides(patients=3000, follow_up_h=0)
    batch = generator.generate(s)
    assert batch.events["time"].max() <= s.end
    assert batch.patients.filter(pl.col("outcome") == "IN_CARE").height > 0


def test_events_are_ordered_by_patient_and_seq(batch_20k):
    ev = batch_20k.events
    assert ev.select("patient_id", "seq").equals(ev.select("patient_id", "seq").sort("patient_id", "seq"))
    assert ev.filter(pl.col("seq") == 0)["event"].cast(pl.String).unique().to_list() == ["injury"]
    # seq is 0, 1, 2, ... per patient, and time never decreases along it
    per = ev.with_columns(expect=pl.int_range(pl.len()).over("patient_id"),
                          prev=pl.col("time").shift(1).over("patient_id"))
    assert per.filter(pl.col("seq") != pl.col("expect")).height == 0
    assert per.filter(pl.col("time") < pl.col("prev")).height == 0


def test_manifest_describes_the_files_on_disk(parquet_run, scenario_3k):
    out, returned = parquet_run
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == returned
    assert manifest["status"] == "completed"
    assert manifest["patients"] == scenario_3k.patients
    assert manifest["seed"] == scenario_3k.seed
    assert manifest["contract_version"] == 1
    assert manifest["scenario_sha256"] == scenario_3k.sha256()
    assert manifest["scenario"] == json.loads(json.dumps(scenario_3k.to_dict()))
    canonical = json.dumps(manifest["scenario"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == manifest["scenario_sha256"]
    for key in ("generator_version", "run_id", "started_at", "finished_at", "elapsed_s", "peak_rss_mb"):
        assert key in manifest, key
    assert manifest["peak_rss_mb"] > 0
    names = [f["name"] for f in manifest["files"]]
    assert sorted(names) == sorted([f"{t}.parquet" for t in TABLE_NAMES] + ["calibration.json"])
    on_disk = {p.name for p in out.iterdir()}
    data = {n for n in names if n != "calibration.json"}
    assert {n for n in on_disk if n.startswith(FINAL_NAME)} == data  # the data files are those listed
    assert json.loads((out / "calibration.json").read_text())["summary"] == manifest["calibration"]
    assert not [n for n in on_disk if n.startswith(".") or "partial" in n], on_disk  # no temporary file left
    for entry in manifest["files"]:
        data = (out / entry["name"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), entry["name"]
        if entry["name"].endswith(".parquet"):
            assert entry["rows"] == pl.read_parquet(out / entry["name"]).height, entry["name"]
    assert next(f for f in manifest["files"] if f["name"] == "patients.parquet")["rows"] == scenario_3k.patients


def test_written_parquet_equals_the_generated_tables(parquet_run, scenario_3k):
    out, _ = parquet_run
    batch = generator.generate(scenario_3k)
    patients = pl.read_parquet(out / "patients.parquet")
    assert patients["patient_id"].to_list() == batch.patients["patient_id"].to_list()
    assert patients["service_number"].to_list() == batch.patients["service_number"].to_list()
    assert patients["injury_time"].dtype == pl.Datetime("us", "UTC")
    assert patients["category"].cast(pl.String).to_list() == batch.patients["category"].cast(pl.String).to_list()
    assert pl.read_parquet(out / "vitals.parquet")["value"].to_list() == batch.vitals["value"].to_list()


# --- orders of magnitude (20,000-patient default run) --------------------------------------------------------

def share(frame: pl.DataFrame, condition: pl.Expr) -> float:
    return frame.filter(condition).height / frame.height


DEAD = pl.col("outcome").is_in(["KIA", "DOW"])


def test_deaths_are_a_minority(batch_20k):
    assert 0 < share(batch_20k.patients, DEAD) < 0.10


@pytest.mark.parametrize("category", ["DIS", "BSI"])
def test_disease_and_stress_rarely_kill(batch_20k, category):
    sub = batch_20k.patients.filter(pl.col("category") == category)
    assert sub.height > 1000
    assert share(sub, DEAD) < 0.01


def test_battle_injuries_kill_more_than_disease(batch_20k):
    p = batch_20k.patients
    bi = share(p.filter(pl.col("category") == "BI"), DEAD)
    dis = share(p.filter(pl.col("category") == "DIS"), DEAD)
    assert 0.03 < bi < 0.25 and bi > 5 * dis


def test_most_return_to_duty(batch_20k):
    assert share(batch_20k.patients, pl.col("outcome") == "RTD") > 0.40


def test_women_are_a_small_share(batch_20k):
    women = share(batch_20k.patients, pl.col("sex") == "female")
    assert 0.005 < women < 0.15


def test_no_t1_casualty_has_normal_vitals_at_poi(batch_20k):
    t1 = batch_20k.patients.filter(pl.col("triage") == "T1").select("patient_id")
    assert t1.height > 100
    poi = (batch_20k.vitals.filter(pl.col("facility") == "POI")
           .with_columns(pl.col("code").cast(pl.String))
           .join(t1, on="patient_id")
           .pivot(on="code", index=["patient_id", "time"], values="value"))
    assert poi.height > 0.5 * t1.height  # most T1 casualties get a POI vitals set
    normal = poi.filter((pl.col("8867-4") < 100) & (pl.col("8480-6") > 110))
    assert normal.height == 0, f"T1 patients with normal pulse and BP at POI: {normal.head(5)}"


def test_no_kia_reaches_a_treatment_facility(batch_20k):
    reached = (batch_20k.events.filter((pl.col("event") == "arrival") & (pl.col("facility") != "POI"))
               .select("patient_id").unique())
    kia = batch_20k.patients.filter(pl.col("outcome") == "KIA")
    assert kia.height > 0
    assert kia.join(reached, on="patient_id").height == 0
    dow = batch_20k.patients.filter(pl.col("outcome") == "DOW")
    assert dow.join(reached, on="patient_id", how="anti").height == 0  # a DOW did reach one


def test_several_warfare_types_and_mass_casualties(batch_20k):
    p = batch_20k.patients
    assert p["warfare_type"].n_unique() >= 3
    mascal = p.filter(pl.col("mass_casualty"))
    assert mascal.height > 0
    # a mass-casualty incident is one event shared by many patients
    assert mascal.group_by("event_id").len()["len"].max() >= 10


def test_every_non_kia_patient_has_vital_signs(batch_20k):
    non_kia = batch_20k.patients.filter(pl.col("outcome") != "KIA").select("patient_id")
    with_vitals = batch_20k.vitals.select("patient_id").unique()
    assert non_kia.join(with_vitals, on="patient_id", how="anti").height == 0


# --- cancel --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, compress", [("parquet", False), ("csv", True), ("json", False)])
def test_cancel_leaves_only_a_cancelled_manifest(tmp_path, default_scenario, fmt, compress):
    cancel = threading.Event()
    seen = []

    def on_progress(progress):
        seen.append(progress.patients_done)
        cancel.set()  # after the first batch

    out = tmp_path / "run"
    manifest = generate_run(default_scenario.with_overrides(patients=5000), out, fmt=fmt, compress=compress,
                            chunk_size=1000, cancel=cancel, on_progress=on_progress)
    assert seen == [1000]
    assert manifest["status"] == "cancelled"
    assert manifest["files"] == []
    assert manifest["patients"] != 5000
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["status"] == "cancelled"
    assert [p.name for p in out.iterdir()] == ["manifest.json"], "data, report or temporary files were left behind"


def test_progress_reports_every_batch(tmp_path, default_scenario):
    seen = []
    manifest = generate_run(default_scenario.with_overrides(patients=5000), tmp_path / "run", chunk_size=1000,
                            on_progress=lambda p: seen.append((p.patients_done, p.patients_total)))
    assert seen == [(k, 5000) for k in range(1000, 5001, 1000)]
    assert manifest["status"] == "completed"


def test_a_bad_format_is_refused_before_anything_is_written(tmp_path, default_scenario):
    with pytest.raises(ValueError, match="xml"):
        generate_run(default_scenario, tmp_path / "run", fmt="xml")
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_data_files_appear_only_under_final_names_when_complete(tmp_path, default_scenario):
    """While the run is being written, no file in the folder has a final data name."""
    out = tmp_path / "run"
    names_during: list[set[str]] = []

    def on_progress(_):
        names_during.append({p.name for p in out.iterdir()})

    generate_run(default_scenario.with_overrides(patients=5000), out, chunk_size=1000, on_progress=on_progress)
    assert len(names_during) == 5
    for names in names_during:
        assert not [n for n in names if n.startswith(FINAL_NAME) or n == "manifest.json"], names
    after = {p.name for p in out.iterdir()}
    assert {n for n in after if n.startswith(FINAL_NAME)} == {f"{t}.parquet" for t in TABLE_NAMES}
    assert "manifest.json" in after
    assert not [n for n in after if n.startswith(".") or "partial" in n], after
