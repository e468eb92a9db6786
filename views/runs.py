"""Runs: every run, told apart by scenario, start time, patients and format; its figures, its ZIP, and deletion of
the runs that may be deleted."""
from pathlib import Path

import streamlit as st

import resources
from core.exports import download_limit_bytes, human_bytes, remove_zip, zip_run
from core.explore import OUTCOME_LABELS
from core.labels import format_label, patients_done, patients_text, plain, run_labels, status_word, utc_minute
from core.runs import RunInProgress

TABLE_NAMES = {"patients": "Patients", "events": "Events", "conditions": "Conditions", "vitals": "Vital signs"}


def delete_run(run_id: str, out_dir: str | None, label: str) -> None:
    """Button callback: remove the run's folder, database rows and ZIP, then refresh the cached lists."""
    try:
        resources.job_registry().delete_run(run_id, out_dir)
        remove_zip(run_id, resources.exports_dir())
        resources.run_summary.clear()
        st.session_state["runs_message"] = ("success", f"Deleted: {plain(label)} (its files and database rows).")
    except (RunInProgress, ValueError, OSError) as exc:  # in progress, not a run of ours, disk
        st.session_state["runs_message"] = ("error", f"Not deleted: {plain(label)}. {plain(exc)}")


def number(value, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def seconds(value) -> str:
    if value is None:
        return "–"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes:,} min {secs:02d} s" if minutes else f"{value:,.1f} s"


st.title("Runs")
db_down = resources.db_error()
if db_down:
    st.warning(f"**Database unavailable** — showing the run folders only. {db_down}", icon=":material/cloud_off:")
if "runs_message" in st.session_state:
    kind, text = st.session_state.pop("runs_message")
    (st.success if kind == "success" else st.error)(text)

runs = resources.run_rows()
if not runs:
    st.info("No runs yet. Start one on the Generate page.")
    st.stop()

# every cell is text, so no column mixes types and a missing value reads "–", never "None"
versions = any(r.get("scenario_version") is not None for r in runs)
table = [{
    "Scenario": r.get("scenario_name") or "–", "Started (UTC)": utc_minute(r.get("created_at"), suffix=False),
    "Status": status_word(r.get("status")), "Patients": patients_text(r), "Format": format_label(r),
    "Size": ("–" if not r.get("files") else human_bytes(r.get("bytes"))) if r.get("on_disk") else "files deleted",
    "Time": seconds(r.get("elapsed_s")), "Patients/s": number(r.get("patients_per_s")),
    "Memory": "–" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:,.0f} MB",
    "Seed": "–" if r.get("seed") is None else str(r["seed"]),
    **({"Scenario version": "–" if r.get("scenario_version") is None else f"{r['scenario_version']:,}"}
       if versions else {}),
    "Database": "saved" if r.get("persisted") else "–", "Run id": r["run_id"],
} for r in runs]
# what tells runs apart and what happened, readable at 1400 px; speed, seed and id are the chosen run's details
shown = ("Scenario", "Started (UTC)", "Status", "Patients", "Format", "Size", "Time", "Memory", "Database")
st.dataframe(table, hide_index=True, width="stretch", column_order=shown,
             column_config={"Memory": st.column_config.TextColumn(help="The most memory the run held at once"),
                            "Database": st.column_config.TextColumn(help="Saved to the database too")})
st.caption(f"{len(runs):,} run{'s' if len(runs) != 1 else ''}, newest first.")

by_id = {r["run_id"]: r for r in runs}
labels = dict(zip(by_id, run_labels(runs)))
run_id = st.selectbox("Run", list(by_id), format_func=labels.__getitem__)
run = by_id[run_id]
label = labels[run_id]
finished = run["status"] in ("completed", "cancelled", "failed")

if finished and run.get("on_disk"):
    summary = resources.run_summary(run_id, run.get("out_dir"))
    m = summary["manifest"]
    if run["status"] == "cancelled":
        planned = run.get("patients_planned")
        st.warning(f"Cancelled after {number(patients_done(run))}{f' of {planned:,}' if planned else ''} patients: "
                   "no data file was kept.", icon=":material/cancel:")
    elif run["status"] == "failed":
        st.error(f"The run failed: {plain(run.get('error') or 'unknown reason')}", icon=":material/error:")
    cols = st.columns(5)
    cols[0].metric("Patients", number(patients_done(run)))
    cols[1].metric("Time", seconds(m.get("elapsed_s")))
    cols[2].metric("Patients/s", number(m.get("patients_per_s")))
    peak = m.get("peak_rss_mb")
    cols[3].metric("Peak memory of the run", "–" if peak is None else f"{peak:,.0f} MB")
    files = m.get("files") or []
    cols[4].metric("Files", f"{len(files):,} · {human_bytes(run.get('bytes'))}" if files else "none kept")
    counts = summary.get("counts")
    if counts:
        with st.expander("Stored in the database"):
            c = st.columns(5)
            for col, (key, word) in zip(c, (("deaths", "Deaths"), ("kia", "Killed in action"),
                                            ("dow", "Died of wounds"), ("rtd", "Returned to duty"),
                                            ("role4", "Evacuated out of theatre"))):
                col.metric(word, number(counts.get(key)))
            left, right = st.columns(2)
            left.dataframe([{"table": TABLE_NAMES.get(t, t), "rows": number(n)}
                            for t, n in (counts.get("rows") or {}).items()], hide_index=True, width="stretch")
            right.dataframe([{"outcome": OUTCOME_LABELS.get(k, k), "patients": number(n)}
                             for k, n in (counts.get("by_outcome") or {}).items()], hide_index=True, width="stretch")
    folder = Path(run["out_dir"])
    if run["status"] == "completed":
        if (run.get("bytes") or 0) <= download_limit_bytes():
            st.download_button("Download as ZIP", data=lambda: zip_run(folder, resources.exports_dir()).read_bytes(),
                               file_name=f"{run_id}.zip", mime="application/zip", icon=":material/folder_zip:",
                               key=f"runs-zip-{run_id}")
        else:
            st.caption(f"This run is {human_bytes(run.get('bytes'))}, above the browser download limit; take its "
                       "files from its folder (see Details).")
elif not finished:
    st.info(f"This run is {status_word(run['status']).lower()}.", icon=":material/hourglass_top:")

blocker = resources.deletion_blocker(run)
confirm = st.checkbox("Yes, delete this run and its files", key=f"runs_confirm_{run_id}", disabled=blocker is not None)
st.button("Delete run", icon=":material/delete:", disabled=blocker is not None or not confirm, on_click=delete_run,
          args=(run_id, run.get("out_dir"), label),
          help="Removes the run's folder, its ZIP and its database rows.")
if blocker:
    st.caption(f"This run cannot be deleted now: {blocker}.")

with st.expander("Details"):
    seed = "–" if run.get("seed") is None else run["seed"]
    version = "" if run.get("scenario_version") is None else f"  \nScenario version: {run['scenario_version']:,}"
    st.markdown(f"Run id: `{run_id}`  \nSeed: {seed}{version}  \nFolder: `{run.get('out_dir') or '–'}`  \n"
                f"The dashboard keeps its runs in `{resources.job_registry().runs_root}`.")
    if run.get("error"):
        st.markdown(f"Error as reported: {plain(run['error'])}")
