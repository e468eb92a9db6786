"""Scenario: edit every parameter with widgets, the medical plan included, and see a preview regenerate as you
change them (a small sample; with a medical plan, the plan at work at the scenario's own rate, and replications
on request); pin a preview as the baseline and see every later change against it; save, load, version, duplicate
and delete scenarios in the database; import and export JSON.

The edited scenario is published for the Generate page as st.session_state["scenario"] (the last valid one) and
st.session_state["scenario_error"] (why the current edit is not valid, or None)."""
import json
import time

import polars as pl
import streamlit as st

import resources
from charts import labels
from core import scenario_edit as edit_
from core.capacity.plan import FACILITY_FIELDS, default_plan_dict
from core.explore import VERDICT_RANK, differences
from core.scenario import (ENVIRONMENT_CONDITIONS, INTENSITIES, MAX_DAYS, MAX_PATIENTS, POSTURES,
                           SPECIAL_EVENT_TYPES, TEMPOS, Scenario, ScenarioError, load_scenario, parse_json)
from core.schema import CATEGORIES, TRIAGES, WARFARE_TYPES

ss = st.session_state
MAX_UPLOAD = 1_000_000
UNLIMITED, PLAN = "unlimited", "plan"
PLAN_KEY = "sc_plan|"  # plan widgets are keyed "sc_plan|<front>|<kind>|<field>" (front and kind may be empty)
MAX_REPLICATED_PATIENTS = 200_000
TABLE_SCHEMAS = {
    "fronts": {"name": pl.String, "casualty_share": pl.Float64, "force_size": pl.Int64, "utc_offset_h": pl.Int64},
    "nations": {"front": pl.String, "nation": pl.String, "share": pl.Float64},
    "special_events": {"type": pl.String, "day": pl.Int64, "hour": pl.Int64, "size": pl.Int64,
                       "size_share": pl.Float64, "front": pl.String, "warfare_type": pl.String},
    "environment": {"condition": pl.String, "fronts": pl.String, "first_day": pl.Int64, "last_day": pl.Int64},
    "triage_override": {"applies_to": pl.String, **{t: pl.Float64 for t in TRIAGES}},
}


# --- state: the form mirrors every widget, so values survive a visit to another page ----------------------------
def clear_plan_widgets() -> None:
    for key in [k for k in ss if str(k).startswith(PLAN_KEY)]:
        del ss[key]


def plan_mode(plan) -> str:
    return PLAN if plan is not None else UNLIMITED


def load_form(scenario: Scenario, saved: tuple | None = None, message: str | None = None) -> None:
    """Put a scenario into every widget (a callback: runs before the widgets are drawn)."""
    form = edit_.form_from_scenario(scenario)
    ss["sc_form"] = form
    for key in edit_.SIMPLE_FIELDS:
        ss[f"sc_{key}"] = form[key]
    ss["sc_tables"] = {t: form[t] for t in edit_.TABLES}
    ss["sc_tables_out"] = {}
    ss["sc_gen"] = ss.get("sc_gen", 0) + 1  # new data editors start from the loaded tables
    ss["sc_saved"] = saved  # (name, version, sha256) when it came from the database
    ss["sc_message"] = message
    ss["sc_message_sha"] = scenario.sha256()  # the message stays while the scenario is the one it speaks of
    ss["sc_plan_mode"] = plan_mode(scenario.medical_plan)
    ss["sc_plan_draft"] = None
    clear_plan_widgets()
    for key in ("sc_save_name", "sc_dup_name"):  # a name typed for the previous scenario is not this one's
        ss[key] = None


if "sc_form" not in ss:
    load_form(resources.default_scenario(), message=None)
for key in edit_.SIMPLE_FIELDS:  # widgets not drawn on another page lost their state: restore it
    if f"sc_{key}" not in ss:
        ss[f"sc_{key}"] = ss["sc_form"][key]


# what an empty cell means, shown in it (rather than "None")
EMPTY_CELL = {"fronts": "", "nations": "", "special_events": "auto", "environment": "all", "triage_override": "0"}


def table(name: str, **config):
    """A data editor over one form table; its edits survive a visit to another page."""
    key = f"sc_{name}_{ss['sc_gen']}"
    rows = ss["sc_tables"][name]
    df = pl.DataFrame(rows, schema=TABLE_SCHEMAS[name], strict=False)
    out = st.data_editor(df, key=key, num_rows="dynamic", hide_index=True, width="stretch",
                         placeholder=EMPTY_CELL[name], **config)
    ss["sc_tables_out"][name] = out.to_dicts()
    return ss["sc_tables_out"][name]


# Only the open tab is drawn (a closed tab's widgets cost nothing on a rerun): a widget not drawn loses its state,
# so every value lives in the form too and is put back when its tab opens again.
TABS = ("Basics", "Fronts", "Casualty mix", "Events", "Care", "Medical plan")
TABLE_TAB = {"fronts": "Fronts", "nations": "Fronts", "special_events": "Events", "environment": "Events",
             "triage_override": "Care"}
SECTION_TAB = {"basics": "Basics", "fronts": "Fronts", "category": "Casualty mix", "warfare": "Casualty mix",
               "tempo": "Casualty mix", "events": "Events", "environment": "Events", "care": "Care"}
open_tab = ss.get("sc_tab") if ss.get("sc_tab") in TABS else TABS[0]
# an editor drawn in the last run but not in this one (its tab closed, or back from another page) leaves its edits
# as the base of the next editors, which start afresh under a new key
if any(TABLE_TAB[name] != open_tab or f"sc_{name}_{ss['sc_gen']}" not in ss for name in ss.get("sc_tables_out", {})):
    ss["sc_tables"] = {**ss["sc_tables"], **ss["sc_tables_out"]}
    ss["sc_gen"] += 1
ss["sc_tables_out"] = {}
# A widget's state goes with it when its tab closes, and what the session state then gives for its key is the
# value last put there by code, not the last one typed: while a tab is closed, its widgets' keys hold the form's
# values, so they come back as they were left.
CARE_FIELDS = ("evacuation_posture", "mascal_threshold", "allow_partners", "care_quality")
MIX_FIELDS = ("intensity", "tempo", "tempo_anchors", "dnbi_tempo", *(f"cat_{c}" for c in CATEGORIES),
              *(f"wt_{w}" for w in WARFARE_TYPES))
for key in edit_.SIMPLE_FIELDS:
    if open_tab != ("Care" if key in CARE_FIELDS else "Casualty mix" if key in MIX_FIELDS else "Basics"):
        ss[f"sc_{key}"] = ss["sc_form"][key]
if open_tab != "Medical plan":
    ss["sc_plan_mode"] = plan_mode(ss["sc_form"].get("medical_plan"))
    clear_plan_widgets()  # drawn again from the plan when the tab opens
    ss.pop("sc_plan_front", None)


# --- actions (callbacks) ---------------------------------------------------------------------------------------
def on_preset() -> None:
    pid = ss["sc_preset"]
    load_form(load_scenario(pid), message=f"Loaded preset {resources.preset_choices()[pid]!r}.")


def import_text(text: str, source: str) -> None:
    try:
        scenario = parse_json(text)
    except ScenarioError as exc:
        ss["sc_import_error"] = (f"{source} is not a valid scenario: "
                                 + "; ".join(edit_.plain_problem(p) for p in exc.problems))
        return
    ss["sc_import_error"] = None
    load_form(scenario, message=f"Imported {scenario.name!r} from {source}.")


def on_upload() -> None:
    upload = ss.get("sc_upload")
    if upload is None:
        return
    raw = upload.getvalue()
    if len(raw) > MAX_UPLOAD:
        ss["sc_import_error"] = f"{upload.name} is {len(raw):,} bytes; a scenario file is at most {MAX_UPLOAD:,}"
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        ss["sc_import_error"] = f"{upload.name} is not UTF-8 text (a scenario is a JSON file)"
        return
    import_text(text, upload.name)


def on_paste() -> None:
    text = ss.get("sc_paste", "")
    if not text.strip():
        ss["sc_import_error"] = "nothing pasted: paste a scenario JSON object"
        return
    import_text(text, "the pasted JSON")


def db_call(fn, *args, **kwargs):
    """Run a core.db function; its one-line error lands in sc_db_error."""
    from core import db
    engine = resources.db_engine()
    if engine is None:
        ss["sc_db_error"] = f"database unavailable: {resources.db_error()}"
        return None
    try:
        result = fn(db, engine, *args, **kwargs)
    except (db.DatabaseUnavailable, ValueError, ScenarioError, KeyError, LookupError) as exc:
        ss["sc_db_error"] = str(exc)
        return None
    ss["sc_db_error"] = None
    return result


def on_save(name_key: str) -> None:
    scenario = ss.get("scenario")
    if ss.get("scenario_error") or scenario is None:
        ss["sc_db_error"] = f"cannot save: the scenario is not valid ({ss.get('scenario_error')})"
        return
    typed = (ss.get(name_key) or "").strip()
    name = typed or (f"{ss.get('sc_load_name')} (copy)" if name_key == "sc_dup_name" else scenario.name)
    row = db_call(lambda db, e: db.save_scenario(e, name, scenario, ss.get("sc_save_description") or ""))
    if row:
        ss["sc_saved"] = (row["name"], row["version"], scenario.sha256())
        ss["sc_db_version"] = ss.get("sc_db_version", 0) + 1
        ss["sc_message"] = f"Saved {row['name']!r} as version {row['version']}."
        ss["sc_message_sha"] = scenario.sha256()


def on_load() -> None:
    name, version = ss.get("sc_load_name"), ss.get("sc_load_version")
    scenario = db_call(lambda db, e: db.load_scenario(e, name, version))
    if scenario is not None:
        load_form(scenario, saved=(name, version, scenario.sha256()),
                  message=f"Loaded {name!r} version {version} from the database.")


def on_delete() -> None:
    name = ss.get("sc_load_name")
    if not ss.get("sc_delete_confirm"):
        ss["sc_db_error"] = f"tick 'yes, delete every version of {name!r}' first"
        return
    removed = db_call(lambda db, e: db.delete_scenario(e, name))
    if removed is not None:
        ss["sc_db_version"] = ss.get("sc_db_version", 0) + 1
        ss["sc_delete_confirm"] = False
        ss["sc_message"] = f"Deleted {name!r} ({removed} version{'s' if removed != 1 else ''})."
        ss["sc_message_sha"] = ss["scenario"].sha256() if ss.get("scenario") is not None else None
        if ss.get("sc_saved") and ss["sc_saved"][0] == name:
            ss["sc_saved"] = None


# --- medical plan (callbacks and widgets) ----------------------------------------------------------------------
def plan_key(front: str | None, kind: str | None, name: str) -> str:
    return f"{PLAN_KEY}{front or ''}|{kind or ''}|{name}"


def form_front_names() -> list[str]:
    rows = {**ss["sc_tables"], **ss.get("sc_tables_out", {})}.get("fronts") or []
    return [str(r["name"]).strip() for r in rows if r.get("name")]


def on_plan_mode() -> None:
    """No plan <-> a plan: a new plan starts from the brigade laydown (or the plan left a moment ago)."""
    if ss["sc_plan_mode"] == PLAN:
        ss["sc_form"]["medical_plan"] = ss.get("sc_plan_draft") or default_plan_dict(form_front_names())
    else:
        ss["sc_plan_draft"] = ss["sc_form"].get("medical_plan")
        ss["sc_form"]["medical_plan"] = None
    clear_plan_widgets()


def on_plan_reset() -> None:
    ss["sc_form"]["medical_plan"] = default_plan_dict(form_front_names())
    clear_plan_widgets()


PLAN_LABELS = {"count": "Facilities", "operating_tables": "Operating tables", "resuscitation_beds": "Resuscitation beds",
               "icu_beds": "ICU beds", "holding_beds": "Holding beds", "surgical_teams_day": "Teams by day",
               "surgical_teams_night": "Teams by night", "r1_teams": "Treatment teams",
               "ground_ambulances": "Ambulances", "ambulance_litters": "Ambulance litters",
               "helicopters": "Helicopters", "helicopter_litters": "Helicopter litters",
               "interval_h": "Hours between flights", "seats": "Seats per flight"}
PLAN_HELP = {
    "count": "How many of these facilities the front has (each with the beds, tables and teams below)",
    "operating_tables": "Operating tables in each facility (used while a surgical team is on shift)",
    "surgical_teams_day": "Surgical teams on shift by day (07:00 to 19:00 local time), each works one table",
    "surgical_teams_night": "Surgical teams on shift by night (19:00 to 07:00 local time)",
    "r1_teams": "Role 1 treatment teams on this front",
    "helicopter_litters": "Litters (stretchers) in each MEDEVAC helicopter",
    "seats": "Litters on each strategic evacuation flight",
    "interval_h": "Hours between strategic evacuation flights from Role 3 to Role 4 (0: whenever a patient is "
                  "ready)",
}


def plan_number(col, plan: dict, front: str | None, kind: str | None, name: str) -> None:
    """One number of the plan; no limits on the widget, so a bad value reaches validation and is explained."""
    key = plan_key(front, kind, name)
    if key not in ss:
        ss[key] = edit_.plan_value(plan, front, kind, name)
    is_hours = name == "interval_h"
    col.number_input(PLAN_LABELS.get(name, name), key=key, step=1.0 if is_hours else 1,
                     format="%g" if is_hours else "%d", help=PLAN_HELP.get(name))


def plan_fields_of(plan: dict, front: str | None, kind: str | None, names, columns: int = 3) -> None:
    for i in range(0, len(names), columns):
        cols = st.columns(columns)
        for col, name in zip(cols, names[i:i + columns]):
            plan_number(col, plan, front, kind, name)


def plan_from_widgets(plan: dict, front_names: list[str]) -> dict:
    """The plan object with every number a widget shows (the others keep their value)."""
    for front, kind, name in edit_.plan_fields(front_names):
        key = plan_key(front, kind, name)
        if key in ss and ss[key] is not None:
            edit_.set_plan_value(plan, front, kind, name, ss[key])
    return plan


def medical_plan_tab(front_names: list[str]) -> None:
    st.radio("Care", (UNLIMITED, PLAN), key="sc_plan_mode", horizontal=True, on_change=on_plan_mode,
             format_func={UNLIMITED: "No plan (unlimited care)", PLAN: "Medical plan"}.get,
             help="Without a plan, every casualty gets care and transport at once, as in every run before plans "
                  "existed. With a plan, beds, operating tables, surgical teams and vehicles are limited: "
                  "casualties queue by triage priority, and waiting costs lives.")
    if ss["sc_plan_mode"] != PLAN or not front_names:
        st.caption("Unlimited care: a casualty never waits for a team, a bed, an operating table or a vehicle.")
        return
    plan = edit_.plan_for(front_names, ss["sc_form"].get("medical_plan"))
    boxes["plan"] = st.container()
    front = (st.selectbox("Front", front_names, key="sc_plan_front", help="Each front has its own laydown")
             if len(front_names) > 1 else front_names[0])
    st.button("Reset to the brigade laydown", key="sc_plan_reset", on_click=on_plan_reset,
              help="Put the laydown of one brigade back on every front and the theatre (every number below)")
    st.markdown(f"**Role 1 and evacuation** · {labels.text(front)}")
    plan_fields_of(plan, front, None, edit_.PLAN_FRONT_FIELDS)
    boxes[f"plan.{front}.front"] = st.container()
    for kind, title in (("r2_basic", "Role 2 Basic"), ("r2_enhanced", "Role 2 Enhanced")):
        st.markdown(f"**{title}** · {labels.text(front)} (each facility)")
        plan_fields_of(plan, front, kind, FACILITY_FIELDS)
        boxes[f"plan.{front}.{kind}"] = st.container()
    st.divider()
    st.markdown("**Role 3 field hospital** · theatre (each hospital)")
    plan_fields_of(plan, None, "r3", FACILITY_FIELDS)
    boxes["plan.r3"] = st.container()
    st.markdown("**Strategic evacuation to Role 4** · theatre")
    plan_fields_of(plan, None, "strategic_evacuation", edit_.STRATEGIC_FIELDS)
    boxes["plan.strategic"] = st.container()
    ss["sc_form"]["medical_plan"] = plan = plan_from_widgets(plan, front_names)
    for where, facility in ((f"plan.{front}.r2_basic", plan["fronts"][front]["r2_basic"]),
                            (f"plan.{front}.r2_enhanced", plan["fronts"][front]["r2_enhanced"]),
                            ("plan.r3", plan["r3"])):
        note = table_note(facility)
        if note:
            boxes[where].caption(note)


def table_note(facility: dict) -> str | None:
    """What the operating tables give when the surgical teams are fewer (a table needs a team on shift)."""
    try:
        tables, day, night = (int(facility[k]) for k in ("operating_tables", "surgical_teams_day",
                                                           "surgical_teams_night"))
    except (TypeError, ValueError):
        return None
    if not facility.get("count") or tables <= min(day, night):
        return None
    # off-shift teams are called in for T1 (docs/capacity.md): a table without a team, a team off shift
    extra = [min(tables - min(tables, on), day + night - on) for on in (day, night)]
    called = ""
    if any(extra):
        more = " and ".join(f"{n:,} more {when}" for n, when in zip(extra, ("by day", "by night")) if n)
        called = f" Off-shift teams called in for T1 casualties can use {more}."
    return (f"A table needs a surgical team on shift: of {tables:,} operating table{'s' if tables != 1 else ''}, "
            f"{min(tables, day):,} can be used by day and {min(tables, night):,} by night.{called}")


# --- preview pieces ----------------------------------------------------------------------------------------------
CHANGES_BAD_UP = ("deaths", "killed", "died", "peak", "wait", "delay", "median", "diversions", "still", "verdict")
NEUTRAL = ("Patients", "Evacuated to Role 4")


def delta_color(name: str) -> str:
    """Up is worse for deaths, waits, times and loads; better for returns to duty and the 10-1-2 shares; neither
    for the number of patients or evacuations out of theatre."""
    if name in NEUTRAL:
        return "off"
    return "inverse" if any(w in name.lower() for w in CHANGES_BAD_UP) else "normal"


def compare_with_baseline(figures: dict) -> None:
    """Every figure of the preview beside the pinned baseline, the change coloured green (better) or red."""
    base = ss["sc_baseline"]
    st.markdown("**Against the baseline**")
    st.caption(f"Baseline: {labels.text(base['name'])}, pinned at {base['pinned']}.")
    rows = differences(figures, base["figures"])
    table = labels.differences_frame(rows, "Baseline", "Now", joined="Baseline → now").rename(
        {"Difference": "Change"}).to_pandas()
    rank = lambda v: VERDICT_RANK.get(v, 0)  # noqa: E731
    worse = [rank(r["now"]) > rank(r["before"]) if r["unit"] == "text" else
             False if delta_color(r["figure"]) == "off" else
             (r["difference"] or 0) > 0 if delta_color(r["figure"]) == "inverse" else (r["difference"] or 0) < 0
             for r in rows]
    changed = [labels.change(r) not in ("no change", "–") and delta_color(r["figure"]) != "off" for r in rows]

    def colour(column):
        return ["color: #e0796b" if c and w else "color: #7fb77e" if c else "" for c, w in zip(changed, worse)]
    st.dataframe(table.style.apply(colour, subset=["Change"]), hide_index=True, width="stretch",
                 key="sc_baseline_table", height=35 * (len(rows) + 1) + 3,
                 column_config={"Figure": st.column_config.TextColumn(width=185),
                                "Baseline → now": st.column_config.TextColumn(width=120),
                                "Change": st.column_config.TextColumn(width=90)})


def capacity_block(report: dict, note: str | None) -> None:
    verdict = report.get("verdict")
    box = {"holds": st.success, "strained": st.warning, "overwhelmed": st.error}.get(verdict, st.info)
    box(report.get("summary") or labels.VERDICT.get(verdict, ""))
    d, s, w = report["deaths"], report["t1_surgery"], report["waiting"]
    cols = st.columns(2) + st.columns(2)
    cols[0].metric("Attributable deaths", labels.difference(d["attributable_to_capacity"]["total"],
                                                                        "count").replace("no change", "0"),
                   help="Deaths attributable to capacity: deaths with this plan minus deaths of the same "
                        "casualties with unlimited care "
                        f"(KIA {d['attributable_to_capacity']['KIA']:+,}, DOW {d['attributable_to_capacity']['DOW']:+,})")
    cols[1].metric("T1 wait for surgery", labels.minutes(s["wait_median_min"]),
                   help=f"Median wait for an operating table; 90th percentile {labels.minutes(s['wait_p90_min'])}. "
                        f"Surgery later than with unlimited care: median {labels.minutes(s['delay_median_min'])}, "
                        f"90th percentile {labels.minutes(s['delay_p90_min'])}")
    cols[2].metric("T1 operated within 2 h", labels.share(s["within_2h_of_injury"]),
                   help="Every T1 casualty who needs surgery (mass-casualty incidents and Role 3 included), operated "
                        f"within 2 h of injury; with unlimited care {labels.share(s['within_2h_of_injury_unconstrained'])}. "
                        "The 10-1-2 lines count T1 battle casualties outside mass-casualty incidents.")
    cols[3].metric("Waited an hour or more", labels.share(w["share_waited_1h_or_more"], 1),
                   help=f"{w['waited_1h_or_more']:,} casualties waited an hour or more for care or transport; "
                        f"{w['patients_diverted']:,} were diverted past a full facility")
    st.caption("The plan at work on " + (note or "the whole scenario") + ".")


def replications_block(sc, current: bool = True) -> None:
    """Replications over seeds in the background: the page polls, never waits."""
    with st.expander("Replications: each figure's mean and 95 % interval over seeds"):
        if sc.patients > MAX_REPLICATED_PATIENTS:
            st.caption(f"Replications run the whole scenario again and again: at most {MAX_REPLICATED_PATIENTS:,} "
                       f"patients here (this scenario has {sc.patients:,}; use `python -m core replicate`).")
            return
        c1, c2 = st.columns([1, 1])
        runs = int(c1.number_input("Replications", min_value=2, max_value=200, value=20, step=5, key="sc_rep_runs",
                                   help="Seeds seed, seed + 1, ...: the same request gives the same answer"))
        job = (sc.canonical_json(), runs)
        if c2.button(f"Run {runs:,} replications", key="sc_rep_go", width="stretch", disabled=not current,
                     help=None if current else "Fix the scenario first: the preview is not current"):
            ss["sc_rep"] = job
        if ss.get("sc_rep") is None:
            return
        if ss["sc_rep"] != job:
            st.caption("The replications shown last were of another version of this scenario: run them again.")
            return
        running = resources.replications(*job)
        if not running.done():
            @st.fragment(run_every=1.0)
            def progress() -> None:
                if resources.replications(*job).done():
                    st.rerun()
                st.info(f"Running {runs:,} replications of {sc.patients:,} patients each in the background… "
                        f"{time.time() - running.started:,.0f} s", icon=":material/hourglass:")
            progress()
            return
        try:
            rep = running.result()
        except RuntimeError as exc:
            st.error(f"The replications failed: {labels.text(exc)}")
            return
        figs = rep["figures"]
        head = [n for n in ("Deaths attributable to capacity", "KIA with the plan", "DOW with the plan",
                            "T1 wait for surgery, median", "T1 wait for surgery, 90th percentile",
                            "T1 surgery later than with unlimited care, median", "T1 operated within 2 h of injury",
                            "Casualties who waited 1 h or more", "Diversions", "Still waiting at the end")
                if n in figs]
        rest = [n for n in figs if n not in head]
        st.caption(f"{rep['runs']:,} replications, seeds {rep['seeds'][0]:,} to {rep['seeds'][1]:,}: each figure's "
                   "mean over the runs and the 95 % confidence interval of that mean.")
        for names, key in ((head or rest, "sc_rep_head"), (rest if head else [], "sc_rep_rest")):
            if not names:
                continue
            table = pl.DataFrame({
                "Figure": names,
                "Mean (95 % interval)": [f"{labels.value(figs[n]['mean'], figs[n]['unit'])} "
                                         f"({interval(figs[n], 'ci95')})" for n in names]})
            if key == "sc_rep_rest":
                st.markdown("**Every other figure** (calibration targets and each resource)")
            st.dataframe(table, hide_index=True, width="stretch", key=key,
                         column_config={"Figure": st.column_config.TextColumn(width=230),
                                        "Mean (95 % interval)": st.column_config.TextColumn(width=170)})


def interval(fig: dict, which: str) -> str:
    bounds = fig.get(which)
    if not bounds:
        return "–"
    return f"{labels.value(bounds[0], fig['unit'])} to {labels.value(bounds[1], fig['unit'])}"


# --- page ------------------------------------------------------------------------------------------------------
st.title("Scenario")
choices = resources.preset_choices()
top = st.columns([2, 1, 1])
top[0].selectbox("Start from a preset", list(choices), key="sc_preset", on_change=on_preset,
                 format_func=lambda k: f"{choices[k]}  ({k})",
                 help="Choosing a preset replaces every field below.")

with top[1].popover("Saved scenarios", width="stretch"):
    engine = resources.db_engine()
    if engine is None:
        st.warning(f"The database is unavailable ({resources.db_error()}). Preview, import and export still "
                   "work; saving and loading need the database.")
        saved = []
    else:
        try:
            saved = resources.saved_scenarios(ss.get("sc_db_version", 0))
        except Exception as exc:  # DatabaseUnavailable between two checks
            st.warning(f"The database did not answer: {exc}")
            saved = []
    if engine is not None:
        st.text_input("Save as", key="sc_save_name", placeholder=ss.get("sc_name") or "name",
                      help="Saving an existing name adds a new version; earlier versions are kept. Empty: the "
                           "scenario's name.")
        st.text_input("Description", key="sc_save_description", max_chars=1000)
        st.button("Save", key="sc_save", on_click=on_save, args=("sc_save_name",), type="primary",
                  disabled=bool(ss.get("scenario_error")))
    if saved:
        st.divider()
        names = [s["name"] for s in saved]
        st.selectbox("Saved scenario", names, key="sc_load_name",
                     format_func=lambda n: f"{n} (v{next(s['version'] for s in saved if s['name'] == n)})")
        versions = resources.saved_scenario_versions(ss["sc_load_name"], ss.get("sc_db_version", 0))
        st.selectbox("Version", [v["version"] for v in versions], key="sc_load_version",
                     format_func=lambda v: next(f"v{x['version']} · {labels.utc(x['created_at'])} · "
                                                f"{x.get('description') or ''}"
                                                for x in versions if x["version"] == v))
        st.button("Load", key="sc_load", on_click=on_load, help="Replaces every field with this version.")
        st.text_input("Duplicate as", key="sc_dup_name", placeholder=f"{ss['sc_load_name']} (copy)",
                      help="Saves the scenario being edited under a new name.")
        st.button("Duplicate", key="sc_dup", on_click=on_save, args=("sc_dup_name",),
                  disabled=bool(ss.get("scenario_error")))
        c1, c2 = st.columns([3, 1])
        c1.checkbox(f"yes, delete every version of '{labels.text(ss['sc_load_name'])}'", key="sc_delete_confirm")
        c2.button("Delete", key="sc_delete", on_click=on_delete)
    elif engine is not None:
        st.caption("No saved scenario yet.")
    if ss.get("sc_db_error"):
        st.error(labels.text(ss["sc_db_error"]))

with top[2].popover("Import / export", width="stretch"):
    st.file_uploader("Import a scenario JSON file", type=["json"], key="sc_upload", on_change=on_upload)
    st.text_area("…or paste scenario JSON", key="sc_paste", height=120)
    st.button("Import pasted JSON", key="sc_paste_go", on_click=on_paste)
    if ss.get("sc_import_error"):
        st.error(labels.text(ss["sc_import_error"]))
    export_box = st.container()

if ss.get("sc_import_error"):
    st.error(labels.text(ss["sc_import_error"]))
message_box = st.empty()  # filled once the scenario is built: a message stays only while it is still true

# --- the form's tabs -----------------------------------------------------------------------------------------
def basics_tab() -> None:
    st.text_input("Name", key="sc_name", max_chars=200)
    st.text_area("Description", key="sc_description", height=68, max_chars=2000)
    # no limits on these widgets: an out-of-range value reaches validation, which says why beside them
    c1, c2, c3 = st.columns(3)
    c1.number_input("Patients", step=1000, key="sc_patients", disabled=ss.get("sc_force_mode", False),
                    help=f"1 to {MAX_PATIENTS:,}")
    c2.number_input("Days", step=1, key="sc_days", help=f"1 to {MAX_DAYS:,}")
    c3.number_input("Follow-up (hours)", step=24, key="sc_follow_up_h",
                    help="How long care goes on after the last day (patients still in care then are "
                         "counted as still in care); 0 to 1,440.")
    c1, c2, c3 = st.columns(3)
    c1.date_input("Start (UTC)", key="sc_start_date")
    c2.number_input("Start hour (UTC)", step=1, key="sc_start_hour", help="0 to 23")
    c3.number_input("Seed", step=1, key="sc_seed",
                    help="Same scenario and seed give the same patients (0 to 2^63-1).")
    st.toggle("Patients from force sizes", key="sc_force_mode",
              help="Derive the number of patients, the battle-injury share and the front shares from each "
                   "front's force size and published daily casualty rates (needs a force size on every front).")
    boxes["basics"] = st.container()


def fronts_tab() -> list[str]:
    st.caption("Casualty shares and nation shares are in percent; they are scaled to 100 % when they do not "
               "add up. Add or delete rows at the bottom or with the row menu.")
    fronts = table("fronts", column_config={
        "name": st.column_config.TextColumn("Front", required=True, max_chars=100),
        "casualty_share": st.column_config.NumberColumn("Casualty share %", min_value=0, format="%.1f"),
        "force_size": st.column_config.NumberColumn("Force size", min_value=100, max_value=500_000, step=1),
        "utc_offset_h": st.column_config.NumberColumn("UTC offset (h)", min_value=-12, max_value=14, step=1)})
    front_names = [str(r["name"]).strip() for r in fronts if r.get("name")]
    codes = resources.nation_names()
    table("nations", column_config={
        "front": st.column_config.SelectboxColumn("Front", options=front_names, required=True),
        "nation": st.column_config.SelectboxColumn("Nation", options=list(codes), required=True,
                                                   format_func=lambda c: f"{c} · {codes.get(c, c)}",
                                                   help="NATO members; AUS and NZL need 'Allow partner "
                                                        "nations' (tab Care)"),
        "share": st.column_config.NumberColumn("Share %", min_value=0, format="%.1f")})
    boxes["fronts"] = st.container()
    return front_names


def mix_tab() -> None:
    st.markdown("**Casualty mix** (%)")
    cols = st.columns(4)
    for col, c in zip(cols, CATEGORIES):
        col.slider(labels.CATEGORY[c], 0.0, 100.0, step=0.5, key=f"sc_cat_{c}", format="%.1f")
    boxes["category"] = st.container()
    st.markdown("**Warfare types** (relative weights; 0 = not used)")
    cols = st.columns(4)
    for i, w in enumerate(WARFARE_TYPES):
        cols[i % 4].slider(labels.plain(w).capitalize() if w != "cbrn" else "CBRN", 0.0, 3.0, step=0.05,
                           key=f"sc_wt_{w}")
    boxes["warfare"] = st.container()
    st.select_slider("Intensity", INTENSITIES, key="sc_intensity")
    c2, c3 = st.columns(2)
    c2.selectbox("Tempo (battle injuries)", [*TEMPOS, edit_.CUSTOM_TEMPO], key="sc_tempo")
    dnbi_options = [edit_.SAME_TEMPO, *TEMPOS] + ([edit_.CUSTOM_TEMPO] if ss["sc_form"].get("dnbi_anchors") else [])
    c3.selectbox("Tempo (disease and non-battle)", dnbi_options, key="sc_dnbi_tempo")
    if ss["sc_tempo"] == edit_.CUSTOM_TEMPO:
        st.text_input("Tempo anchors", key="sc_tempo_anchors", placeholder="1, 2, 4, 2",
                      help="Relative casualties through the scenario, first day to last (at least 2 numbers).")
    boxes["tempo"] = st.container()


def events_tab(front_names: list[str]) -> None:
    st.markdown("**Special events**: empty cells are drawn from the seed (day, hour) or take the type's "
                "default (size); size share is a percent of all patients")
    table("special_events", column_config={
        "type": st.column_config.SelectboxColumn("Type", options=list(SPECIAL_EVENT_TYPES), required=True,
                                                 format_func=labels.plain),
        "day": st.column_config.NumberColumn("Day", min_value=1, max_value=MAX_DAYS, step=1),
        "hour": st.column_config.NumberColumn("Hour", min_value=0, max_value=23, step=1),
        "size": st.column_config.NumberColumn("Size", min_value=1, step=1),
        "size_share": st.column_config.NumberColumn("Size share %", min_value=0, max_value=100, format="%.1f"),
        "front": st.column_config.SelectboxColumn("Front", options=front_names),
        "warfare_type": st.column_config.SelectboxColumn("Warfare type", options=list(WARFARE_TYPES),
                                                         format_func=labels.plain)})
    boxes["events"] = st.container()
    st.markdown("**Environment**: fronts is `all` or front names separated by commas; empty days = all days")
    table("environment", column_config={
        "condition": st.column_config.SelectboxColumn("Condition", options=list(ENVIRONMENT_CONDITIONS),
                                                      format_func=labels.plain,
                                                      required=True),
        "fronts": st.column_config.TextColumn("Fronts", default="all"),
        "first_day": st.column_config.NumberColumn("First day", min_value=1, max_value=MAX_DAYS, step=1),
        "last_day": st.column_config.NumberColumn("Last day", min_value=1, max_value=MAX_DAYS, step=1)})
    boxes["environment"] = st.container()


def care_tab() -> None:
    c1, c2 = st.columns(2)
    c1.selectbox("Evacuation posture", POSTURES, key="sc_evacuation_posture",
                 help="doctrinal meets the 10-1-2 lines; realistic and contested add delays")
    c2.number_input("MASCAL threshold (patients)", min_value=2, max_value=500, step=1, key="sc_mascal_threshold",
                    help="An incident with at least this many casualties overwhelms local care")
    c1.slider("Care quality", 0.1, 5.0, step=0.05, key="sc_care_quality",
              help="1 is the published baseline; higher means better care and fewer deaths of wounds")
    c2.toggle("Allow partner nations", key="sc_allow_partners",
              help="Australia (AUS) and New Zealand (NZL) beside the NATO nations")
    st.markdown("**Triage override** (%): per category or mechanism, replaces the usual triage mix")
    table("triage_override", column_config={
        "applies_to": st.column_config.SelectboxColumn("Category or mechanism", options=list(edit_.OVERRIDE_KEYS),
                                                       format_func=labels.plain,
                                                       required=True),
        **{t: st.column_config.NumberColumn(f"{t} %", min_value=0, max_value=100, format="%.0f")
           for t in TRIAGES}})
    boxes["care"] = st.container()


edit_col, preview_col = st.columns([1, 1], gap="medium")
boxes = {}
with edit_col:
    tabs = dict(zip(TABS, st.tabs(TABS, key="sc_tab", on_change="rerun")))
    front_names = form_front_names()  # what the Fronts tab's editor has, when it is open
    drawn = next((label for label, tab in tabs.items() if tab.open), TABS[0])
    with tabs[drawn]:
        if drawn == "Fronts":
            front_names = fronts_tab()
        elif drawn == "Events":
            events_tab(front_names)
        elif drawn == "Medical plan":
            medical_plan_tab(front_names)
        else:
            {"Basics": basics_tab, "Casualty mix": mix_tab, "Care": care_tab}[drawn]()

# --- build, validate, publish for Generate -----------------------------------------------------------------------
form = {**ss["sc_form"], **{k: ss[f"sc_{k}"] for k in edit_.SIMPLE_FIELDS}, **ss["sc_tables"], **ss["sc_tables_out"]}
ss["sc_form"] = form
result = edit_.scenario_from_form(form)
ss["scenario_error"] = result.error
if result.scenario is not None:
    ss["scenario"] = result.scenario
    saved_ = ss.get("sc_saved")
    same = bool(saved_) and saved_[2] == result.scenario.sha256()
    ss["scenario_version"] = saved_[1] if same else None  # Generate records the run against this version
    ss["scenario_name"] = saved_[0] if same else None
shown = set()
for section, box in boxes.items():
    for note in result.notes.get(section, []):
        box.info(labels.text(note), icon=":material/balance:")
    for problem in result.problems.get(section, []):
        box.error(labels.text(problem))
        shown.add(problem)
for section in result.problems:
    for problem in result.problems[section]:
        if problem not in shown:  # a part of the form not drawn now (a closed tab, another front's plan)
            tab = "Medical plan" if section.startswith("plan") else SECTION_TAB.get(section)
            where = f" (tab {tab})" if tab and tab != drawn else ""
            (boxes.get("plan") if section.startswith("plan") and "plan" in boxes else edit_col).error(
                labels.text(problem + where))
if ss.get("sc_message") and result.scenario is not None and result.scenario.sha256() == ss.get("sc_message_sha"):
    message_box.success(labels.text(ss["sc_message"]))

with export_box:
    if result.scenario is not None:
        st.download_button("Export JSON", json.dumps(result.scenario.to_dict(), indent=2, ensure_ascii=False),
                           file_name=f"{result.scenario.name[:60].replace(' ', '_').replace('/', '-')}.json",
                           mime="application/json", key="sc_export")
    else:
        st.caption("Export needs a valid scenario.")

# --- live preview ------------------------------------------------------------------------------------------------
with preview_col:
    sc = result.scenario
    if sc is None:
        problems = [p for ps in result.problems.values() for p in ps]
        if not ss.get("sc_last_valid"):
            st.error("The scenario is not valid, so it cannot be previewed or generated: fix the fields marked in "
                     f"red ({len(problems):,} problem{'s' if len(problems) != 1 else ''}).")
            st.stop()
        st.warning("**Preview not current.** The scenario is not valid, so it cannot be previewed or generated; "
                   "the preview below is of the last valid scenario. Fix: " +
                   " · ".join(labels.text(p) for p in problems[:4]) + (" · …" if len(problems) > 4 else ""),
                   icon=":material/history:")
        sc = ss["sc_last_valid"]
    else:
        ss["sc_last_valid"] = sc
    current = sc is result.scenario
    saved_ = ss.get("sc_saved")
    badge = (f" · saved as '{labels.text(saved_[0])}' v{saved_[1]}" if current and ss.get("scenario_version")
             is not None else " · unsaved changes" if saved_ else "")
    plan_note = " · medical plan" if sc.medical_plan is not None else " · unlimited care"
    st.caption(f"{sc.patients:,} patients over {sc.days:,} days · {len(sc.fronts):,} front"
               f"{'s' if len(sc.fronts) != 1 else ''}{plan_note} · sha256 {sc.sha256()[:12]}…{badge}"
               + ("" if current else " · **last valid scenario, not current**"))
    if sc.medical_plan is None:
        sample = st.select_slider("Preview patients", list(range(1000, 10_001, 500)), value=3000,
                                  key="sc_preview_n", format_func=lambda n: f"{n:,}",
                                  help="A small sample of this scenario, regenerated at every change")
    else:
        sample = 0  # the plan runs on the scenario at its own rate: the load per day is what the plan meets
    started = time.perf_counter()
    try:
        pv = resources.preview_summary(sc.canonical_json(), int(sample))
    except Exception as exc:  # a combination the generator refuses (e.g. a special event larger than the sample)
        st.warning(f"No preview for this combination: {labels.text(exc)}")
        st.stop()
    elapsed_ms = (time.perf_counter() - started) * 1000
    fig_ = pv["summary"]["figures"]
    n = max(1, fig_["patients"])
    m = st.columns(2) + st.columns(2)
    m[0].metric("Patients in preview", f"{fig_['patients']:,}")
    m[1].metric("Battle injuries", f"{fig_['bi'] / n:.0%}")
    m[2].metric("Returned to duty", "–" if fig_["rtd_share"] is None else f"{fig_['rtd_share']:.0%}")
    m[3].metric("Died (KIA + DOW)", f"{fig_['deaths'] / n:.1%}")
    st.caption(f"Preview drawn and summarised in {elapsed_ms:,.0f} ms (seed {sc.seed:,}).")

    pin_cols = st.columns(2)
    if pin_cols[0].button("Pin as baseline", key="sc_pin", width="stretch", disabled=not current,
                          help="Keep this preview's figures; every later change is shown against them"):
        ss["sc_baseline"] = {"figures": pv["figures"], "name": sc.name, "sha": sc.sha256(),
                             "pinned": time.strftime("%H:%M UTC", time.gmtime())}
    if ss.get("sc_baseline") and pin_cols[1].button("Unpin", key="sc_unpin", width="stretch"):
        ss["sc_baseline"] = None
    if ss.get("sc_baseline"):
        compare_with_baseline(pv["figures"])

    figs = resources.preview_figures(sc.canonical_json(), int(sample))
    if pv["report"]:
        st.markdown("**Medical plan at work**")
        capacity_block(pv["report"], pv["note"])
        st.plotly_chart(figs["peaks"], width="stretch", key="sc_chart_peaks")
    replications_block(sc, current)
    st.plotly_chart(figs["day"], width="stretch", key="sc_chart_day")
    st.plotly_chart(figs["hour"], width="stretch", key="sc_chart_hour")
    st.plotly_chart(figs["triage"], width="stretch", key="sc_chart_triage")
    st.plotly_chart(figs["outcome"], width="stretch", key="sc_chart_outcome")
    st.plotly_chart(figs["mechanism"], width="stretch", key="sc_chart_mechanism")
