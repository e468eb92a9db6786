"""Scenario page: widgets -> Scenario (core.scenario_edit) and the page itself (AppTest): live preview, presets,
normalised shares, problems next to their widgets, the hand-over to Generate, import/export, saved scenarios."""
from __future__ import annotations

import json
from datetime import date

import pytest

import resources
from core import reference
from core import scenario_edit as se
from core.scenario import load_scenario
from pages import metrics, open_app


# --- core.scenario_edit ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["default", *reference.presets()])
def test_form_round_trip_gives_back_the_same_scenario(preset):
    scenario = load_scenario(preset)
    edit = se.scenario_from_form(se.form_from_scenario(scenario))
    assert edit.error is None and not edit.notes
    assert edit.scenario.sha256() == scenario.sha256()


def test_shares_that_do_not_add_up_are_scaled_and_the_note_says_how():
    shares, note, problem = se.normalise_shares({"BI": 40, "NBI": 20, "DIS": 20, "BSI": 0}, "category_mix")
    assert problem is None and shares == {"BI": 0.5, "NBI": 0.25, "DIS": 0.25, "BSI": 0.0}
    assert note == "category_mix: shares sum to 80 %, scaled to 100 % (BI 50.0 %, NBI 25.0 %, DIS 25.0 %)"
    assert se.normalise_shares({"a": 60, "b": 40}, "x")[1] is None


def test_shares_that_cannot_be_scaled_say_why():
    assert "every share is 0 %" in se.normalise_shares({"BI": 0, "NBI": None}, "category_mix")[2]
    assert se.normalise_shares({"BI": -5, "NBI": 50}, "category_mix")[2] == (
        "category_mix: BI -5 is negative (shares are 0 % or more)")


def form(**changes):
    f = se.form_from_scenario(load_scenario("default"))
    f.update(changes)
    return f


def test_nation_tables_are_checked_per_front():
    f = form()
    f["nations"] = [r for r in f["nations"] if r["front"] != "Finland"]  # Finland left without nations
    f["nations"].append({"front": "Atlantis", "nation": "USA", "share": 10})
    f["nations"].append({"front": "Poland", "nation": "POL", "share": 5})  # POL twice
    problems = se.scenario_from_form(f).problems["fronts"]
    assert any("front Atlantis is not in the fronts table" in p for p in problems)
    assert any("'Finland': none given" in p for p in problems)
    assert any("POL appears more than once" in p for p in problems)


def test_a_partner_nation_needs_allow_partners_and_the_problem_names_it():
    f = form()
    f["nations"][0]["nation"] = "AUS"
    edit = se.scenario_from_form(f)
    assert edit.scenario is None
    assert "allow_partners" in edit.problems["fronts"][0] and "'AUS'" in edit.problems["fronts"][0]
    f["allow_partners"] = True
    assert se.scenario_from_form(f).scenario.fronts[0].nationality_mix["AUS"] > 0


def test_front_shares_are_normalised_with_a_note():
    f = form()
    for row in f["fronts"]:
        row["casualty_share"] = 50
    edit = se.scenario_from_form(f)
    assert [round(fr.casualty_share, 4) for fr in edit.scenario.fronts] == [0.3333, 0.3333, 0.3333]
    assert "sum to 150 %" in edit.notes["fronts"][0]


def test_impossible_combinations_land_in_their_section():
    f = form(days=3, special_events=[{"type": "ambush", "day": 5}], tempo=se.CUSTOM_TEMPO, tempo_anchors="1, x")
    edit = se.scenario_from_form(f)
    assert edit.scenario is None
    assert any("tempo" in p and "'1, x'" in p for p in edit.problems["tempo"])
    f["tempo_anchors"] = "1, 3, 1"
    edit = se.scenario_from_form(f)
    assert edit.problems["events"] == ["special_events[0].day: 5 is not allowed (a whole number from 1 to 3)"]
    f["special_events"] = [{"type": "ambush", "day": 2, "size": 30, "front": "Estonia"}]
    edit = se.scenario_from_form(f)
    assert edit.scenario.tempo == (1.0, 3.0, 1.0) and edit.scenario.special_events[0].front == "Estonia"


def test_environment_and_triage_override_rows():
    f = form(environment=[{"condition": "rain", "fronts": "Poland, Estonia", "first_day": 2, "last_day": 4},
                          {"condition": None, "fronts": None, "first_day": None, "last_day": None}],
             triage_override=[{"applies_to": "BI", "T1": 50, "T2": 30, "T3": 10, "T4": 0}])
    sc = se.scenario_from_form(f).scenario
    assert sc.environment[0].fronts == ("Poland", "Estonia") and sc.environment[0].days == (2, 4)
    assert len(sc.environment) == 1  # the empty row an editor adds is ignored
    assert sc.triage_override["BI"]["T1"] == pytest.approx(50 / 90)
    f["environment"][0]["fronts"] = "Mars"
    assert "environment[0].fronts" in se.scenario_from_form(f).problems["environment"][0]


# --- the page ---------------------------------------------------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MPG_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    resources.database.clear()
    resources.job_registry.clear()
    yield tmp_path
    resources.database.clear()


def open_scenario():
    return open_app()  # the Scenario page is the default page


def test_scenario_page_renders_a_preview(data_dir):
    at = open_scenario()
    assert metrics(at)["Patients in preview"] == "3,000"
    assert len(at.get("plotly_chart")) == 5  # per day, per hour, triage, outcomes, mechanism
    assert at.session_state["scenario"].sha256() == load_scenario("default").sha256()
    assert at.session_state["scenario_error"] is None


def test_changing_preset_redraws_the_preview(data_dir):
    at = open_scenario()
    at.selectbox(key="sc_preset").set_value("peacekeeping").run()
    assert not at.exception
    assert metrics(at)["Battle injuries"] == "10%"  # the preset's mix, not the default's 35 %
    assert at.text_input(key="sc_name").value == "Peacekeeping / stabilisation mission"
    assert at.session_state["scenario"].sha256() == load_scenario("peacekeeping").sha256()


def test_a_slider_change_regenerates_the_preview_and_explains_the_scaling(data_dir):
    at = open_scenario()
    at.slider(key="sc_cat_BI").set_value(80.0).run()
    notes = [i.value for i in at.info]
    assert any(n.startswith("category_mix: shares sum to 145 %, scaled to 100 %") for n in notes)
    assert metrics(at)["Battle injuries"] == "55%"  # 80 / 145
    assert at.session_state["scenario"].category_mix["BI"] == pytest.approx(80 / 145)
    at.number_input(key="sc_seed").set_value(99).run()
    assert at.session_state["scenario"].seed == 99


def test_an_impossible_scenario_is_explained_and_blocks_generate(data_dir):
    at = open_scenario()
    for c in ("BI", "NBI", "DIS", "BSI"):
        at.slider(key=f"sc_cat_{c}").set_value(0.0)
    at.run()
    errors = [e.value for e in at.error]
    assert any("every share is 0 %, so they cannot be scaled" in e for e in errors)
    assert at.session_state["scenario_error"].startswith("category_mix: every share is 0 %")
    assert any("cannot be previewed or generated" in e for e in errors)
    assert not at.get("plotly_chart")
    at.switch_page("views/generate.py").run()
    assert any("The scenario is not valid, so it cannot be generated" in e.value for e in at.error)
    start = next(b for b in at.button if "Generate" in b.label or "Start" in b.label)
    assert start.disabled


def test_custom_tempo_anchors(data_dir):
    at = open_scenario()
    at.selectbox(key="sc_tempo").set_value(se.CUSTOM_TEMPO).run()
    at.text_input(key="sc_tempo_anchors").set_value("1, 2, zero").run()
    assert any("tempo: '1, 2, zero' is not allowed" in e.value for e in at.error)
    at.text_input(key="sc_tempo_anchors").set_value("1, 4, 1").run()
    assert at.session_state["scenario"].tempo == (1.0, 4.0, 1.0)
    assert at.session_state["scenario_error"] is None


def test_edits_survive_a_visit_to_another_page(data_dir):
    at = open_scenario()
    at.number_input(key="sc_days").set_value(3).run()
    at.slider(key="sc_wt_drone").set_value(2.5).run()
    at.switch_page("views/explore.py").run()
    at.switch_page("views/scenario.py").run()
    assert not at.exception
    assert at.number_input(key="sc_days").value == 3
    assert at.slider(key="sc_wt_drone").value == 2.5
    sc = at.session_state["scenario"]
    assert sc.days == 3 and [f.name for f in sc.fronts] == ["Poland", "Estonia", "Finland"]


def test_import_pasted_json_or_say_why_not(data_dir):
    at = open_scenario()
    at.text_area(key="sc_paste").set_value("{not json").run()
    at.button(key="sc_paste_go").click().run()
    assert any(e.value.startswith("the pasted JSON is not a valid scenario: not valid JSON") for e in at.error)
    bad = {"fronts": [{"name": "A", "casualty_share": 1, "nationality_mix": {"XXX": 1}}]}
    at.text_area(key="sc_paste").set_value(json.dumps(bad)).run()
    at.button(key="sc_paste_go").click().run()
    assert any("fronts[0].nationality_mix: 'XXX' is not allowed" in e.value for e in at.error)
    good = load_scenario("arctic_operation").to_dict() | {"name": "Imported arctic", "days": 5,
                                                          "start": "2026-01-10T06:00:00Z"}
    at.text_area(key="sc_paste").set_value(json.dumps(good)).run()
    at.button(key="sc_paste_go").click().run()
    assert not [e for e in at.error if "not a valid scenario" in e.value]
    assert any("Imported 'Imported arctic'" in s.value for s in at.success)
    assert at.text_input(key="sc_name").value == "Imported arctic"
    assert at.date_input(key="sc_start_date").value == date(2026, 1, 10)
    assert at.number_input(key="sc_start_hour").value == 6
    sc = at.session_state["scenario"]
    assert sc.name == "Imported arctic" and sc.days == 5 and [f.name for f in sc.fronts] == [
        f.name for f in load_scenario("arctic_operation").fronts]


def test_without_a_database_preview_import_and_export_still_work(data_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:1/test")
    resources.database.clear()
    at = open_scenario()
    assert any("database is unavailable" in w.value for w in at.warning)
    assert metrics(at)["Patients in preview"] == "3,000"
    export = at.get("download_button")
    assert export, "the Export JSON button is there without a database"


def test_save_version_load_duplicate_and_delete_in_the_database(data_dir):
    at = open_scenario()
    assert not [w for w in at.warning if "database is unavailable" in w.value]
    at.text_input(key="sc_save_name").set_value("Baltic test")
    at.text_input(key="sc_save_description").set_value("first cut")
    at.button(key="sc_save").click().run()
    assert any(s.value == "Saved 'Baltic test' as version 1." for s in at.success)
    assert at.session_state["scenario_version"] == 1 and at.session_state["scenario_name"] == "Baltic test"

    at.number_input(key="sc_days").set_value(5).run()
    assert at.session_state["scenario_version"] is None  # edited since the save
    at.button(key="sc_save").click().run()
    assert any(s.value == "Saved 'Baltic test' as version 2." for s in at.success)
    versions = at.selectbox(key="sc_load_version").options  # newest first, with the description
    assert [v.split(" · ")[0] for v in versions] == ["v2", "v1"] and versions[1].endswith("first cut")

    at.selectbox(key="sc_load_version").set_value(1)
    at.button(key="sc_load").click().run()
    assert any(s.value == "Loaded 'Baltic test' version 1 from the database." for s in at.success)
    assert at.number_input(key="sc_days").value == 8
    assert at.session_state["scenario_version"] == 1

    at.switch_page("views/generate.py").run()
    assert any("saved as Baltic test, version 1" in c.value for c in at.caption)
    at.switch_page("views/scenario.py").run()

    at.text_input(key="sc_dup_name").set_value("Copy A")
    at.button(key="sc_dup").click().run()
    assert at.selectbox(key="sc_load_name").options == ["Baltic test (v2)", "Copy A (v1)"]

    at.selectbox(key="sc_load_name").set_value("Baltic test")
    at.button(key="sc_delete").click().run()
    assert any("tick 'yes, delete every version of 'Baltic test''" in e.value for e in at.error)
    at.checkbox(key="sc_delete_confirm").check()
    at.button(key="sc_delete").click().run()
    assert any(s.value == "Deleted 'Baltic test' (2 versions)." for s in at.success)
    assert at.selectbox(key="sc_load_name").options == ["Copy A (v1)"]

    at.text_input(key="sc_save_name").set_value("x" * 101)
    at.button(key="sc_save").click().run()
    assert any("scenario name is 101 characters long" in e.value for e in at.error)
