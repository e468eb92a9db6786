"""Explore: one finished run in pictures: key figures, timelines, the flow through the chain of care, the 10-1-2
lines, facility occupancy, the medical plan at work (capacity), the calibration report, every patient (table and
card), and a second run side by side (compare)."""
import ast
import re

import polars as pl
import streamlit as st

import resources
from charts import labels
from charts.figures import R4_NOTE
from core.explore import OUTCOME_LABELS, RunNotExplorable
from views.run_picker import label as run_label
from views.run_picker import pick_run, run_format

VIEWS = ("Overview", "Flow", "10-1-2", "Occupancy", "Capacity", "Calibration", "Patients", "Compare")
PAGE_ROWS = 200
STATUS = {"pass": "✓ pass", "warn": "⚠ warn", "n/a": "not applicable"}
ss = st.session_state


def show_differences(rows: list[dict], before: str, now: str, key: str) -> None:
    table = labels.differences_frame(rows, before, now)
    st.dataframe(table, hide_index=True, width="stretch", key=key, height=35 * (table.height + 1) + 3)


def readable_note(note) -> str:
    """A calibration note without raw dictionaries ("{'BI': 7000}" -> "battle injury 7,000")."""
    if not note:
        return ""

    def words(match: re.Match) -> str:
        try:
            data = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            return match.group(0)
        return ", ".join(f"{labels.plain(k).lower()} {v:,}" for k, v in data.items()) if isinstance(data, dict) \
            else match.group(0)
    return re.sub(r"\{[^{}]*\}", words, str(note))


def target_range(row: dict) -> str:
    low, high = row.get("low"), row.get("high")
    if row.get("id") == "14":
        return f"{low:,}"
    return f"{labels.share(low, 1)} to {labels.share(high, 1)}"


st.title("Explore")
path, run = pick_run("ex_run", other_folder_key="ex_folder",
                     none_yet="No runs yet: generate one on the Generate page, or with "
                              "`python -m core generate --patients 20000 --out data/runs/demo`.")
if run["reason"]:
    st.warning(f"This run cannot be explored: {run['reason']}.")
    st.stop()
try:
    if resources.explore_needs_converting(path):  # a text run is converted to Parquet once, with progress
        bar = st.progress(0.0, text="Preparing this run for exploring (once)")
        resources.explore_convert(path, lambda done, what: bar.progress(done, text=what))
        bar.empty()
    ov = resources.explore_overview(path, run["stamp"])
except RunNotExplorable as exc:
    st.error(str(exc))
    st.stop()

f = ov["figures"]
m = ov["manifest"]
fmt = run_format(run)
st.caption(f"{labels.text(ov['scenario'].get('name') or 'Unnamed scenario')} · seed {m.get('seed')} · {fmt} · "
           f"{ov['scenario'].get('days')} days from {ov['start']:%Y-%m-%d %H:%M} UTC · generated in "
           f"{labels.number(m.get('elapsed_s'), 1)} s · folder {labels.text(path)}")
cols = st.columns(7)
cols[0].metric("Patients", f"{f['patients']:,}")
cols[1].metric("Killed in action", f"{f['kia']:,}")
cols[2].metric("Died of wounds", f"{f['dow']:,}")
cols[3].metric("Returned to duty", f"{f['rtd']:,}",
               help=None if f["rtd_share"] is None else f"{f['rtd_share']:.0%} of the patients")
cols[4].metric("To Role 4", f"{f['role4']:,}", help="Evacuated out of theatre to Role 4")
cols[5].metric("Battle fatality", "–" if f["bi_cfr"] is None else f"{f['bi_cfr']:.1%}",
               help="Case fatality among battle injuries: killed in action and died of wounds")
cols[6].metric("Mass casualty", "–" if f["mascal_share"] is None else f"{f['mascal_share']:.0%}",
               help="Share of the patients injured in a mass-casualty incident")

view = st.radio("View", VIEWS, horizontal=True, key="ex_view", label_visibility="collapsed")

if view == "Overview":
    figs = resources.explore_figures(path, run["stamp"])
    for left, right in (("by_front", "by_warfare"), ("category", "triage"), ("mechanism", "body_region")):
        c1, c2 = st.columns(2)
        c1.plotly_chart(figs[left], width="stretch", key=f"ex_{left}")
        c2.plotly_chart(figs[right], width="stretch", key=f"ex_{right}")

elif view == "Flow":
    st.plotly_chart(resources.explore_flow_figures(path, run["stamp"])["sankey"], width="stretch", key="ex_sankey")
    st.plotly_chart(resources.explore_figures(path, run["stamp"])["outcomes_by_facility"], width="stretch",
                    key="ex_outcomes")

elif view == "10-1-2":
    t1_only = st.toggle("T1 battle casualties only", value=True, key="ex_t1_only",
                        help="The 10-1-2 lines are set for the most urgent battle casualties; patients of "
                             "mass-casualty incidents are always left out, as the calibration report does.")
    summary = resources.explore_flow(path, run["stamp"], t1_only)["timings"]["summary"]
    cols = st.columns(3)
    for col, row in zip(cols, summary.iter_rows(named=True)):
        col.metric(f"{row['measure'][:1].upper()}{row['measure'][1:]} within {row['line_min']} min",
                   labels.share(row["within_share"]),
                   help=f"{row['within']:,} of {row['reached']:,} who reached it ({row['patients']:,} patients); "
                        f"median {labels.minutes(row['median_min'])}, 90th percentile "
                        f"{labels.minutes(row['p90_min'])}")
    st.plotly_chart(resources.explore_flow_figures(path, run["stamp"], t1_only)["timings"], width="stretch",
                    key="ex_timings")
    st.dataframe(pl.DataFrame({
        "Step": [r[:1].upper() + r[1:] for r in summary["measure"]],
        "Line": [f"{v:,} min" for v in summary["line_min"]],
        "Patients": [f"{v:,}" for v in summary["patients"]],
        "Reached it": [f"{v:,}" for v in summary["reached"]],
        "Within the line": [f"{v:,}" for v in summary["within"]],
        "Share within": [labels.share(v) for v in summary["within_share"]],
        "Median": [labels.minutes(v) for v in summary["median_min"]],
        "90th percentile": [labels.minutes(v) for v in summary["p90_min"]]}), hide_index=True, width="stretch")

elif view == "Occupancy":
    st.plotly_chart(resources.explore_flow_figures(path, run["stamp"])["occupancy"], width="stretch",
                    key="ex_occupancy")
    st.caption("A patient is at a facility from arrival to departure, death, return to duty or evacuation out of "
               "theatre; 'in transit' counts patients between a departure and the next arrival. " + R4_NOTE)

elif view == "Capacity":
    cap = resources.explore_capacity(path, run["stamp"])
    if cap is None:
        st.info("This run had unlimited care: its scenario has no medical plan, so no patient waited for a bed, "
                "an operating table, a team or a vehicle. Give the scenario a medical plan on the Scenario page "
                "(tab Medical plan) to see the plan at work.")
    else:
        rep = cap["report"] or {}
        figs = resources.explore_capacity_figures(path, run["stamp"])
        verdict = rep.get("verdict")
        box = {"holds": st.success, "strained": st.warning, "overwhelmed": st.error}.get(verdict, st.info)
        box(rep.get("summary") or "No capacity report (capacity.json) in this run.")
        d, s, w = rep.get("deaths", {}), rep.get("t1_surgery", {}), rep.get("waiting", {})
        cols = st.columns(5)
        cols[0].metric("Attributable deaths",
                       labels.difference((d.get("attributable_to_capacity") or {}).get("total"), "count"),
                       help="Deaths attributable to capacity: deaths with this plan minus deaths of the same "
                            "casualties with unlimited care")
        cols[1].metric("T1 wait for surgery", labels.minutes(s.get("wait_median_min")),
                       help=f"Median; 90th percentile {labels.minutes(s.get('wait_p90_min'))}")
        cols[2].metric("T1 operated within 2 h", labels.share(s.get("within_2h_of_injury")),
                       help="Every T1 casualty who needs surgery (mass-casualty incidents and Role 3 included), "
                            "operated within 2 h of injury; with unlimited care "
                            f"{labels.share(s.get('within_2h_of_injury_unconstrained'))}. The 10-1-2 view counts T1 "
                            "battle casualties outside mass-casualty incidents.")
        cols[3].metric("Waited an hour or more", labels.share(w.get("share_waited_1h_or_more"), 1),
                       help=f"{w.get('waited_1h_or_more') or 0:,} casualties")
        cols[4].metric("Diverted", f"{w.get('patients_diverted') or 0:,}",
                       help="Patients taken past a full facility to another")
        st.plotly_chart(figs["fullness"], width="stretch", key="ex_cap_fullness")
        facility = st.selectbox("Facility over time", cap["facilities"], key="ex_cap_facility",
                                help="Each resource of the facility: the most in use each hour against what it "
                                     "has (dashed), and the patients waiting for it")
        if facility:
            st.plotly_chart(resources.explore_facility_figure(path, run["stamp"], facility), width="stretch",
                            key="ex_cap_facility_chart")
        st.plotly_chart(figs["queues"], width="stretch", key="ex_cap_queues")
        c1, c2 = st.columns(2)
        c1.plotly_chart(figs["waits"], width="stretch", key="ex_cap_waits")
        c2.plotly_chart(figs["diversions"], width="stretch", key="ex_cap_diversions")
        st.plotly_chart(figs["peaks"], width="stretch", key="ex_cap_peaks")
        resources_rows = rep.get("resources") or []
        with st.expander("Every facility resource and vehicle pool (the capacity report)"):
            widths = {"Facility": 160, "Resource": 170, "Capacity": 66, "Peak": 50, "Hours full": 76,
                      "Longest queue": 104, "Busy": 50, "Served": 60, "Mean wait": 76, "Called in": 70}
            helps = {"Peak": "Most in use at one time", "Hours full": "Hours every unit was in use",
                     "Busy": "Share of the time in use", "Served": "Patients or trips served",
                     "Called in": "Off-shift surgical teams called in for T1 casualties (operating tables)"}
            st.dataframe(pl.DataFrame({
                "Facility": [r["facility"] for r in resources_rows],
                "Resource": [r["resource"] for r in resources_rows],
                "Capacity": [labels.number(r["capacity"]) for r in resources_rows],
                "Peak": [labels.number(r["peak"]) for r in resources_rows],
                "Hours full": [labels.number(r["hours_at_capacity"]) for r in resources_rows],
                "Longest queue": [labels.number(r["longest_queue"]) for r in resources_rows],
                "Busy": [labels.share(r["utilisation"]) for r in resources_rows],
                "Served": [labels.number(r["served"]) for r in resources_rows],
                "Mean wait": [labels.minutes(r["mean_wait_min"]) for r in resources_rows],
                "Called in": [labels.number(r.get("teams_called_in")) for r in resources_rows]}),
                hide_index=True, width="stretch",
                column_config={c: st.column_config.TextColumn(c, width=w, help=helps.get(c))
                               for c, w in widths.items()})

elif view == "Calibration":
    report = ov["calibration"]
    if not report:
        st.info("This run has no calibration report (calibration.json).")
    else:
        s = report.get("summary", {})
        st.write(f"**{s.get('pass', 0)} pass · {s.get('warn', 0)} warn · {s.get('n/a', 0)} not applicable** "
                 f"(published targets from the medical literature, for a {report.get('evacuation_posture')} "
                 "evacuation posture)")
        targets = report.get("targets", [])
        st.dataframe(pl.DataFrame({
            "Status": [STATUS.get(t["status"], t["status"]) for t in targets],
            "Figure": [t["metric"] for t in targets],
            "Value": [labels.number(t["value"]) if t.get("id") == "14" else labels.share(t["value"], 1)
                      for t in targets],
            "± (95 %)": ["" if t.get("margin") is None else labels.share(t["margin"], 1) for t in targets],
            "Published range": [target_range(t) for t in targets],
            "Patients counted": [labels.number(t.get("n")) for t in targets],
            "Source": [t.get("source") or "" for t in targets],
            "Note": [readable_note(t.get("note")) for t in targets]}), hide_index=True, width="stretch",
            height=35 * (len(targets) + 1) + 3)

elif view == "Patients":
    def follow_table() -> None:
        """The table changed: the card shows its first patient again."""
        ss.pop("ex_pid", None)

    def pick_row() -> None:
        rows = ss["ex_table"].selection.rows
        if rows:
            ss["ex_pid"] = ss["ex_page_ids"][rows[0]]

    options = ov["options"]
    cols = st.columns(5)
    names = {"front": "Front", "nationality": "Nationality", "category": "Category", "triage": "Triage",
             "outcome": "Outcome"}
    chosen = {c: cols[i].multiselect(names[c], options[c], key=f"ex_f_{c}", on_change=follow_table,
                                     placeholder="all",
                                     format_func=labels.plain if c in ("category", "outcome") else str)
              for i, c in enumerate(names)}
    left, right = st.columns([3, 1])
    search = left.text_input("Search", key="ex_search", placeholder="name, service number or patient id",
                             on_change=follow_table)
    filters = tuple((k, tuple(v)) for k, v in chosen.items() if v)
    page_no = right.number_input("Page", min_value=1, value=1, step=1, key="ex_page", on_change=follow_table)
    table, total = resources.explore_patients(path, run["stamp"], filters, search.strip(),
                                              (int(page_no) - 1) * PAGE_ROWS, PAGE_ROWS)
    pages = max(1, -(-total // PAGE_ROWS))
    st.caption(f"{total:,} {'patient matches' if total == 1 else 'patients match'} · page "
               f"{min(int(page_no), pages):,} of {pages:,} · select a row to open the patient card")
    ss["ex_page_ids"] = table["patient_id"].to_list()
    shown = table.with_columns(
        [pl.col(c).cast(pl.String).replace_strict(labels.ALL, default=pl.col(c).cast(pl.String).str.replace_all("_", " "))
         for c in ("category", "mechanism", "body_region", "outcome", "last_facility")],
        injury_time=pl.col("injury_time").dt.strftime("%Y-%m-%d %H:%M"))
    st.dataframe(shown, hide_index=True, width="stretch", height=300, key="ex_table", on_select=pick_row,
                 placeholder="–",
                 selection_mode="single-row",
                 column_config={c: labels.header(c) for c in table.columns} | {
                     "patient_id": st.column_config.NumberColumn("Patient", format="%d"),
                     "injury_time": "Injured (UTC)", "last_facility": "Last place of care"})
    first_id = int(table["patient_id"][0]) if table.height else 1
    pid = st.number_input("Patient card: patient id", min_value=1, value=first_id, step=1, key="ex_pid")
    card = resources.explore_patient_card(path, run["stamp"], int(pid))
    if card is None:
        st.warning(f"Run {ov['run_id']} has no patient {int(pid):,} (ids are 1 to {f['patients']:,}).")
    else:
        p = card["patient"]
        st.subheader(f"{p['rank']} {p['given_name']} {p['family_name']}")
        c1, c2, c3 = st.columns(3)
        c1.markdown(f"**Service number** {p['service_number']}  \n**Nationality** {p['nationality']}  \n"
                    f"**Sex / age** {p['sex']}, {p['age']} (born {p['birth_date']})  \n"
                    f"**Blood group** {p['blood_group']}  \n**Front** {labels.text(p['front'])}")
        c2.markdown(f"**Injured** {p['injury_time']:%Y-%m-%d %H:%M} UTC ({labels.plain(p['warfare_type'])})  \n"
                    f"**Category / mechanism** {labels.plain(p['category'])} / {labels.plain(p['mechanism'])}  \n"
                    f"**Condition** {p['condition_display']} (SNOMED CT {p['condition_code']})  \n"
                    f"**Body region / severity** {labels.plain(p['body_region'])} / {p['severity']}"
                    f"{' · polytrauma' if p['polytrauma'] else ''}  \n"
                    f"**Triage** {labels.TRIAGE.get(p['triage'], p['triage'])}"
                    f"{' · mass-casualty incident' if p['mass_casualty'] else ''}")
        incident = f"  \n**Incident** {p['event_id']}" if p.get("event_id") else ""
        waited = (f"  \n**Waited** {labels.minutes(p['wait_min']) + ' in all' if p['wait_min'] else 'not at all'}"
                  f"{', diverted ' + str(p['diversions']) + ' time(s)' if p.get('diversions') else ''}"
                  if p.get("wait_min") is not None else "")
        c3.markdown(f"**Outcome** {OUTCOME_LABELS.get(p['outcome'], p['outcome'])}  \n"
                    f"**At** {p['outcome_time']:%Y-%m-%d %H:%M} UTC, {labels.plain(p['last_facility'])}"
                    f"{incident}{waited}")
        st.markdown("**MIST-AT hand-over**")
        st.info(card["handover"])
        events = card["events"]
        t1, t2, t3 = st.tabs(["Timeline", "Conditions", "Vital signs"])
        t1.dataframe(pl.DataFrame({
            "Time (UTC)": [t.strftime("%Y-%m-%d %H:%M") for t in events["time"]],
            "Minutes after injury": [f"{v:,}" for v in events["minutes_after_injury"]],
            "Where": [labels.plain(v) for v in events["facility"]],
            "Event": [labels.EVENT.get(v, labels.plain(v)) for v in events["event"]],
            "Detail": [labels.detail(v) for v in events["detail"]]}), hide_index=True, width="stretch",
            column_config={"Time (UTC)": st.column_config.TextColumn(width="small"),
                           "Minutes after injury": st.column_config.TextColumn(width="small"),
                           "Where": st.column_config.TextColumn(width="small"),
                           "Event": st.column_config.TextColumn(width="small"),
                           "Detail": st.column_config.TextColumn(width="large")})
        conditions = card["conditions"]
        t2.dataframe(pl.DataFrame({
            "Rank": conditions["rank"].to_list(), "Condition": conditions["display"].to_list(),
            "SNOMED CT": conditions["code"].to_list(),
            "Body region": [labels.plain(v) for v in conditions["body_region"]],
            "Severity": [labels.plain(v) for v in conditions["severity"]]}), hide_index=True, width="stretch")
        vitals = card["vitals_wide"]
        if vitals.height:
            vitals = vitals.with_columns(time=pl.col("time").dt.strftime("%Y-%m-%d %H:%M"),
                                         facility=pl.col("facility").cast(pl.String).replace_strict(
                                             labels.PLACE, default=pl.col("facility").cast(pl.String)))
            vitals = vitals.rename({"time": "Time (UTC)", "facility": "Where",
                                    **{k: v for k, v in labels.VITALS.items() if k in vitals.columns}})
        t3.dataframe(vitals, hide_index=True, width="stretch", placeholder="–")

else:  # Compare
    others = {r["out_dir"]: r for r in resources.explore_runs(
        (ss.get("ex_folder").strip(),) if (ss.get("ex_folder") or "").strip() else ())
        if r["reason"] is None and r["out_dir"] != path}
    if not others:
        st.info("There is no other run to compare this one with: generate a second run (for example the same "
                "scenario with a medical plan, or another seed) on the Generate page.")
        st.stop()
    other = st.selectbox("Compare with", list(others), key="ex_compare_with",
                         format_func=lambda p: run_label(others[p]),
                         help="The second run; differences are second run minus the run chosen above.")
    second = others[other]
    a_label = f"First: {run['scenario_name'] or 'run'} ({run['run_id'][-8:]})"
    b_label = f"Second: {second['scenario_name'] or 'run'} ({second['run_id'][-8:]})"
    st.caption(f"**First run**: {labels.text(run_label(run))}  \n**Second run**: {labels.text(run_label(second))}")
    from core.explore import differences
    rows = differences(resources.explore_comparison(other, second["stamp"]),
                       resources.explore_comparison(path, run["stamp"]))
    show_differences(rows, "First run", "Second run", key="ex_compare_table")
    figs = resources.explore_compare_figures(path, run["stamp"], a_label, other, second["stamp"], b_label)
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs["per_day"], width="stretch", key="ex_cmp_day")
    c2.plotly_chart(figs["outcomes"], width="stretch", key="ex_cmp_outcomes")
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs["occupancy"], width="stretch", key="ex_cmp_occupancy")
    c2.plotly_chart(figs["timings"], width="stretch", key="ex_cmp_timings")
