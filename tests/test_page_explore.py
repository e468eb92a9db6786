"""Explore page (AppTest): a real run on disk, every view, the patient table and card, runs that cannot be opened."""
from __future__ import annotations

import json
import re

import polars as pl
import pytest

from core.run import generate_run
from core.scenario import load_scenario
from pages import metrics, open_page, use_data_dir


def shown(elements) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements]


def table_with(at, column: str):
    return next((d.value for d in at.dataframe if column in d.value.columns), None)


def open_planned(data_dir, view: str):
    at = open_explore()
    at.selectbox(key="ex_run").set_value(str(data_dir / "runs" / PLANNED)).run()
    at.radio(key="ex_view").set_value(view).run()
    assert not at.exception
    return at

PAGE = "views/explore.py"
RUN = "20260101T000000Z-aaaaaaaa"
N = 3_000


PLANNED = "20251231T000000Z-cccccccc"
NAME = "**Bold** ![x](http://evil.example/x.png)"


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    data = tmp_path_factory.mktemp("explore_page")
    # the run with a medical plan first: the newest run (the one Explore opens) is the default scenario's
    planned = load_scenario("brigade_okinawa").with_overrides(days=6, patients=250, seed=4, name=NAME)
    generate_run(planned, data / "runs" / PLANNED)
    scenario = load_scenario("default").with_overrides(patients=N, seed=8)
    generate_run(scenario, data / "runs" / RUN)
    generate_run(scenario.with_overrides(patients=100), data / "secret" / "locked", password="pw")
    return data


@pytest.fixture
def data_dir(run_dirs, monkeypatch):
    return use_data_dir(monkeypatch, run_dirs)


def open_explore():
    return open_page(PAGE)


def patients(run_dirs) -> pl.DataFrame:
    return pl.read_parquet(run_dirs / "runs" / RUN / "patients.parquet")


def test_opens_the_newest_run_with_key_figures_and_overview_charts(data_dir):
    at = open_explore()
    p = patients(data_dir)
    m = metrics(at)
    assert m["Patients"] == f"{N:,}"
    assert m["Killed in action"] == f"{p.filter(pl.col('outcome') == 'KIA').height:,}"
    assert m["Returned to duty"] == f"{p.filter(pl.col('outcome') == 'RTD').height:,}"
    assert len(at.get("plotly_chart")) == 6  # front, warfare type, category, triage, mechanism, body region


def test_every_view_renders_its_charts(data_dir):
    at = open_explore()
    expected = {"Flow": 2, "10-1-2": 1, "Occupancy": 1, "Capacity": 0, "Calibration": 0}
    for view, charts in expected.items():
        at.radio(key="ex_view").set_value(view).run()
        assert not at.exception, (view, at.exception)
        assert len(at.get("plotly_chart")) == charts, view
    at.radio(key="ex_view").set_value("Flow").run()
    sankey = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert sankey["type"] == "sankey" and "Evacuated out of theatre" in sankey["node"]["label"]
    assert sankey["node"]["label"][:5] == ["Point of injury", "Role 1", "Role 2", "Role 3", "Role 4"]
    at.radio(key="ex_view").set_value("Calibration").run()
    report = json.loads((data_dir / "runs" / RUN / "calibration.json").read_text())
    s = report["summary"]
    assert s["pass"] > 0 and s["pass"] + s["warn"] + s["n/a"] == len(report["targets"])
    headline = f"**{s['pass']} pass · {s['warn']} warn · {s['n/a']} not applicable**"
    lines = [md.value for md in at.markdown if md.value.startswith(headline)]
    assert lines and "DOMAIN" not in lines[0] and "§" not in lines[0]
    table = at.dataframe[0].value
    assert list(table["Figure"]) == [t["metric"] for t in report["targets"]]
    assert list(table["Status"].str.split().str[-1]) == [
        {"n/a": "applicable"}.get(t["status"], t["status"]) for t in report["targets"]]
    cfr = next(t for t in report["targets"] if t["id"] == "4")
    assert table.loc[list(table["Figure"]).index(cfr["metric"]), "Value"] == f"{cfr['value'] * 100:.1f} %"
    assert not any("{" in note for note in table["Note"])  # no raw dictionaries
    at.radio(key="ex_view").set_value("10-1-2").run()
    labels = [m.label for m in at.metric]
    assert labels[-3:] == ["First treatment within 10 min", "Medical facility within 60 min",
                           "Surgery within 120 min"]
    headers = list(at.dataframe[0].value.columns)
    assert not [h for h in headers if "_" in h] and "Share within" in headers  # no snake_case headers
    at.toggle(key="ex_t1_only").set_value(False).run()
    assert not at.exception


def test_patient_table_filters_and_the_card_shows_the_patient(data_dir):
    at = open_explore()
    at.radio(key="ex_view").set_value("Patients").run()
    p = patients(data_dir)
    at.multiselect(key="ex_f_triage").set_value(["T1"]).run()
    t1 = p.filter(pl.col("triage") == "T1").height
    assert any(f"{t1:,} patients match" in c.value for c in at.caption)
    first_t1 = p.filter(pl.col("triage") == "T1")["patient_id"].min()
    assert at.number_input(key="ex_pid").value == first_t1
    person = p.filter(pl.col("triage") != "T1").row(5, named=True)
    at.number_input(key="ex_pid").set_value(person["patient_id"]).run()
    assert at.subheader[0].value == f"{person['rank']} {person['given_name']} {person['family_name']}"
    at.text_input(key="ex_search").set_value(str(person["patient_id"])).run()
    assert any(c.value.startswith("0 patients match") for c in at.caption)  # not a T1 patient
    at.multiselect(key="ex_f_triage").set_value([]).run()
    assert any(c.value.startswith("1 patient matches") for c in at.caption)
    at.number_input(key="ex_pid").set_value(N + 5).run()
    assert any(f"no patient {N + 5:,} (ids are 1 to {N:,})" in w.value for w in at.warning)


def test_encrypted_run_from_another_folder_says_why_it_cannot_be_explored(data_dir):
    at = open_explore()
    at.text_input(key="ex_folder").set_value(str(data_dir / "secret")).run()
    locked = next(o for o in at.selectbox(key="ex_run").options if "cannot be explored" in o)
    assert locked
    path = str(data_dir / "secret" / "locked")
    at.selectbox(key="ex_run").set_value(path).run()
    assert not at.exception
    assert any("encrypted" in w.value and "decrypt" in w.value for w in at.warning)
    at.text_input(key="ex_folder").set_value(str(data_dir / "missing")).run()
    assert any("does not exist" in e.value for e in at.error)


def test_no_runs_yet_says_how_to_make_one(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path)
    at = open_explore()
    assert any("No runs yet" in i.value for i in at.info)


# --- run picker, capacity, compare, plain words ---------------------------------------------------------------

def test_runs_are_told_apart_by_scenario_start_time_patients_and_format(data_dir):
    at = open_explore()
    options = at.selectbox(key="ex_run").options
    newest = options[0]
    assert re.fullmatch(r"Default: three-front high-intensity defence · \d{4}-\d\d-\d\d \d\d:\d\d UTC · "
                        rf"{N:,} patients · Parquet · id \d{{8}}T\d{{6}}Z-\w+", newest), newest
    assert any(o.startswith(f"{NAME} · ") and "250 patients" in o for o in options)


def test_capacity_view_of_a_run_with_a_plan(data_dir):
    at = open_planned(data_dir, "Capacity")
    report = json.loads((data_dir / "runs" / PLANNED / "capacity.json").read_text())
    verdict_box = {"holds": at.success, "strained": at.warning, "overwhelmed": at.error}[report["verdict"]]
    assert report["summary"] in shown(verdict_box)
    m = metrics(at)
    attributable = report["deaths"]["attributable_to_capacity"]["total"]
    assert m["Attributable deaths"] == ("no change" if attributable == 0 else f"{attributable:+,}"
                                                    .replace("-", "−"))
    assert m["Diverted"] == f"{report['waiting']['patients_diverted']:,}"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts]
    assert titles[0].startswith("How full each resource was") and charts[0]["data"][0]["type"] == "heatmap"
    facility = at.selectbox(key="ex_cap_facility")
    assert facility.value == report["resources"][0]["facility"]  # Role 1 first
    assert titles[1] == facility.value  # that facility's resources over time against capacity
    assert "Patients waiting for each kind of resource" in titles
    assert "How long patients waited in all (care, beds, transport)" in titles
    assert any(t.startswith("Diverted past a full facility") for t in titles)
    enhanced = next(r["facility"] for r in report["resources"] if "Enhanced" in r["facility"])
    facility.set_value(enhanced).run()
    chart = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert chart["layout"]["title"]["text"] == enhanced
    notes = [a["text"] for a in chart["layout"]["annotations"]]
    assert "Operating tables" in notes and "Patients waiting (most in each hour)" in notes or \
        "Operating tables" in notes
    table = table_with(at, "Longest queue")
    assert list(table["Resource"]) == [r["resource"] for r in report["resources"]]
    assert not (table == "None").any().any()


def test_capacity_view_of_a_run_without_a_plan_says_it_had_unlimited_care(data_dir):
    at = open_explore()
    at.radio(key="ex_view").set_value("Capacity").run()
    assert any(i.startswith("This run had unlimited care") for i in shown(at.info))
    assert not at.get("plotly_chart")


def test_compare_two_runs_side_by_side(data_dir):
    at = open_explore()
    at.radio(key="ex_view").set_value("Compare").run()
    assert not at.exception
    other = at.selectbox(key="ex_compare_with")
    assert other.value == str(data_dir / "runs" / PLANNED)  # every other explorable run, not this one
    table = table_with(at, "Second run").set_index("Figure")
    mine = patients(data_dir)
    theirs = pl.read_parquet(data_dir / "runs" / PLANNED / "patients.parquet")
    assert table.loc["Patients", "First run"] == f"{N:,}" and table.loc["Patients", "Second run"] == "250"
    deaths = lambda p: p.filter(pl.col("outcome").is_in(["KIA", "DOW"])).height  # noqa: E731
    change = deaths(theirs) - deaths(mine)
    assert table.loc["Deaths (KIA + DOW)", "Difference"] == (f"+{change:,}" if change > 0 else f"−{-change:,}")
    assert table.loc["Plan verdict", "First run"] == "–"  # the first run had unlimited care
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert [c["layout"]["title"]["text"] for c in charts] == [
        "Casualties per day of the scenario", "Outcomes (share of each run's patients)",
        "Patients present at each role (solid: first run, dashed: second)",
        "T1 battle casualties within the 10-1-2 lines"]
    assert [t["name"].split(":")[0] for t in charts[0]["data"]] == ["First", "Second"]  # overlaid, one per run


def test_patient_card_in_plain_words(data_dir):
    at = open_explore()
    at.radio(key="ex_view").set_value("Patients").run()
    p = patients(data_dir)
    operated = pl.read_parquet(data_dir / "runs" / RUN / "events.parquet").filter(
        pl.col("detail") == "387713003")["patient_id"][0]
    at.number_input(key="ex_pid").set_value(int(operated)).run()
    timeline = at.tabs[0].dataframe[0].value
    assert "Surgical procedure (SNOMED CT 387713003)" in list(timeline["Detail"])  # the code with its term
    assert not (timeline == "None").any().any() and "treatment_start" not in set(timeline["Event"])
    table = at.dataframe[0].value
    assert not {"ROLE4", "IN_CARE"} & set(table["outcome"])
    assert set(table["outcome"]) <= {"Returned to duty", "Killed in action", "Died of wounds",
                                     "Evacuated out of theatre", "Still in care"}
    assert p.height == N


def test_a_scenario_name_is_shown_as_text_never_as_markdown(data_dir):
    at = open_planned(data_dir, "Overview")
    caption = next(c.value for c in at.caption if "seed 4" in c.value)
    assert caption.startswith("\\*\\*Bold\\*\\* \\!\\[x\\]\\(http\\:\u200b//evil")  # no bold, image or link


def test_runs_from_another_folder_are_read_only_where_the_operator_allows(data_dir, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    run_id = generate_run(load_scenario("default").with_overrides(patients=100, seed=2), outside / "run-x")["run_id"]
    listed = lambda: any(run_id in o for o in at.selectbox(key="ex_run").options)  # noqa: E731
    monkeypatch.delenv("MPG_EXPLORE_FOLDERS", raising=False)
    at = open_explore()
    at.text_input(key="ex_folder").set_value(str(outside)).run()
    assert any("is outside the folders Explore may read" in e for e in shown(at.error))
    assert not listed()
    at.text_input(key="ex_folder").set_value("/etc").run()
    assert any(e.startswith("/etc is outside the folders Explore may read") for e in shown(at.error))
    monkeypatch.setenv("MPG_EXPLORE_FOLDERS", str(outside))
    at.text_input(key="ex_folder").set_value(str(outside)).run()
    assert not at.exception and not [e for e in shown(at.error) if "outside the folders" in e]
    assert listed()
