"""The run picker of the Explore and Replay pages (a part of those pages, not a page: app.py does not list it)."""
import streamlit as st

import resources
from charts.labels import utc
from core.explore import missing_folder

FORMATS = {"parquet": "Parquet", "csv": "CSV", "ndjson": "NDJSON", "json": "JSON", "fhir": "FHIR"}


def run_format(run: dict) -> str:
    fmt = FORMATS.get(run.get("format") or "", run.get("format") or "?")
    if run.get("compressed"):
        fmt += " + gzip"
    if run.get("encrypted"):
        fmt += ", encrypted"
    return fmt


def label(run: dict) -> str:
    """What tells runs apart: scenario, start time (UTC), patients and format; the run id last."""
    fmt = run_format(run)
    started = utc(run.get("created_at")).removesuffix(" UTC")
    name = (run.get("scenario_name") or "unnamed scenario").replace("\n", " ")
    text = (f"{name} · {started} UTC · {run.get('patients') or 0:,} patients · {fmt} · id {run['run_id']}")
    return text + ("" if run["reason"] is None else "  (cannot be explored)")


def _other_folder(key: str) -> tuple[str, ...]:
    """A folder of runs (or one run folder) typed by the user, when it exists."""
    with st.expander("Runs from another folder"):
        extra = st.text_input("Folder", key=key, placeholder="/path/to/runs or /path/to/one/run",
                              help="Runs under the data folder are always listed; add a folder written by the CLI "
                                   "(inside the data folder or a folder the operator allows with "
                                   "MPG_EXPLORE_FOLDERS).")
        problem = missing_folder(extra)
        if problem:
            st.error(problem)
    return () if problem or not extra.strip() else (extra.strip(),)


def pick_run(key: str, *, none_yet: str, explorable_only: bool = False, other_folder_key: str | None = None,
             follow_key: str | None = None, label_text: str = "Run", container=None) -> tuple[str, dict]:
    """A select box of the run folders, newest first; returns the chosen folder and its ``core.runs.list_runs``
    row, or stops the page with ``none_yet`` when there is no run to choose.

    ``other_folder_key``: also list the runs of a folder the user types; ``follow_key``: start on the run chosen
    by the picker of that key (the run open on another page)."""
    folders = _other_folder(other_folder_key) if other_folder_key else ()
    runs = resources.explore_runs(folders)
    if explorable_only:
        runs = [r for r in runs if r["reason"] is None]
    if not runs:
        st.info(none_yet)
        st.stop()
    by_path = {r["out_dir"]: r for r in runs}
    if follow_key and st.session_state.get(follow_key) in by_path and key not in st.session_state:
        st.session_state[key] = st.session_state[follow_key]
    path = (container or st).selectbox(label_text, list(by_path), key=key, format_func=lambda p: label(by_path[p]),
                                       help="Newest first: scenario, start time (UTC), patients, format and the "
                                            "run's id.")
    return path, by_path[path]


def runs_to_compare(folders: tuple[str, ...] = ()) -> dict[str, dict]:
    """Every run that can be explored, by folder, newest first (the second run of a comparison)."""
    return {r["out_dir"]: r for r in resources.explore_runs(folders) if r["reason"] is None}
