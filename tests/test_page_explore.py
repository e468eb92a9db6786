"""Explore page (AppTest): a real run on disk, every view, the patient table and card, runs that cannot be opened."""
from __future__ import annotations

import json

import polars as pl
import pytest

from core.run import generate_run
from core.scenario import load_scenario
from pages import metrics, open_page, use_data_dir

PAGE = "views/explore.py"
RUN = "20260101T000000Z-aaaaaaaa"
N = 3_000


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    data = tmp_path_factory.mktemp("explore_page")
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
    expected = {"Flow": 2, "10-1-2": 1, "Occupancy": 1, "Calibration": 0}
    for view, charts in expected.items():
        at.radio(key="ex_view").set_value(view).run()
        assert not at.exception, (view, at.exception)
        assert len(at.get("plotly_chart")) == charts, view
    at.radio(key="ex_view").set_value("Flow").run()
    sankey = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert sankey["type"] == "sankey" and "Evacuated out of theatre" in sankey["node"]["label"]
    at.radio(key="ex_view").set_value("Calibration").run()
    report = json.loads((data_dir / "runs" / RUN / "calibration.json").read_text())
    s = report["summary"]
    assert s["pass"] > 0 and s["pass"] + s["warn"] + s["n/a"] == len(report["targets"])
    headline = f"**{s['pass']} pass · {s['warn']} warn · {s['n/a']} not applicable**"
    assert [md.value for md in at.markdown if md.value.startswith(headline)], [md.value for md in at.markdown]
    shown = at.dataframe[0].value
    assert list(shown["metric"]) == [t["metric"] for t in report["targets"]]
    assert list(shown["status"]) == [t["status"] for t in report["targets"]]
    at.radio(key="ex_view").set_value("10-1-2").run()
    labels = [m.label for m in at.metric]
    assert "Medical facility (r1+) within 60 min" in labels
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
    assert any(f"no patient {N + 5}" in w.value for w in at.warning)


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
