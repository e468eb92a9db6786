"""Scenario: edit every parameter with widgets and see a small sample regenerate as you change them; save, load,
version, duplicate and delete scenarios in the database; import and export JSON.

The edited scenario is published for the Generate page as st.session_state["scenario"] (the last valid one) and
st.session_state["scenario_error"] (why the current edit is not valid, or None)."""
import json
import time

import polars as pl
import streamlit as st

import resources
from core import scenario_edit as edit_
from core.scenario import (ENVIRONMENT_CONDITIONS, INTENSITIES, MAX_DAYS, MAX_PATIENTS, POSTURES,
                           SPECIAL_EVENT_TYPES, TEMPOS, Scenario, ScenarioError, load_scenario, parse_json)
from core.schema import CATEGORIES, TRIAGES, WARFARE_TYPES

ss = st.session_state
MAX_UPLOAD = 1_000_000
TABLE_SCHEMAS = {
    "fronts": {"name": pl.String, "casualty_share": pl.Float64, "force_size": pl.Int64, "utc_offset_h": pl.Int64},
    "nations": {"front": pl.String, "nation": pl.String, "share": pl.Float64},
    "special_events": {"type": pl.String, "day": pl.Int64, "hour": pl.Int64, "size": pl.Int64,
                       "size_share": pl.Float64, "front": pl.String, "warfare_type": pl.String},
    "environment": {"condition": pl.String, "fronts": pl.String, "first_day": pl.Int64, "last_day": pl.Int64},
    "triage_override": {"applies_to": pl.String, **{t: pl.Float64 for t in TRIAGES}},
}


# --- state: the form mirrors every widget, so values survive a visit to another page ----------------------------
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


if "sc_form" not in ss:
    load_form(resources.default_scenario(), message=None)
for key in edit_.SIMPLE_FIELDS:  # widgets not drawn on another page lost their state: restore it
    if f"sc_{key}" not in ss:
        ss[f"sc_{key}"] = ss["sc_form"][key]


def table(name: str, **config):
    """A data editor over one form table; its edits survive a visit to another page."""
    key = f"sc_{name}_{ss['sc_gen']}"
    rows = ss["sc_tables"][name]
    df = pl.DataFrame(rows, schema=TABLE_SCHEMAS[name], strict=False)
    out = st.data_editor(df, key=key, num_rows="dynamic", hide_index=True, width="stretch", **config)
    ss["sc_tables_out"][name] = out.to_dicts()
    return ss["sc_tables_out"][name]


def remember_tables() -> None:
    """Before leaving (any rerun), make the last edited tables the base of the next editors if these vanish."""
    ss["sc_tables"] = {**ss["sc_tables"], **ss.get("sc_tables_out", {})}


if f"sc_fronts_{ss['sc_gen']}" not in ss and ss.get("sc_tables_out"):
    remember_tables()  # came back from another page: editors restart from what was edited
    ss["sc_gen"] += 1
ss["sc_tables_out"] = {}


# --- actions (callbacks) ---------------------------------------------------------------------------------------
def on_preset() -> None:
    pid = ss["sc_preset"]
    load_form(load_scenario(pid), message=f"Loaded preset {resources.preset_choices()[pid]!r}.")


def import_text(text: str, source: str) -> None:
    try:
        scenario = parse_json(text)
    except ScenarioError as exc:
        ss["sc_import_error"] = f"{source} is not a valid scenario: {exc}"
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
        if ss.get("sc_saved") and ss["sc_saved"][0] == name:
            ss["sc_saved"] = None


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
        st.text_input("Save as", key="sc_save_name", value=None, placeholder=ss.get("sc_name") or "name",
                      help="Saving an existing name adds a new version; earlier versions are kept.")
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
                     format_func=lambda v: next(f"v{x['version']} · {x['created_at']} · {x.get('description') or ''}"
                                                for x in versions if x["version"] == v))
        st.button("Load", key="sc_load", on_click=on_load, help="Replaces every field with this version.")
        st.text_input("Duplicate as", key="sc_dup_name", placeholder=f"{ss['sc_load_name']} (copy)",
                      help="Saves the scenario being edited under a new name.")
        st.button("Duplicate", key="sc_dup", on_click=on_save, args=("sc_dup_name",),
                  disabled=bool(ss.get("scenario_error")))
        c1, c2 = st.columns([3, 1])
        c1.checkbox(f"yes, delete every version of {ss['sc_load_name']!r}", key="sc_delete_confirm")
        c2.button("Delete", key="sc_delete", on_click=on_delete)
    elif engine is not None:
        st.caption("No saved scenario yet.")
    if ss.get("sc_db_error"):
        st.error(ss["sc_db_error"])

with top[2].popover("Import / export", width="stretch"):
    st.file_uploader("Import a scenario JSON file", type=["json"], key="sc_upload", on_change=on_upload)
    st.text_area("…or paste scenario JSON", key="sc_paste", height=120)
    st.button("Import pasted JSON", key="sc_paste_go", on_click=on_paste)
    if ss.get("sc_import_error"):
        st.error(ss["sc_import_error"])
    export_box = st.container()

if ss.get("sc_import_error"):
    st.error(ss["sc_import_error"])
if ss.get("sc_message"):
    st.success(ss["sc_message"])

edit_col, preview_col = st.columns([3, 2], gap="large")
boxes = {}
with edit_col:
    tabs = st.tabs(["Basics", "Fronts & nations", "Casualty mix", "Events & environment", "Evacuation & care"])
    with tabs[0]:
        st.text_input("Name", key="sc_name", max_chars=200)
        st.text_area("Description", key="sc_description", height=68, max_chars=2000)
        c1, c2, c3 = st.columns(3)
        c1.number_input("Patients", min_value=1, max_value=MAX_PATIENTS, step=1000, key="sc_patients",
                        disabled=ss.get("sc_force_mode", False))
        c2.number_input("Days", min_value=1, max_value=MAX_DAYS, step=1, key="sc_days")
        c3.number_input("Follow-up (hours)", min_value=0, max_value=1440, step=24, key="sc_follow_up_h",
                        help="How long care goes on after the last day (patients still in care are IN_CARE).")
        c1, c2, c3 = st.columns(3)
        c1.date_input("Start (UTC)", key="sc_start_date")
        c2.number_input("Start hour (UTC)", min_value=0, max_value=23, step=1, key="sc_start_hour")
        c3.number_input("Seed", min_value=0, max_value=2**53 - 1, step=1, key="sc_seed",
                        help="Same scenario and seed give the same patients (the CLI accepts seeds up to 2^63-1).")
        st.toggle("Patients from force sizes", key="sc_force_mode",
                  help="Derive the number of patients, the battle-injury share and the front shares from each "
                       "front's force size and published daily casualty rates (needs a force size on every front).")
        boxes["basics"] = st.container()
    with tabs[1]:
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
                                                       help="NATO members; AUS and NZL need 'allow partners'"),
            "share": st.column_config.NumberColumn("Share %", min_value=0, format="%.1f")})
        boxes["fronts"] = st.container()
    with tabs[2]:
        st.markdown("**Category mix** (%): battle injury, non-battle injury, disease, battle stress")
        cols = st.columns(4)
        for col, c in zip(cols, CATEGORIES):
            col.slider(c, 0.0, 100.0, step=0.5, key=f"sc_cat_{c}")
        boxes["category"] = st.container()
        st.markdown("**Warfare types** (relative weights; 0 = not used)")
        cols = st.columns(4)
        for i, w in enumerate(WARFARE_TYPES):
            cols[i % 4].slider(w, 0.0, 3.0, step=0.05, key=f"sc_wt_{w}")
        boxes["warfare"] = st.container()
        c1, c2, c3 = st.columns(3)
        c1.select_slider("Intensity", INTENSITIES, key="sc_intensity")
        c2.selectbox("Tempo (battle injuries)", [*TEMPOS, edit_.CUSTOM_TEMPO], key="sc_tempo")
        dnbi_options = [edit_.SAME_TEMPO, *TEMPOS] + ([edit_.CUSTOM_TEMPO] if ss["sc_form"].get("dnbi_anchors") else [])
        c3.selectbox("Tempo (disease and non-battle)", dnbi_options, key="sc_dnbi_tempo")
        if ss["sc_tempo"] == edit_.CUSTOM_TEMPO:
            st.text_input("Tempo anchors", key="sc_tempo_anchors", placeholder="1, 2, 4, 2",
                          help="Relative casualties through the scenario, first day to last (at least 2 numbers).")
        boxes["tempo"] = st.container()
    with tabs[3]:
        st.markdown("**Special events**: empty cells are drawn from the seed (day, hour) or take the type's "
                    "default (size); size share is a percent of all patients")
        table("special_events", column_config={
            "type": st.column_config.SelectboxColumn("Type", options=list(SPECIAL_EVENT_TYPES), required=True),
            "day": st.column_config.NumberColumn("Day", min_value=1, max_value=MAX_DAYS, step=1),
            "hour": st.column_config.NumberColumn("Hour", min_value=0, max_value=23, step=1),
            "size": st.column_config.NumberColumn("Size", min_value=1, step=1),
            "size_share": st.column_config.NumberColumn("Size share %", min_value=0, max_value=100, format="%.1f"),
            "front": st.column_config.SelectboxColumn("Front", options=front_names),
            "warfare_type": st.column_config.SelectboxColumn("Warfare type", options=list(WARFARE_TYPES))})
        boxes["events"] = st.container()
        st.markdown("**Environment**: fronts is `all` or front names separated by commas; empty days = all days")
        table("environment", column_config={
            "condition": st.column_config.SelectboxColumn("Condition", options=list(ENVIRONMENT_CONDITIONS),
                                                          required=True),
            "fronts": st.column_config.TextColumn("Fronts", default="all"),
            "first_day": st.column_config.NumberColumn("First day", min_value=1, max_value=MAX_DAYS, step=1),
            "last_day": st.column_config.NumberColumn("Last day", min_value=1, max_value=MAX_DAYS, step=1)})
        boxes["environment"] = st.container()
    with tabs[4]:
        c1, c2 = st.columns(2)
        c1.selectbox("Evacuation posture", POSTURES, key="sc_evacuation_posture",
                     help="doctrinal meets the 10-1-2 lines; realistic and contested add delays")
        c2.number_input("MASCAL threshold (patients)", min_value=2, max_value=500, step=1, key="sc_mascal_threshold",
                        help="An incident with at least this many casualties overwhelms local care")
        c1.slider("Care quality", 0.1, 5.0, step=0.05, key="sc_care_quality",
                  help="1 is the published baseline; higher means better care and fewer deaths of wounds")
        c2.toggle("Allow partner nations (AUS, NZL)", key="sc_allow_partners")
        st.markdown("**Triage override** (%): per category or mechanism, replaces the usual triage mix")
        table("triage_override", column_config={
            "applies_to": st.column_config.SelectboxColumn("Category or mechanism", options=list(edit_.OVERRIDE_KEYS),
                                                           required=True),
            **{t: st.column_config.NumberColumn(f"{t} %", min_value=0, max_value=100, format="%.0f")
               for t in TRIAGES}})
        boxes["care"] = st.container()

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
for section, box in boxes.items():
    for note in result.notes.get(section, []):
        box.info(note, icon=":material/balance:")
    for problem in result.problems.get(section, []):
        box.error(problem)
for section in set(result.problems) - set(boxes):
    for problem in result.problems[section]:
        edit_col.error(problem)

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
        st.error("The scenario is not valid, so it cannot be previewed or generated: fix the fields marked in red "
                 f"({sum(len(v) for v in result.problems.values())} problem(s)).")
        st.stop()
    saved_ = ss.get("sc_saved")
    badge = (f" · saved as {saved_[0]!r} v{saved_[1]}" if ss.get("scenario_version") is not None else
             " · unsaved changes" if saved_ else "")
    st.caption(f"{sc.patients:,} patients over {sc.days} days · {len(sc.fronts)} front(s) · sha256 "
               f"{sc.sha256()[:12]}…{badge}")
    sample = st.slider("Preview patients", 1000, 10_000, 3000, step=500, key="sc_preview_n",
                       help="A small sample of this scenario, regenerated at every change")
    started = time.perf_counter()
    try:
        pv = resources.preview_summary(sc.canonical_json(), int(sample))
    except Exception as exc:  # a combination the generator refuses (e.g. a special event larger than the sample)
        st.warning(f"No preview for this combination: {exc}")
        st.stop()
    elapsed_ms = (time.perf_counter() - started) * 1000
    fig_ = pv["figures"]
    m = st.columns(2) + st.columns(2)
    m[0].metric("Patients in preview", f"{fig_['patients']:,}")
    m[1].metric("Battle injuries", f"{fig_['bi'] / fig_['patients']:.0%}")
    m[2].metric("Returned to duty", f"{fig_['rtd_share']:.0%}")
    m[3].metric("Died (KIA + DOW)", f"{fig_['deaths'] / fig_['patients']:.1%}")
    st.caption(f"Sample drawn and summarised in {elapsed_ms:.0f} ms (seed {sc.seed}).")

    figs = resources.preview_figures(sc.canonical_json(), int(sample))
    st.plotly_chart(figs["day"], width="stretch", key="sc_chart_day")
    st.plotly_chart(figs["hour"], width="stretch", key="sc_chart_hour")
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs["triage"], width="stretch", key="sc_chart_triage")
    c2.plotly_chart(figs["outcome"], width="stretch", key="sc_chart_outcome")
    st.plotly_chart(figs["mechanism"], width="stretch", key="sc_chart_mechanism")
