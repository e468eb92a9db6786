"""Generate: run the scenario into files (and the database) in the background, with live progress and metrics."""
from pathlib import Path

import streamlit as st

import resources
from charts.live import line_spec
from core.exports import download_limit_bytes, estimated_bytes, free_bytes, human_bytes, zip_run
from core.jobs import JobBusy
from core.scenario import MAX_PATIENTS, ScenarioError
from core.sinks import FORMATS

FORMAT_LABELS = {"parquet": "Parquet (columnar, smallest, fastest)", "csv": "CSV",
                 "ndjson": "NDJSON (one JSON object a line)", "json": "JSON (nested patients + flat child tables)",
                 "fhir": "FHIR R4 (Parquet tables + Bundle.ndjson)"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{seconds:.1f} s"


def base_scenario():
    return st.session_state.get("scenario") or resources.default_scenario()


def saved_as(state) -> tuple[str | None, int | None]:
    """Name and version under which the Scenario page saved this scenario in the database (None, None if not)."""
    version = state.get("scenario_version")
    saved = state.get("sc_saved")  # (name, version, sha256) kept by the Scenario page
    name = state.get("scenario_name") or (saved[0] if saved else None)
    return (name, version) if version is not None and name else (None, None)


def problems(base, state, db_down) -> tuple[object, dict[str, str]]:
    """The scenario to run and, per widget, what blocks it (shown next to the widget)."""
    found, scenario = {}, base
    patients = int(state.get("gen_patients") or base.patients)
    if patients != base.patients:
        try:
            scenario = base.with_overrides(patients=patients)
        except ScenarioError as exc:
            found["patients"] = str(exc)
    fmt, compress = state.get("gen_format", "parquet"), bool(state.get("gen_compress"))
    need, free = estimated_bytes(patients, fmt, compress), free_bytes(resources.job_registry().runs_root)
    if need > 0.95 * free:
        found["patients"] = (f"{patients:,} patients as {fmt}{' + gzip' if compress else ''} need about "
                             f"{human_bytes(need)} but only {human_bytes(free)} is free: choose fewer patients, "
                             "compression or Parquet.")
    if state.get("gen_encrypt"):
        if not state.get("gen_password"):
            found["password"] = "Encryption needs a password (any non-empty text; it is never stored)."
        elif state.get("gen_password") != state.get("gen_password_repeat"):
            found["password"] = "The two passwords differ."
    if state.get("gen_persist") and db_down:
        found["persist"] = "The database is unavailable: turn off saving to the database (files still work)."
    elif state.get("gen_persist") and state.get("gen_encrypt"):
        found["persist"] = ("The database stores the tables unencrypted: turn off encryption or saving to the "
                            "database.")
    return scenario, found


def start_run() -> None:
    """Button callback: read the widgets, hand the run to the job registry; the password leaves session state."""
    state = st.session_state
    scenario, found = problems(base_scenario(), state, resources.db_error())
    password = state.get("gen_password") if state.get("gen_encrypt") else None
    state["gen_password"] = state["gen_password_repeat"] = ""
    if found or state.get("scenario_error"):
        state["gen_submit_error"] = "Not started: " + " ".join(found.values())
        return
    try:
        job = resources.job_registry().submit(
            scenario, fmt=state.get("gen_format", "parquet"), compress=bool(state.get("gen_compress")),
            password=password, persist=bool(state.get("gen_persist")), scenario_name=saved_as(state)[0],
            scenario_version=saved_as(state)[1])
        state["gen_watching"] = job.run_id
        state.pop("gen_submit_error", None)
    except (JobBusy, ValueError) as exc:
        state["gen_submit_error"] = str(exc)


st.title("Generate")
registry = resources.job_registry()
db_down = resources.db_error()
if db_down:
    st.warning(f"**Database unavailable** — runs are written to files only. {db_down}", icon=":material/cloud_off:")

base = base_scenario()
saved_name, version = saved_as(st.session_state)
scenario_error = st.session_state.get("scenario_error")
st.caption(f"Scenario **{base.name}**{f' (saved as {saved_name!r} v{version})' if version else ''} · seed {base.seed} · {base.days} days · "
           f"{len(base.fronts)} front(s) · edit it on the Scenario page")
if scenario_error:
    st.error(f"The scenario is not valid, so it cannot be generated: {scenario_error}")

if st.session_state.get("gen_base") != base.sha256():  # a new scenario brings its own number of patients
    st.session_state["gen_base"] = base.sha256()
    st.session_state["gen_patients"] = min(base.patients, MAX_PATIENTS)
if db_down:
    st.session_state["gen_persist"] = False
scenario, found = problems(base, st.session_state, db_down)
left, mid, right = st.columns(3)
with left:
    st.number_input("Patients", min_value=1, max_value=MAX_PATIENTS, step=1000, key="gen_patients",
                    help=f"Exactly this many patients are generated (1 to {MAX_PATIENTS:,}).")
    if "patients" in found:
        st.error(found["patients"], icon=":material/error:")
    st.selectbox("Format", FORMATS, format_func=lambda f: FORMAT_LABELS.get(f, f), key="gen_format")
with mid:
    st.toggle("Compress (gzip)", key="gen_compress", help="Every file gets .gz.")
    encrypt = st.toggle("Encrypt (AES-256-GCM)", key="gen_encrypt",
                        help="Every file gets .enc; decrypt with `python -m core decrypt`.")
    if encrypt:
        st.text_input("Password", type="password", key="gen_password")
        st.text_input("Repeat password", type="password", key="gen_password_repeat")
        if "password" in found:
            st.error(found["password"], icon=":material/error:")
with right:
    st.toggle("Save to database", key="gen_persist", disabled=bool(db_down),
              help="Also load the four tables into the database (Explore and Replay read them there)."
              if not db_down else "The database is unavailable; runs go to files only.")
    if "persist" in found:
        st.error(found["persist"], icon=":material/error:")

active = registry.active()
if st.session_state.get("gen_submit_error"):
    st.error(st.session_state["gen_submit_error"])
st.button("Generate", type="primary", icon=":material/play_arrow:", on_click=start_run,
          disabled=bool(found or scenario_error or active),
          help="A run is already going; wait for it or cancel it." if active else None)


def charts(samples: list[dict]) -> None:
    if len(samples) < 2:
        st.caption("Live charts appear after the first two seconds.")
        return
    data = {"seconds": [s["t"] for s in samples],
            "patients/s": [s["patients_per_s"] for s in samples],
            "current MB": [s["rss_mb"] for s in samples], "peak MB": [s["peak_rss_mb"] for s in samples],
            "pool in use": [s["pool_checked_out"] or 0 for s in samples],
            "cache hit %": [round(100 * (s["cache_hit_rate"] or 0), 1) for s in samples]}
    cols = st.columns(4)
    for col, series, title in zip(cols, (["patients/s"], ["current MB", "peak MB"], ["pool in use"], ["cache hit %"]),
                                  ("patients/s", "memory (MB)", "pool connections in use", "cache hit rate (%)")):
        col.vega_lite_chart(data, line_spec("seconds", series, y_title=title), width="stretch")


def downloads(view: dict) -> None:
    files = (view["manifest"] or {}).get("files") or []
    folder, limit = Path(view["out_dir"]), download_limit_bytes()
    total = sum(f["bytes"] for f in files)
    cols = st.columns(min(len(files) + 1, 4) or 1)
    for i, f in enumerate(files):
        col = cols[i % len(cols)]
        if f["bytes"] <= limit:
            col.download_button(f"{f['name']} ({human_bytes(f['bytes'])})", data=lambda p=folder / f["name"]: p.read_bytes(),
                                file_name=f["name"], icon=":material/download:", key=f"dl-{view['run_id']}-{f['name']}")
        else:
            col.caption(f"{f['name']} ({human_bytes(f['bytes'])}): too big for a browser download, "
                        f"take it from `{folder / f['name']}`")
    if total <= limit:
        cols[len(files) % len(cols)].download_button(
            f"All as ZIP (~{human_bytes(total)})", data=lambda: zip_run(folder, resources.exports_dir()).read_bytes(),
            file_name=f"{view['run_id']}.zip", mime="application/zip", icon=":material/folder_zip:",
            key=f"zip-{view['run_id']}")


run_every = 1 if active else None


@st.fragment(run_every=run_every)
def job_panel() -> None:
    job = registry.current()
    if job is None:
        st.info("No run yet since the server started. Runs from earlier sessions are on the Runs page.")
        return
    v = job.view()
    title = f"Run `{v['run_id']}` · {v['scenario_name']} · seed {v['seed']} · {v['format']}"
    if v["status"] in ("queued", "running"):
        st.session_state["gen_watching"] = v["run_id"]
        if run_every is None:  # started from another tab: rerun the page so it polls
            st.rerun()
        st.subheader(f"{v['status'].capitalize()}")
        st.markdown(title)
        st.progress(v["fraction"], text=f"{v['patients_done']:,} of {v['patients_total']:,} patients · "
                    f"{v['patients_per_s']:,.0f} patients/s · ETA {duration(v['eta_s'])}")
        st.button("Cancel", icon=":material/stop:", disabled=v["cancel_requested"],
                  on_click=registry.cancel, args=(v["run_id"],),
                  help="Stop the run: temporary files are removed and the manifest says cancelled.")
        charts(v["samples"])
        return
    if st.session_state.get("gen_watching") == v["run_id"] and run_every is not None:
        st.session_state.pop("gen_watching")
        st.rerun()  # the run ended: redraw the whole page (Generate is enabled again)
    m = v["manifest"] or {}
    st.subheader(f"Last run: {v['status']}")
    st.markdown(title)
    if v["status"] == "completed":
        st.success(f"Run {v['run_id']} completed: {m.get('patients', 0):,} patients in {duration(m.get('elapsed_s'))} "
                   f"({(m.get('patients_per_s') or 0):,.0f} patients/s).", icon=":material/check_circle:")
        cols = st.columns(5)
        cols[0].metric("Patients", f"{m.get('patients', 0):,}")
        cols[1].metric("Seconds", f"{m.get('elapsed_s', 0):.1f}")
        cols[2].metric("Patients/s", f"{(m.get('patients_per_s') or 0):,.0f}")
        cols[3].metric("Peak memory (sampled)", f"{v['peak_rss_mb']:,.0f} MB")
        cols[4].metric("Size on disk", human_bytes(sum(f["bytes"] for f in m.get("files", []))))
        cal = m.get("calibration") or {}
        if cal:
            st.caption(f"Realism: {cal.get('pass', 0)} published targets met, {cal.get('warn', 0)} warnings "
                       f"(calibration.json). Files in `{v['out_dir']}`.")
        downloads(v)
    elif v["status"] == "cancelled":
        st.warning(f"Run {v['run_id']} cancelled after {v['patients_done']:,} of {v['patients_total']:,} patients: "
                   "no data file was kept; manifest.json records the cancellation.", icon=":material/cancel:")
    else:
        st.error(f"Run {v['run_id']} failed: {v['error'] or 'unknown reason'}", icon=":material/error:")
    if v["db_note"]:
        st.info(v["db_note"], icon=":material/database:")
    with st.expander("Run metrics (one sample a second)"):
        charts(v["samples"])


job_panel()
