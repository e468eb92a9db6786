"""Generate: run the scenario into files (and the database) in the background, with live progress and metrics."""
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

import resources
from charts.live import line_spec, two_scale_spec
from core.exports import download_limit_bytes, estimated_bytes, free_bytes, human_bytes, zip_run
from core.jobs import JobBusy
from core.labels import FORMAT_NAMES, plain, run_label
from core.scenario import MAX_PATIENTS, ScenarioError
from core.sinks import FORMATS

FORMAT_LABELS = {"parquet": "Parquet (columnar, smallest, fastest)", "csv": "CSV",
                 "ndjson": "NDJSON (one JSON object a line)", "json": "JSON (nested patients + flat child tables)",
                 "fhir": "FHIR R4 (Parquet tables + Bundle.ndjson)"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{seconds:,.1f} s"


def patients_typed(state, base) -> int | None:
    """The Patients field as typed (None when empty); the field has no bounds of its own, so what it shows is
    what the page checks and runs."""
    value = state.get("gen_patients", base.patients)
    return None if value is None else int(value)


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
    patients = patients_typed(state, base)
    if patients is None or not 1 <= patients <= MAX_PATIENTS:
        found["patients"] = (f"Enter a number of patients from 1 to {MAX_PATIENTS:,}." if patients is None else
                             f"Enter from 1 to {MAX_PATIENTS:,} patients: {patients:,} cannot be generated.")
        return scenario, found
    if patients != base.patients:
        try:
            scenario = base.with_overrides(patients=patients)
        except ScenarioError as exc:
            found["patients"] = str(exc)
    fmt, compress = state.get("gen_format", "parquet"), bool(state.get("gen_compress"))
    need, free = estimated_bytes(patients, fmt, compress), free_bytes(resources.job_registry().runs_root)
    if need > 0.95 * free:
        found["patients"] = (f"{patients:,} patients as {FORMAT_NAMES.get(fmt, fmt)}{' + gzip' if compress else ''} need about "
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
fronts = len(base.fronts)
st.caption(f"Scenario **{plain(base.name)}**{f' (saved as {plain(saved_name)}, version {version:,})' if version else ''}"
           f" · seed {base.seed} · {base.days:,} day{'s' if base.days != 1 else ''} · {fronts:,} "
           f"front{'s' if fronts != 1 else ''} · change it on the Scenario page")
if scenario_error:
    st.error(f"The scenario is not valid, so it cannot be generated: {plain(scenario_error)}")

if st.session_state.get("gen_base") != base.sha256():  # a new scenario brings its own number of patients
    st.session_state["gen_base"] = base.sha256()
    st.session_state["gen_patients"] = min(base.patients, MAX_PATIENTS)
if db_down:
    st.session_state["gen_persist"] = False
scenario, found = problems(base, st.session_state, db_down)
left, mid, right = st.columns(3)
with left:
    # no min/max on the widget: a browser keeps the last valid number of a bounded field while it shows the
    # typed one, so the page checks the value itself and says why Generate waits
    st.number_input("Patients", value=None, step=1000, format="%d", key="gen_patients",
                    help=f"Exactly this many patients are generated (1 to {MAX_PATIENTS:,}).")
    if "patients" in found:
        st.error(found["patients"], icon=":material/error:")
    else:  # the field cannot show thousands separators
        st.caption(f"{scenario.patients:,} patients")
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
              help="Also load the four tables into the database (queries and the command line read them there)."
              if not db_down else "The database is unavailable; runs go to files only.")
    if "persist" in found:
        st.error(found["persist"], icon=":material/error:")

active = registry.active()
if st.session_state.get("gen_submit_error"):
    st.error(st.session_state["gen_submit_error"])
st.button("Generate", type="primary", icon=":material/play_arrow:", on_click=start_run,
          disabled=bool(found or scenario_error or active),
          help="A run is already going; wait for it or cancel it." if active else
          "Correct the fields marked in red first." if found or scenario_error else None)


SPEED_WINDOW_S = 5  # batches of 16,384 patients land in bursts: a second-by-second rate would jump from 0 to peaks


def speed(samples: list[dict]) -> list[float]:
    """Patients per second over the last SPEED_WINDOW_S seconds at each sample."""
    out, first = [], 0
    for s in samples:
        while samples[first]["t"] < s["t"] - SPEED_WINDOW_S:
            first += 1
        start = samples[first] if samples[first] is not s else samples[max(0, first - 1)]
        dt = s["t"] - start["t"]
        out.append(round((s["patients_done"] - start["patients_done"]) / dt, 1) if dt > 0 else 0.0)
    return out


def charts(samples: list[dict]) -> None:
    """The run's own progress first, then its speed, its memory, and the database pool with the cache hits: two
    by two, each big enough to read from across a room."""
    if len(samples) < 2:
        st.caption("The charts appear after the first two seconds of the run.")
        return
    data = {"seconds": [s["t"] for s in samples],
            "patients done": [s["patients_done"] for s in samples],
            "patients per second": speed(samples),
            "memory now": [s["rss_mb"] for s in samples], "peak memory": [s["peak_rss_mb"] for s in samples],
            "connections in use": [s.get("pool_checked_out") or 0 for s in samples],
            "cache hit rate (%)": [None if s.get("cache_hit_rate") is None else round(100 * s["cache_hit_rate"], 1)
                                   for s in samples]}
    x_title = "seconds since the start"
    top = st.columns(2)
    top[0].vega_lite_chart(data, line_spec("seconds", ["patients done"], x_title=x_title, y_title="patients",
                                           title="Patients generated"), width="stretch")
    top[1].vega_lite_chart(data, line_spec("seconds", ["patients per second"], x_title=x_title,
                                           y_title="patients per second", title=f"Speed ({SPEED_WINDOW_S} s average)"),
                           width="stretch")
    bottom = st.columns(2)
    bottom[0].vega_lite_chart(data, line_spec("seconds", ["memory now", "peak memory"], x_title=x_title,
                                              y_title="MB", title="Memory of the run (MB)"), width="stretch")
    bottom[1].vega_lite_chart(data, two_scale_spec("seconds", ("connections in use", "database connections in use"),
                                                   ("cache hit rate (%)", "cache hit rate (%)"), x_title=x_title,
                                                   title="Database connections and cache hits",
                                                   left_domain=(0, max(2, *data["connections in use"])),
                                                   right_domain=(0, 100)), width="stretch")


def downloads(view: dict) -> None:
    files = (view["manifest"] or {}).get("files") or []
    folder, limit = Path(view["out_dir"]), download_limit_bytes()
    total = sum(f["bytes"] for f in files)
    cols = st.columns(min(len(files) + 1, 3) or 1)  # three a row: a name and its size are read whole at 1400 px
    for i, f in enumerate(files):
        col = cols[i % len(cols)]
        if f["bytes"] <= limit:
            col.download_button(f"{f['name']} ({human_bytes(f['bytes'])})", data=lambda p=folder / f["name"]: p.read_bytes(),
                                file_name=f["name"], icon=":material/download:", key=f"dl-{view['run_id']}-{f['name']}",
                                width="stretch")
        else:
            col.caption(f"{f['name']} ({human_bytes(f['bytes'])}): too big for a browser download, "
                        "take it from the run's folder (see Details)")
    if total <= limit:
        cols[len(files) % len(cols)].download_button(
            f"All as ZIP (~{human_bytes(total)})", data=lambda: zip_run(folder, resources.exports_dir()).read_bytes(),
            file_name=f"{view['run_id']}.zip", mime="application/zip", icon=":material/folder_zip:",
            key=f"zip-{view['run_id']}", width="stretch")


def job_row(v: dict) -> dict:
    """The job's view as a run row (core.labels): what its label says."""
    m = v["manifest"] or {}
    row = {"scenario_name": v["scenario_name"], "created_at": datetime.fromtimestamp(v["submitted_at"], timezone.utc),
           "status": v["status"], "format": v["format"], "compressed": v["compressed"], "encrypted": v["encrypted"],
           "patients": v["patients_total"], "patients_generated": m.get("patients_generated", v["patients_done"])}
    if v["status"] == "completed":
        row["patients"] = m.get("patients", v["patients_done"])
    return row


def failure(error: str | None) -> str:
    """The failure's message without the exception's class name (kept in Details)."""
    text = (error or "unknown reason").strip()
    head, sep, rest = text.partition(": ")
    return rest if sep and head.isidentifier() and head[:1].isupper() else text


def details(v: dict) -> None:
    m = v["manifest"] or {}
    with st.expander("Details"):
        lines = [f"Run id: `{v['run_id']}`", f"Folder: `{v['out_dir']}`", f"Seed: {v['seed']}"]
        if v["error"]:
            lines.append(f"Error as reported: {plain(v['error'])}")
        cal = m.get("calibration") or {}
        if cal:
            lines.append("The realism check is in `calibration.json` in the folder.")
        st.markdown("  \n".join(lines))


run_every = 1 if active else None


@st.fragment(run_every=run_every)
def job_panel() -> None:
    job = registry.current()
    if job is None:
        st.info("No run yet since the server started. Runs from earlier sessions are on the Runs page.")
        return
    v = job.view()
    label = plain(run_label(job_row(v)))
    if v["status"] in ("queued", "running"):
        st.session_state["gen_watching"] = v["run_id"]
        if run_every is None:  # started from another tab: rerun the page so it polls
            st.rerun()
        st.subheader("Waiting to start" if v["status"] == "queued" else "Running")
        st.markdown(label)
        doing = "generating and saving to the database" if v["persist"] else "generating"
        left = duration(v["eta_s"]) if v["eta_s"] is not None else "working it out"
        st.progress(v["fraction"], text=f"{v['patients_done']:,} of {v['patients_total']:,} patients · "
                    f"{v['patients_per_s']:,.0f} patients/s · {doing} · time left: {left}")
        st.button("Cancel", icon=":material/stop:", disabled=v["cancel_requested"],
                  on_click=registry.cancel, args=(v["run_id"],),
                  help="Stop the run: no partial file is kept and the run is listed as cancelled.")
        charts(v["samples"])
        return
    if st.session_state.get("gen_watching") == v["run_id"] and run_every is not None:
        st.session_state.pop("gen_watching")
        st.rerun()  # the run ended: redraw the whole page (Generate is enabled again)
    m = v["manifest"] or {}
    st.subheader(f"Last run: {v['status']}")
    st.markdown(label)
    if v["status"] == "completed":
        st.success(f"Completed: {m.get('patients', 0):,} patients in {duration(m.get('elapsed_s'))} "
                   f"({(m.get('patients_per_s') or 0):,.0f} patients/s).", icon=":material/check_circle:")
        if m.get("persisted"):
            st.success(f"Saved to the database too: all {m.get('patients', 0):,} patients, with their events, "
                       "conditions and vital signs (4 tables).", icon=":material/database:")
        cols = st.columns(5)
        cols[0].metric("Patients", f"{m.get('patients', 0):,}")
        cols[1].metric("Time", duration(m.get("elapsed_s")))
        cols[2].metric("Patients/s", f"{(m.get('patients_per_s') or 0):,.0f}")
        peak = m.get("peak_rss_mb")
        cols[3].metric("Peak memory of the run", "–" if peak is None else f"{peak:,.0f} MB",
                       help="The most memory the run's process held at once.")
        cols[4].metric("Size on disk", human_bytes(sum(f["bytes"] for f in m.get("files", []))))
        cal = m.get("calibration") or {}
        if cal:
            st.caption(f"Realism: {cal.get('pass', 0):,} published targets met, {cal.get('warn', 0):,} "
                       f"outside their range.")
        downloads(v)
    elif v["status"] == "cancelled":
        generated = m.get("patients_generated", v["patients_done"])
        st.warning(f"Cancelled after {generated:,} of {v['patients_total']:,} patients: no data file was kept.",
                   icon=":material/cancel:")
    else:
        st.error(f"The run failed: {failure(v['error'])}", icon=":material/error:")
    if v["db_note"]:
        st.info(v["db_note"], icon=":material/database:")
    details(v)
    with st.expander("Run charts (one sample a second)"):
        charts(v["samples"])


job_panel()
