"""Explore: one finished run in pictures: key figures, timelines, the flow through the chain of care, the 10-1-2
lines, facility occupancy, the calibration report, and every patient (table and card)."""
import streamlit as st

import resources
from core.explore import OUTCOME_LABELS, RunNotExplorable
from views.run_picker import pick_run

VIEWS = ("Overview", "Flow", "10-1-2", "Occupancy", "Calibration", "Patients")
PAGE_ROWS = 200


st.title("Explore")
path, run = pick_run("ex_run", other_folder_key="ex_folder",
                     none_yet="No runs yet: generate one on the Generate page, or with "
                              "`python -m core generate --patients 20000 --out data/runs/demo`.")
if run["reason"]:
    st.warning(f"This run cannot be explored: {run['reason']}.")
    st.stop()
try:
    ov = resources.explore_overview(path, run["stamp"])
except RunNotExplorable as exc:
    st.error(str(exc))
    st.stop()

f = ov["figures"]
m = ov["manifest"]
st.caption(f"{ov['scenario'].get('name')} · seed {m.get('seed')} · {m.get('format')}"
           f"{' (gzip)' if m.get('compressed') else ''} · {ov['scenario'].get('days')} days from "
           f"{ov['start']:%Y-%m-%d} · generated in {m.get('elapsed_s')} s · `{path}`")
cols = st.columns(7)
cols[0].metric("Patients", f"{f['patients']:,}")
cols[1].metric("Killed in action", f"{f['kia']:,}")
cols[2].metric("Died of wounds", f"{f['dow']:,}")
cols[3].metric("Returned to duty", f"{f['rtd']:,}",
               help=None if f["rtd_share"] is None else f"{f['rtd_share']:.0%} of the patients")
cols[4].metric("Out of theatre (R4)", f"{f['role4']:,}")
cols[5].metric("BI case fatality", "–" if f["bi_cfr"] is None else f"{f['bi_cfr']:.1%}")
cols[6].metric("In MASCAL events", "–" if f["mascal_share"] is None else f"{f['mascal_share']:.0%}")

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
                        help="The 10-1-2 lines are set for the most urgent battle casualties; MASCAL patients "
                             "are always left out, as the calibration report does.")
    summary = resources.explore_flow(path, run["stamp"], t1_only)["timings"]["summary"]
    cols = st.columns(3)
    for col, row in zip(cols, summary.iter_rows(named=True)):
        share = "–" if row["within_share"] is None else f"{row['within_share']:.0%}"
        col.metric(f"{row['measure'].capitalize()} within {row['line_min']} min", share,
                   help=f"{row['within']:,} of {row['reached']:,} who reached it ({row['patients']:,} patients); "
                        f"median {row['median_min'] or 0:.0f} min, 90th percentile {row['p90_min'] or 0:.0f} min")
    st.plotly_chart(resources.explore_flow_figures(path, run["stamp"], t1_only)["timings"], width="stretch",
                    key="ex_timings")
    st.dataframe(summary, hide_index=True, width="stretch")

elif view == "Occupancy":
    st.plotly_chart(resources.explore_flow_figures(path, run["stamp"])["occupancy"], width="stretch",
                    key="ex_occupancy")
    st.caption("A patient is at a facility from arrival to departure, death, return to duty or evacuation out of "
               "theatre; 'in transit' counts patients between a departure and the next arrival.")

elif view == "Calibration":
    report = ov["calibration"]
    if not report:
        st.info("This run has no calibration report (calibration.json).")
    else:
        s = report.get("summary", {})
        st.write(f"**{s.get('pass', 0)} pass · {s.get('warn', 0)} warn · {s.get('n/a', 0)} not applicable** "
                 f"(published targets of DOMAIN.md §8.7 for a {report.get('evacuation_posture')} posture)")
        st.dataframe(report.get("targets", []), hide_index=True, width="stretch",
                     column_order=("status", "metric", "value", "margin", "low", "high", "n", "source", "note"),
                     column_config={"value": st.column_config.NumberColumn(format="%.3f"),
                                    "margin": st.column_config.NumberColumn("± 95 %", format="%.3f")})

else:  # Patients
    def follow_table() -> None:
        """The table changed: the card shows its first patient again."""
        st.session_state.pop("ex_pid", None)

    def pick_row() -> None:
        rows = st.session_state["ex_table"].selection.rows
        if rows:
            st.session_state["ex_pid"] = st.session_state["ex_page_ids"][rows[0]]

    options = ov["options"]
    cols = st.columns(5)
    chosen = {c: cols[i].multiselect(c.replace("_", " ").capitalize(), options[c], key=f"ex_f_{c}",
                                     on_change=follow_table)
              for i, c in enumerate(("front", "nationality", "category", "triage", "outcome"))}
    left, right = st.columns([3, 1])
    search = left.text_input("Search", key="ex_search", placeholder="name, service number or patient id",
                             on_change=follow_table)
    filters = tuple((k, tuple(v)) for k, v in chosen.items() if v)
    page_no = right.number_input("Page", min_value=1, value=1, step=1, key="ex_page", on_change=follow_table)
    table, total = resources.explore_patients(path, run["stamp"], filters, search.strip(),
                                              (int(page_no) - 1) * PAGE_ROWS, PAGE_ROWS)
    pages = max(1, -(-total // PAGE_ROWS))
    st.caption(f"{total:,} {'patient matches' if total == 1 else 'patients match'} · page {min(int(page_no), pages)} of {pages} · "
               "select a row to open the patient card")
    st.session_state["ex_page_ids"] = table["patient_id"].to_list()
    st.dataframe(table, hide_index=True, width="stretch", height=300, key="ex_table", on_select=pick_row,
                 selection_mode="single-row")
    first_id = int(table["patient_id"][0]) if table.height else 1
    pid = st.number_input("Patient card: patient id", min_value=1, value=first_id, step=1, key="ex_pid")
    card = resources.explore_patient_card(path, run["stamp"], int(pid))
    if card is None:
        st.warning(f"Run {ov['run_id']} has no patient {int(pid)} (ids are 1 to {f['patients']:,}).")
    else:
        p = card["patient"]
        st.subheader(f"{p['rank']} {p['given_name']} {p['family_name']}")
        c1, c2, c3 = st.columns(3)
        c1.markdown(f"**Service number** {p['service_number']}  \n**Nationality** {p['nationality']}  \n"
                    f"**Sex / age** {p['sex']}, {p['age']} (born {p['birth_date']})  \n"
                    f"**Blood group** {p['blood_group']}  \n**Front** {p['front']}")
        c2.markdown(f"**Injured** {p['injury_time']:%Y-%m-%d %H:%M} UTC ({p['warfare_type']})  \n"
                    f"**Category / mechanism** {p['category']} / {p['mechanism']}  \n"
                    f"**Condition** {p['condition_display']} ({p['condition_code']})  \n"
                    f"**Body region / severity** {p['body_region']} / {p['severity']}"
                    f"{' · polytrauma' if p['polytrauma'] else ''}  \n"
                    f"**Triage** {p['triage']}{' · MASCAL' if p['mass_casualty'] else ''}")
        c3.markdown(f"**Outcome** {OUTCOME_LABELS.get(p['outcome'], p['outcome'])}  \n"
                    f"**At** {p['outcome_time']:%Y-%m-%d %H:%M} UTC, {p['last_facility']}  \n"
                    f"**Incident** {p['event_id']}")
        st.markdown("**MIST-AT hand-over**")
        st.info(card["handover"])
        t1, t2, t3 = st.tabs(["Timeline", "Conditions", "Vital signs"])
        t1.dataframe(card["events"], hide_index=True, width="stretch")
        t2.dataframe(card["conditions"], hide_index=True, width="stretch")
        t3.dataframe(card["vitals_wide"], hide_index=True, width="stretch")
