"""Runs: every run with its status, size, seed, scenario version and timings; download as ZIP; delete."""
from pathlib import Path

import streamlit as st

import resources
from core.exports import download_limit_bytes, human_bytes, remove_zip, zip_run
from core.runs import RunInProgress


def delete_run(run_id: str, out_dir: str | None) -> None:
    """Button callback: remove the run's folder, database rows and ZIP, then refresh the cached lists."""
    try:
        resources.job_registry().delete_run(run_id, out_dir)
        remove_zip(run_id, resources.exports_dir())
        resources.run_summary.clear()
        st.session_state["runs_message"] = ("success", f"Run {run_id} deleted (files and database rows).")
    except (RunInProgress, ValueError, OSError) as exc:  # in progress, not a run of ours, disk
        st.session_state["runs_message"] = ("error", f"Run {run_id} was not deleted: {exc}")
    st.session_state.pop("runs_confirm", None)


st.title("Runs")
db_down = resources.db_error()
if db_down:
    st.warning(f"**Database unavailable** — showing the run folders only. {db_down}", icon=":material/cloud_off:")
if "runs_message" in st.session_state:
    kind, text = st.session_state.pop("runs_message")
    (st.success if kind == "success" else st.error)(text)

runs = resources.runs()
if not runs:
    st.info("No runs yet. Start one on the Generate page.")
    st.stop()

table = [{
    "run": r["run_id"], "status": r["status"], "started (UTC)": r.get("created_at"),
    "scenario": r.get("scenario_name"), "version": r.get("scenario_version"), "seed": r.get("seed"),
    "patients": r.get("patients"),
    "format": (r.get("format") or "") + (" +gz" if r.get("compressed") else "") + (" +enc" if r.get("encrypted") else ""),
    "size": human_bytes(r.get("bytes")) if r.get("on_disk") else "files deleted",
    "seconds": r.get("elapsed_s"), "patients/s": r.get("patients_per_s"), "peak MB": r.get("peak_rss_mb"),
    "in database": bool(r.get("persisted")), "error": r.get("error"),
} for r in runs]
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"patients/s": st.column_config.NumberColumn(format="%.0f"),
                            "seconds": st.column_config.NumberColumn(format="%.2f")})
st.caption(f"{len(runs)} run(s); the dashboard's runs are kept in `{resources.job_registry().runs_root}`.")

by_id = {r["run_id"]: r for r in runs}
run_id = st.selectbox("Run", list(by_id), format_func=lambda k: f"{k} · {by_id[k]['status']} · "
                      f"{(by_id[k].get('patients') or 0):,} patients")
run = by_id[run_id]
finished = run["status"] in ("completed", "cancelled", "failed")

if finished and run.get("on_disk"):
    summary = resources.run_summary(run_id, run.get("out_dir"))
    m = summary["manifest"]
    cols = st.columns(4)
    cols[0].metric("Patients", f"{(m.get('patients') or 0):,}")
    cols[1].metric("Seconds", f"{(m.get('elapsed_s') or 0):.2f}")
    cols[2].metric("Patients/s", f"{(m.get('patients_per_s') or 0):,.0f}")
    cols[3].metric("Files", f"{len(m.get('files') or [])} · {human_bytes(run.get('bytes'))}")
    if summary.get("counts"):
        with st.expander("Counts from the database"):
            st.json(summary["counts"], expanded=False)
    folder = Path(run["out_dir"])
    if run["status"] == "completed":
        if (run.get("bytes") or 0) <= download_limit_bytes():
            st.download_button("Download as ZIP", data=lambda: zip_run(folder, resources.exports_dir()).read_bytes(),
                               file_name=f"{run_id}.zip", mime="application/zip", icon=":material/folder_zip:",
                               key=f"runs-zip-{run_id}")
        else:
            st.caption(f"This run is {human_bytes(run.get('bytes'))}, above the browser download limit "
                       f"(MPG_DOWNLOAD_MAX_MB); take its files from `{folder}`.")
elif not finished:
    st.caption(f"Run {run_id} is {run['status']}.")

confirm = st.checkbox(f"Yes, delete run {run_id} and its files", key="runs_confirm",
                      disabled=run["status"] in ("queued", "running"))
st.button("Delete run", icon=":material/delete:", disabled=not confirm, on_click=delete_run, args=(run_id, run.get("out_dir")),
          help="Removes the run folder, its ZIP and its database rows. A running run must be cancelled first.")
