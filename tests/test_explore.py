"""core.explore: finding runs, reading every format lazily, and the aggregates Explore and Replay draw."""
from __future__ import annotations

import json

import polars as pl
import pytest

from core import explore, runs, settings
from core.run import generate_run
from core.scenario import load_scenario
from core.schema import FACILITIES

N = 2_500


@pytest.fixture(scope="module")
def scenario():
    return load_scenario("default").with_overrides(patients=N, seed=21)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, scenario):
    """One data folder with the same run in four formats, plus an encrypted and a cancelled run."""
    data = tmp_path_factory.mktemp("explore_data")
    root = data / "runs"
    generate_run(scenario, root / "parquet")
    generate_run(scenario, root / "csvgz", fmt="csv", compress=True)
    generate_run(scenario, root / "ndjson", fmt="ndjson")
    generate_run(scenario, root / "json", fmt="json")
    generate_run(scenario.with_overrides(patients=200), root / "secret", password="pw")
    cancelled = root / "cancelled"
    cancelled.mkdir()
    (cancelled / "manifest.json").write_text(json.dumps({"run_id": "c", "status": "cancelled", "files": []}))
    return data


@pytest.fixture
def data_dir(runs_root, monkeypatch):
    monkeypatch.setenv("MPG_DATA_DIR", str(runs_root))
    return runs_root


@pytest.fixture(scope="module")
def run(runs_root):
    return explore.open_run(runs_root / "runs" / "parquet")


@pytest.fixture(scope="module")
def patients(run):
    return run.patients().collect()


def test_the_run_list_says_why_some_runs_cannot_be_explored(data_dir):
    rows = {r["out_dir"].rsplit("/", 1)[-1]: r for r in runs.list_runs(settings.runs_dir(), interrupted=False)}
    assert set(rows) == {"parquet", "csvgz", "ndjson", "json", "secret", "cancelled"}
    assert rows["parquet"]["reason"] is None and rows["parquet"]["patients"] == N
    assert "encrypted" in rows["secret"]["reason"] and "python -m core decrypt" in rows["secret"]["reason"]
    assert "cancelled" in rows["cancelled"]["reason"]
    with pytest.raises(explore.RunNotExplorable, match="encrypted"):
        explore.open_run(data_dir / "runs" / "secret")
    with pytest.raises(explore.RunNotExplorable, match="no readable manifest"):
        explore.open_run(data_dir)


def test_runs_are_listed_from_another_folder_or_a_single_run_folder(data_dir, tmp_path, scenario, monkeypatch):
    generate_run(scenario.with_overrides(patients=100), tmp_path / "elsewhere" / "one")
    for root in (tmp_path / "elsewhere", tmp_path / "elsewhere" / "one"):
        rows = runs.list_runs(settings.runs_dir(), root)
        assert [r["out_dir"] for r in rows if r["out_dir"].endswith("one")] == [str(tmp_path / "elsewhere" / "one")]
    # a typed folder is read only inside the data folder or a folder the operator allows (MPG_EXPLORE_FOLDERS)
    assert "outside the folders Explore may read" in explore.missing_folder(str(tmp_path / "elsewhere"))
    assert "outside the folders Explore may read" in explore.missing_folder("/etc")
    monkeypatch.setenv("MPG_EXPLORE_FOLDERS", str(tmp_path / "elsewhere"))
    assert explore.missing_folder(str(tmp_path / "elsewhere")) is None
    assert explore.missing_folder(str(tmp_path / "elsewhere" / "nope")).startswith("folder ")
    assert explore.missing_folder("/etc").startswith("/etc is outside")


@pytest.mark.parametrize("fmt", ["csvgz", "ndjson", "json"])
def test_every_format_reads_back_the_same_tables_with_contract_types(runs_root, data_dir, patients, fmt):
    other = explore.open_run(runs_root / "runs" / fmt)
    theirs = other.patients().collect()
    assert theirs.schema["injury_time"] == pl.Datetime("us", "UTC")
    assert theirs.schema["polytrauma"] == pl.Boolean
    assert theirs.sort("patient_id").select(patients.columns).equals(patients.sort("patient_id"))
    assert explore.flow_links(other.patients(), other.events()).equals(
        explore.flow_links(explore.open_run(runs_root / "runs" / "parquet").patients(),
                           explore.open_run(runs_root / "runs" / "parquet").events()))
    assert other.vitals().select(pl.len()).collect().item() == explore.open_run(
        runs_root / "runs" / "parquet").vitals().select(pl.len()).collect().item()


def test_gzip_tables_are_converted_once(runs_root, data_dir):
    run = explore.open_run(runs_root / "runs" / "csvgz")
    run.events().select(pl.len()).collect()
    converted = [p for p in (runs_root / "explore_cache").rglob("events.parquet") if p.parent.name.count(run.run_id)]
    assert len(converted) == 1
    stamp = converted[0].stat().st_mtime_ns
    run.events().select(pl.len()).collect()
    assert converted[0].stat().st_mtime_ns == stamp


def test_key_figures_count_the_patients_table(run, patients):
    f = explore.key_figures(run.patients())
    assert f["patients"] == N
    assert f["kia"] == patients.filter(pl.col("outcome") == "KIA").height
    assert f["deaths"] == patients.filter(pl.col("outcome").is_in(["KIA", "DOW"])).height
    bi = patients.filter(pl.col("category") == "BI")
    assert f["bi_cfr"] == pytest.approx(bi.filter(pl.col("outcome").is_in(["KIA", "DOW"])).height / bi.height)
    assert f["fronts"] == 3


def test_counts_and_timelines_add_up_to_every_patient(run):
    p = run.patients()
    for column in ("category", "mechanism", "body_region", "triage"):
        assert explore.counts(p, column)["patients"].sum() == N
    by_front = explore.over_time(p, "front", "6h")
    assert by_front["patients"].sum() == N
    assert set(by_front["front"]) == {"Poland", "Estonia", "Finland"}
    assert explore.over_time(p, "warfare_type", "1d")["time"].n_unique() == 8  # the default scenario's days
    assert explore.outcomes_by_facility(p)["last_facility"].unique(maintain_order=True).to_list() == [
        f for f in FACILITIES if f in set(explore.outcomes_by_facility(p)["last_facility"])]


def test_sankey_flow_is_conserved_at_every_facility(run):
    links = explore.flow_links(run.patients(), run.events())
    outcomes = set(explore.OUTCOME_LABELS.values())
    assert links.filter(pl.col("target").is_in(outcomes))["patients"].sum() == N
    assert links.filter(pl.col("source") == "POI")["patients"].sum() == N
    for facility in ("R1", "R2", "R3", "R4"):
        inflow = links.filter(pl.col("target") == facility)["patients"].sum()
        outflow = links.filter(pl.col("source") == facility)["patients"].sum()
        assert inflow == outflow, facility
    assert links.filter(pl.col("target") == "Killed in action")["source"].to_list() == ["POI"]


def test_ten_one_two_matches_the_calibration_report(run):
    """The 1-hour line for T1 battle casualties outside MASCAL is calibration target 12a."""
    timings = explore.ten_one_two(run.patients(), run.events())["summary"]
    mtf = timings.filter(pl.col("measure") == "medical facility").row(0, named=True)
    target = next(t for t in run.calibration()["targets"] if t["id"] == "12a")
    assert mtf["within_share"] == pytest.approx(target["value"], abs=1e-4)
    assert mtf["reached"] == target["n"]
    every = explore.ten_one_two(run.patients(), run.events(), t1_battle_only=False)["summary"]
    assert every["patients"][0] > timings["patients"][0]


def test_occupancy_is_never_negative_and_ends_with_the_patients_still_in_care(run, patients):
    start, end = run.window
    occ = explore.occupancy(run.events(), start, end, "6h")
    assert occ["patients"].min() >= 0
    assert set(occ["facility"]) == set(explore.PLACES)
    last = occ.filter(pl.col("time") == occ["time"].max())["patients"].sum()
    assert last == patients.filter(pl.col("outcome") == "IN_CARE").height


def test_replay_frames_account_for_every_patient_and_follow_filters(run, patients):
    start, end = run.window
    frames = explore.replay_frames(run.patients(), run.events(), start, end, "3h")
    final = frames.row(-1, named=True)
    assert final["total_injured"] == N
    assert sum(final[p] for p in explore.PLACES) + final["total_died"] + final["total_rtd"] + \
        final["total_evacuated"] == N
    assert final["total_died"] == patients.filter(pl.col("outcome").is_in(["KIA", "DOW"])).height
    assert frames.select(explore.PLACES).min().row(0) >= (0,) * len(explore.PLACES)
    assert frames["time"].is_sorted() and frames["time"][0] == start
    estonia = explore.replay_frames(run.patients(), run.events(), start, end, "3h", {"front": ["Estonia"],
                                                                                    "triage": ["T1", "T2"]})
    assert estonia["total_injured"][-1] == patients.filter(
        (pl.col("front") == "Estonia") & pl.col("triage").is_in(["T1", "T2"])).height
    assert explore.replay_step(start, end) == "3h"  # 15 days of window in at most 150 frames


def test_patient_table_filters_searches_and_pages(run, patients):
    page, total = explore.patient_page(run.patients(), {"triage": ["T1"], "front": ["Poland"]}, limit=10)
    assert total == patients.filter((pl.col("triage") == "T1") & (pl.col("front") == "Poland")).height
    assert page.height == 10 and page["patient_id"].is_sorted()
    second, _ = explore.patient_page(run.patients(), {"triage": ["T1"], "front": ["Poland"]}, limit=10, offset=10)
    assert second["patient_id"][0] > page["patient_id"][-1]
    someone = patients.row(123, named=True)
    found, n = explore.patient_page(run.patients(), search=someone["family_name"].upper())
    assert someone["patient_id"] in found["patient_id"].to_list() and n >= 1
    by_id, n = explore.patient_page(run.patients(), search=str(someone["patient_id"]))
    assert n == 1 and by_id["given_name"][0] == someone["given_name"]


def test_patient_card_has_the_whole_record(run):
    card = explore.patient_card(run, 42)
    assert card["patient"]["patient_id"] == 42
    assert card["events"]["seq"].to_list() == list(range(card["events"].height))
    assert card["events"]["event"][0] == "injury" and card["events"]["minutes_after_injury"][0] == 0
    assert card["conditions"]["rank"][0] == 1
    if card["patient"]["outcome"] != "KIA":
        assert card["vitals_wide"].height >= 1 and "Heart rate" in card["vitals_wide"].columns
    assert explore.patient_card(run, N + 1) is None


def test_patient_card_carries_the_mist_at_hand_over(run):
    card = explore.patient_card(run, 42)
    p = card["patient"]
    text = card["handover"]
    assert text.startswith("Mechanism: ") and "| Injuries: " in text and f"Age: {p['age']}, {p['sex']}" in text
    assert p["condition_display"] in text and f"triage {p['triage']}" in text


def test_preview_summary_describes_an_in_memory_sample():
    from core import generator
    sample = generator.generate(load_scenario("peacekeeping").with_overrides(patients=1500)).patients
    summary = explore.preview_summary(sample)
    assert summary["figures"]["patients"] == 1500
    assert summary["per_day"]["patients"].sum() == 1500
    assert summary["per_hour"]["hour"].max() <= 23


# --- a run's medical plan at work ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planned_runs(tmp_path_factory):
    """The Okinawa brigade (a medical plan) for a week, in Parquet and in CSV + gzip."""
    root = tmp_path_factory.mktemp("planned")
    scenario = load_scenario("brigade_okinawa").with_overrides(days=7, patients=400, seed=5)
    generate_run(scenario, root / "parquet")
    generate_run(scenario, root / "csvgz", fmt="csv", compress=True)
    return root


def test_capacity_readers_give_the_report_and_the_load_table_in_every_format(planned_runs, monkeypatch):
    monkeypatch.setenv("MPG_DATA_DIR", str(planned_runs))
    parquet, csvgz = (explore.open_run(planned_runs / f) for f in ("parquet", "csvgz"))
    assert explore.has_plan(parquet) and explore.has_plan(csvgz)
    report = explore.capacity_report(parquet)
    assert report == json.loads((planned_runs / "parquet" / "capacity.json").read_text())
    table = explore.load(parquet)
    assert table.schema == explore.LOAD_TYPES  # time as UTC datetimes, counts as integers
    assert explore.load(csvgz).equals(table)  # the same table read back from CSV + gzip
    ot = next(r for r in report["resources"] if r["resource"] == "operating tables")
    rows = table.filter((pl.col("facility") == ot["facility"]) & (pl.col("resource") == "operating tables"))
    assert rows["occupancy_peak"].max() == ot["peak"] and rows["queue_peak"].max() == ot["longest_queue"]


def test_capacity_aggregates_account_for_every_patient_and_every_diversion(planned_runs):
    run = explore.open_run(planned_runs / "parquet")
    report, table = explore.capacity_report(run), explore.load(run)
    patients = run.patients().collect()
    waits = explore.waits(run.patients())
    assert waits["patients"].sum() == patients.height
    assert waits.filter(pl.col("wait") == "no wait")["patients"].sum() == patients.filter(
        pl.col("wait_min") == 0).height
    assert waits["wait"].unique(maintain_order=True).to_list() == [
        b[1] for b in explore.WAIT_BINS if b[1] in set(waits["wait"])]  # shortest wait first
    diverted = explore.diversions(run.patients(), run.events())
    assert diverted["patients"].sum() == report["waiting"]["diversions"]
    assert set(diverted["front"]) <= {"Brigade"} and set(diverted["facility"]) <= {"R1", "R2", "R3"}
    start, end = run.window
    full = explore.fullness(table, "1d")
    assert full["time"].n_unique() == (end - start).days + 1  # the week and the follow-up, day by day
    assert (full["full"] >= 0).all() and full.filter(pl.col("resource") == "MEDEVAC helicopters").is_empty()
    queues = explore.queues(table, "3h", start, end)
    assert queues["time"].to_list() == explore.replay_frames(run.patients(), run.events(), start, end,
                                                              "3h")["time"].to_list()
    most = max(r["longest_queue"] for r in report["resources"] if r["resource"] == "operating tables")
    assert queues["operating table"].max() >= most  # summed over facilities, the most in each step


def test_a_run_without_a_plan_had_unlimited_care(run):
    assert not explore.has_plan(run) and explore.capacity_report(run) is None
    with pytest.raises(explore.RunNotExplorable, match="no load file"):
        explore.load(run)


def test_comparison_figures_and_their_differences(run, planned_runs):
    start, end = run.window
    p, e = run.patients(), run.events()
    occupancy = explore.occupancy(e, start, end, "6h")
    plain = explore.comparison(explore.key_figures(p), explore.ten_one_two(p, e)["summary"], occupancy)
    f = explore.key_figures(p)
    assert plain["Deaths (KIA + DOW)"] == (f["kia"] + f["dow"], "count")
    assert plain["Peak patients at Role 2"] == (occupancy.filter(pl.col("facility") == "R2")["patients"].max(),
                                                "count")
    assert plain["T1 at a facility within 1 h"][1] == "share" and "Plan verdict" not in plain
    other = explore.open_run(planned_runs / "parquet")
    p2, e2 = other.patients(), other.events()
    s2, end2 = other.window
    planned = explore.comparison(explore.key_figures(p2), explore.ten_one_two(p2, e2)["summary"],
                                 explore.occupancy(e2, s2, end2, "6h"), explore.capacity_report(other))
    assert planned["Plan verdict"][1] == "text" and "Deaths due to capacity" in planned
    rows = {r["figure"]: r for r in explore.differences(planned, plain)}
    assert rows["Patients"]["difference"] == planned["Patients"][0] - N
    assert rows["Deaths due to capacity"]["before"] is None and rows["Deaths due to capacity"]["difference"] is None
    assert rows["Plan verdict"]["difference"] is None  # words have no difference
