"""Scenario page: widgets -> Scenario (core.scenario_edit) and the page itself (AppTest): live preview, presets,
normalised shares, problems next to their widgets, the hand-over to Generate, import/export, saved scenarios."""
from __future__ import annotations

import json
import re
from datetime import date

import pytest

import resources
from core import reference
from core import scenario_edit as se
from core.scenario import load_scenario
from pages import metrics, open_app

PLAN_R2E_TABLES = "sc_plan|Brigade|r2_enhanced|operating_tables"


def table_with(at, column: str):
    """The shown table (st.dataframe) that has ``column``, or None."""
    return next((d.value for d in at.dataframe if d.key is None and column in d.value.columns), None)


def tab(at, label: str):
    """Open a tab of the form, as a click on it does (only the open tab is drawn)."""
    at.session_state["sc_tab"] = label
    at.run()
    assert not at.exception, at.exception
    return at


def shown(elements) -> list[str]:
    """What the reader sees of Markdown elements: the text without the escapes that keep user text literal."""
    return [re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements]


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
    assert note == "category_mix adds up to 80 %, scaled to 100 % (BI 50.0 %, NBI 25.0 %, DIS 25.0 %)"
    assert se.normalise_shares({"a": 60, "b": 40}, "x")[1] is None


def test_shares_that_cannot_be_scaled_say_why():
    assert "every share is 0 %" in se.normalise_shares({"BI": 0, "NBI": None}, "category_mix")[2]
    assert se.normalise_shares({"BI": -5, "NBI": 50}, "Casualty mix", se.CATEGORY_WORDS)[2] == (
        "Casualty mix: battle injury -5 % is negative (shares are 0 % or more)")


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
    assert len([p for p in problems if "'Finland'" in p]) == 1  # said once, not again as an empty mix
    assert any("'Finland': none given" in p for p in problems)
    assert any("POL appears more than once" in p for p in problems)


def test_a_partner_nation_needs_allow_partners_and_the_problem_names_it():
    f = form()
    f["nations"][0]["nation"] = "AUS"
    edit = se.scenario_from_form(f)
    assert edit.scenario is None
    assert edit.problems["fronts"] == ["Front Poland, nations: 'AUS' is not allowed (ISO 3166-1 alpha-3 codes of "
                                       "the 32 NATO nations; partners AUS, NZL need 'Allow partner nations' "
                                       "switched on)"]
    f["allow_partners"] = True
    assert se.scenario_from_form(f).scenario.fronts[0].nationality_mix["AUS"] > 0


def test_front_shares_are_normalised_with_a_note():
    f = form()
    for row in f["fronts"]:
        row["casualty_share"] = 50
    edit = se.scenario_from_form(f)
    assert [round(fr.casualty_share, 4) for fr in edit.scenario.fronts] == [0.3333, 0.3333, 0.3333]
    assert edit.notes["fronts"][0].startswith("Front casualty shares adds up to 150 %, scaled to 100 %")


def test_impossible_combinations_land_in_their_section():
    f = form(days=3, special_events=[{"type": "ambush", "day": 5}], tempo=se.CUSTOM_TEMPO, tempo_anchors="1, x")
    edit = se.scenario_from_form(f)
    assert edit.scenario is None
    assert any(p.startswith("Tempo: '1, x' is not allowed") for p in edit.problems["tempo"])
    f["tempo_anchors"] = "1, 3, 1"
    edit = se.scenario_from_form(f)
    assert edit.problems["events"] == ["Special event 1, day: 5 is not allowed (a whole number from 1 to 3)"]
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
    assert se.scenario_from_form(f).problems["environment"][0].startswith("Environment row 1, fronts: ")


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
    at = tab(open_scenario(), "Casualty mix")
    at.slider(key="sc_cat_BI").set_value(80.0).run()
    notes = shown(at.info)
    assert [n for n in notes if n.startswith("Casualty mix")] == [
        "Casualty mix adds up to 145 %, scaled to 100 % (battle injury 55.2 %, non-battle injury 13.8 %, "
        "disease 22.8 %, battle stress 8.3 %)"]
    assert metrics(at)["Battle injuries"] == "55%"  # 80 / 145
    assert at.session_state["scenario"].category_mix["BI"] == pytest.approx(80 / 145)
    tab(at, "Basics").number_input(key="sc_seed").set_value(99).run()
    assert at.session_state["scenario"].category_mix["BI"] == pytest.approx(80 / 145)  # kept, its tab closed
    assert at.session_state["scenario"].seed == 99


def test_an_impossible_scenario_is_explained_and_blocks_generate(data_dir):
    at = tab(open_scenario(), "Casualty mix")
    for c in ("BI", "NBI", "DIS", "BSI"):
        at.slider(key=f"sc_cat_{c}").set_value(0.0)
    at.run()
    errors = shown(at.error)
    assert errors.count("Casualty mix: every share is 0 %, so they cannot be scaled to 100 % (give at least one a "
                        "positive share)") == 1
    assert at.session_state["scenario_error"].startswith("Casualty mix: every share is 0 %")
    stale = [w for w in shown(at.warning) if w.startswith("**Preview not current.**")]
    assert stale and "cannot be previewed or generated" in stale[0] and "Casualty mix: every share" in stale[0]
    assert any("last valid scenario, not current" in c for c in shown(at.caption))
    tab(at, "Basics")  # the problem stays in sight, saying on which tab it is
    assert "Casualty mix: every share is 0 %, so they cannot be scaled to 100 % (give at least one a positive " \
           "share) (tab Casualty mix)" in shown(at.error)
    at.switch_page("views/generate.py").run()
    assert any("The scenario is not valid, so it cannot be generated" in e.value for e in at.error)
    start = next(b for b in at.button if "Generate" in b.label or "Start" in b.label)
    assert start.disabled


def test_custom_tempo_anchors(data_dir):
    at = tab(open_scenario(), "Casualty mix")
    at.selectbox(key="sc_tempo").set_value(se.CUSTOM_TEMPO).run()
    at.text_input(key="sc_tempo_anchors").set_value("1, 2, zero").run()
    assert any(e.startswith("Tempo: '1, 2, zero' is not allowed") for e in shown(at.error))
    at.text_input(key="sc_tempo_anchors").set_value("1, 4, 1").run()
    assert at.session_state["scenario"].tempo == (1.0, 4.0, 1.0)
    assert at.session_state["scenario_error"] is None


def test_edits_survive_a_visit_to_another_page(data_dir):
    at = open_scenario()
    at.number_input(key="sc_days").set_value(3).run()
    tab(at, "Casualty mix").slider(key="sc_wt_drone").set_value(2.5).run()
    at.switch_page("views/explore.py").run()
    at.switch_page("views/scenario.py").run()
    assert not at.exception
    assert at.number_input(key="sc_days").value == 3  # back on the first tab
    assert tab(at, "Casualty mix").slider(key="sc_wt_drone").value == 2.5
    sc = at.session_state["scenario"]
    assert sc.days == 3 and [f.name for f in sc.fronts] == ["Poland", "Estonia", "Finland"]


def test_import_pasted_json_or_say_why_not(data_dir):
    at = open_scenario()
    at.text_area(key="sc_paste").set_value("{not json").run()
    at.button(key="sc_paste_go").click().run()
    assert any(e.startswith("the pasted JSON is not a valid scenario: not valid JSON") for e in shown(at.error))
    bad = {"fronts": [{"name": "A", "casualty_share": 1, "nationality_mix": {"XXX": 1}}]}
    at.text_area(key="sc_paste").set_value(json.dumps(bad)).run()
    at.button(key="sc_paste_go").click().run()
    assert any("Front 1, nations: 'XXX' is not allowed" in e for e in shown(at.error))
    good = load_scenario("arctic_operation").to_dict() | {"name": "Imported arctic", "days": 5,
                                                          "start": "2026-01-10T06:00:00Z"}
    at.text_area(key="sc_paste").set_value(json.dumps(good)).run()
    at.button(key="sc_paste_go").click().run()
    assert not [e for e in shown(at.error) if "not a valid scenario" in e]
    assert any("Imported 'Imported arctic'" in s for s in shown(at.success))
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
    assert "Saved 'Baltic test' as version 1." in shown(at.success)
    assert at.session_state["scenario_version"] == 1 and at.session_state["scenario_name"] == "Baltic test"

    at.number_input(key="sc_days").set_value(5).run()
    assert at.session_state["scenario_version"] is None  # edited since the save
    at.button(key="sc_save").click().run()
    assert "Saved 'Baltic test' as version 2." in shown(at.success)
    versions = at.selectbox(key="sc_load_version").options  # newest first, with the description
    assert [v.split(" · ")[0] for v in versions] == ["v2", "v1"] and versions[1].endswith("first cut")
    assert re.fullmatch(r"v1 · \d{4}-\d\d-\d\d \d\d:\d\d UTC · first cut", versions[1])  # no microseconds

    at.selectbox(key="sc_load_version").set_value(1)
    at.button(key="sc_load").click().run()
    assert "Loaded 'Baltic test' version 1 from the database." in shown(at.success)
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
    assert any("tick 'yes, delete every version of 'Baltic test''" in e for e in shown(at.error))
    at.checkbox(key="sc_delete_confirm").check()
    at.button(key="sc_delete").click().run()
    assert "Deleted 'Baltic test' (2 versions)." in shown(at.success)
    assert at.selectbox(key="sc_load_name").options == ["Copy A (v1)"]

    at.text_input(key="sc_save_name").set_value("x" * 101)
    at.button(key="sc_save").click().run()
    assert any("scenario name is 101 characters long" in e for e in shown(at.error))


# --- the medical plan, out-of-range fields, the baseline -----------------------------------------------------------

def open_preset(preset: str, on_tab: str = "Medical plan"):
    at = open_scenario()
    at.selectbox(key="sc_preset").set_value(preset).run()
    assert not at.exception
    return tab(at, on_tab)


def test_the_medical_plan_tab_edits_the_plan_and_the_preview_figures_change(data_dir):
    at = open_preset("brigade_okinawa")
    m = metrics(at)
    assert m["Patients in preview"] == "727"  # the plan meets the scenario at its own rate, not a sample
    assert {"Attributable deaths", "T1 wait for surgery", "T1 operated within 2 h", "Waited an hour or more"} <= set(m)
    assert any(e.startswith("The plan is overwhelmed.") for e in shown(at.error))
    assert len(at.get("plotly_chart")) == 6  # the preview's five and the peak occupancy against capacity
    tables = at.number_input(key=PLAN_R2E_TABLES)
    assert tables.value == 2
    tables.set_value(1).run()
    assert at.session_state["scenario"].medical_plan.front("Brigade").r2_enhanced.operating_tables == 1
    changed = metrics(at)
    assert changed["Waited an hour or more"] != m["Waited an hour or more"]
    assert changed["T1 operated within 2 h"] != m["T1 operated within 2 h"]  # 61 % -> 55 %
    # more tables than surgical teams on a shift: the page says how many can be used
    at.number_input(key=PLAN_R2E_TABLES).set_value(3).run()
    assert ("A table needs a surgical team on shift: of 3 operating tables, 2 can be used by day and 1 by night. "
            "Off-shift teams called in for T1 casualties can use 1 more by day and 2 more by night.") in shown(at.caption)


def test_a_bad_plan_value_is_explained_beside_its_widget_and_blocks_generate(data_dir):
    at = open_preset("brigade_okinawa")
    at.number_input(key=PLAN_R2E_TABLES).set_value(0).run()
    message = ("Medical plan, Brigade, Role 2 Enhanced, operating tables: 0 is not allowed (each Role 2 needs at "
               "least an operating table)")
    plan_tab = at.tabs[5]
    assert plan_tab.label == "Medical plan" and shown(plan_tab.error) == [message]  # in the tab, beside it
    assert at.session_state["scenario_error"] == message
    assert any(w.startswith("**Preview not current.**") and message in w for w in shown(at.warning))
    assert at.session_state["scenario"].medical_plan.front("Brigade").r2_enhanced.operating_tables == 2
    at.number_input(key="sc_plan|Brigade||r1_teams").set_value(-3).run()
    assert "Medical plan, Brigade, Role 1 treatment teams: -3 is not allowed (a whole number from 1 to 500)" in \
        shown(at.tabs[5].error)


def test_no_plan_means_unlimited_care_and_a_new_plan_starts_from_the_brigade_laydown(data_dir):
    from core.capacity.plan import default_plan_dict
    at = tab(open_scenario(), "Medical plan")
    assert at.radio(key="sc_plan_mode").value == "unlimited" and at.session_state["scenario"].medical_plan is None
    assert "Attributable deaths" not in metrics(at)
    at.radio(key="sc_plan_mode").set_value("plan").run()
    plan = at.session_state["scenario"].medical_plan
    assert plan.to_dict() == load_scenario("default").with_overrides(
        medical_plan=default_plan_dict(["Poland", "Estonia", "Finland"])).medical_plan.to_dict()
    assert "Attributable deaths" in metrics(at)
    at.selectbox(key="sc_plan_front").set_value("Estonia").run()
    at.number_input(key="sc_plan|Estonia||helicopters").set_value(0).run()
    at.selectbox(key="sc_plan_front").set_value("Poland").run()  # Estonia's numbers are not drawn now: kept
    assert at.session_state["scenario"].medical_plan.front("Estonia").helicopters == 0
    at.radio(key="sc_plan_mode").set_value("unlimited").run()
    assert at.session_state["scenario"].medical_plan is None
    at.radio(key="sc_plan_mode").set_value("plan").run()  # back to the plan left a moment ago
    assert at.session_state["scenario"].medical_plan.front("Estonia").helicopters == 0
    tab(at, "Basics")  # the plan tab closed: the plan stays, and comes back as it was
    assert at.session_state["scenario"].medical_plan.front("Estonia").helicopters == 0
    assert tab(at, "Medical plan").radio(key="sc_plan_mode").value == "plan"


@pytest.mark.parametrize("key, value, message", [
    ("sc_patients", 0, "Patients: 0 is not allowed (a whole number from 1 to 100,000,000)"),
    ("sc_patients", 150_000_000, "Patients: 150000000 is not allowed (a whole number from 1 to 100,000,000)"),
    ("sc_days", 400, "Days: 400 is not allowed (a whole number from 1 to 180)"),
    ("sc_seed", -1, "Seed: -1 is not allowed (a whole number from 0 to 9,223,372,036,854,775,807)"),
    ("sc_start_hour", 25, "Start hour (UTC): 25 is not allowed (a whole number from 0 to 23)"),
])
def test_an_out_of_range_field_says_why_and_the_preview_is_marked_not_current(data_dir, key, value, message):
    at = open_scenario()
    before = metrics(at)
    at.number_input(key=key).set_value(value).run()
    assert message in shown(at.tabs[0].error)  # beside the field, on its tab
    assert at.session_state["scenario_error"] == message
    assert any(w.startswith("**Preview not current.**") and message in w for w in shown(at.warning))
    assert metrics(at)["Patients in preview"] == before["Patients in preview"]  # the last valid preview, marked
    assert any("last valid scenario, not current" in c for c in shown(at.caption))


def test_pin_as_baseline_then_every_change_shows_beside_it(data_dir):
    at = open_scenario()
    at.button(key="sc_pin").click().run()
    pinned = at.session_state["sc_baseline"]["figures"]
    table = table_with(at, "Baseline → now")
    assert set(table["Change"]) == {"no change"}
    tab(at, "Casualty mix").slider(key="sc_cat_BI").set_value(80.0).run()  # more battle injuries: more deaths
    now = resources.preview_summary(at.session_state["scenario"].canonical_json(), 3000)["figures"]
    table = table_with(at, "Baseline → now").set_index("Figure")
    deaths_before, deaths_now = pinned["Deaths (KIA + DOW)"][0], now["Deaths (KIA + DOW)"][0]
    assert deaths_now > deaths_before
    assert table.loc["Deaths (KIA + DOW)", "Baseline → now"] == f"{deaths_before:,} → {deaths_now:,}"
    assert table.loc["Deaths (KIA + DOW)", "Change"] == f"+{deaths_now - deaths_before:,}"
    for figure in ("Killed in action", "Died of wounds", "Returned to duty", "Evacuated to Role 4",
                   "Peak patients at Role 1", "Peak patients at Role 2", "Peak patients at Role 3",
                   "T1 treated within 10 min", "T1 at a facility within 1 h", "T1 operated within 2 h"):
        assert figure in table.index
    at.button(key="sc_unpin").click().run()
    assert not at.session_state["sc_baseline"] and table_with(at, "Baseline → now") is None


def test_a_plan_preview_pinned_compares_the_capacity_figures(data_dir):
    at = open_preset("brigade_okinawa")
    at.button(key="sc_pin").click().run()
    at.number_input(key=PLAN_R2E_TABLES).set_value(1).run()
    table = table_with(at, "Baseline → now").set_index("Figure")
    assert {"Plan verdict", "Deaths due to capacity", "T1 wait for surgery, median", "Waited an hour or more",
            "Diversions"} <= set(table.index)
    assert (table["Change"] != "no change").any()


def test_switching_preset_clears_the_save_name_and_an_edit_ends_the_loaded_banner(data_dir):
    at = open_scenario()
    at.text_input(key="sc_save_name").set_value("My copy of the default").run()
    at.selectbox(key="sc_preset").set_value("peacekeeping").run()
    assert not at.text_input(key="sc_save_name").value
    assert at.text_input(key="sc_save_name").placeholder == "Peacekeeping / stabilisation mission"
    assert "Loaded preset 'Peacekeeping / stabilisation mission'." in shown(at.success)
    at.number_input(key="sc_days").set_value(5).run()
    assert not [s for s in shown(at.success) if s.startswith("Loaded preset")]  # no longer what is shown


def test_a_scenario_name_is_shown_as_typed_never_as_markdown(data_dir):
    at = open_scenario()
    name = "**Bold** ![x](http://evil.example/x.png) :red[alarm]"
    at.text_input(key="sc_name").set_value(name).run()
    at.button(key="sc_pin").click().run()
    caption = next(c.value for c in at.caption if "pinned at" in c.value)
    assert "\\*\\*Bold\\*\\*" in caption and "\\!\\[x\\]\\(http" in caption and "\\:red\\[alarm\\]" in caption
    assert "\\(http\\:\u200b//evil" in caption  # not even a link: an address in text would become one
    text = shown(at.caption)[[c.value for c in at.caption].index(caption)].replace("\u200b", "")
    assert f"Baseline: {name}, pinned at" in text  # what the reader sees is the name as typed


def test_replications_run_in_the_background_and_show_intervals(data_dir):
    at = open_preset("brigade_falklands", on_tab="Basics")
    at.number_input(key="sc_days").set_value(4).run()
    at.number_input(key="sc_rep_runs").set_value(4).run()
    at.button(key="sc_rep_go").click().run()
    assert not at.exception
    job = at.session_state["sc_rep"]
    assert any("Running 4 replications" in i for i in shown(at.info))  # the page did not wait
    result = resources.replications(*job).wait(timeout=300)
    at.run()
    table = table_with(at, "Mean (95 % interval)").set_index("Figure")
    deaths = result["figures"]["Deaths attributable to capacity"]
    low, high = deaths["ci95"]
    one = lambda v: f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"  # noqa: E731
    assert table.loc["Deaths attributable to capacity", "Mean (95 % interval)"] == (
        f"{one(deaths['mean'])} ({one(low)} to {one(high)})")
    assert any("4 replications, seeds" in c for c in shown(at.caption))
