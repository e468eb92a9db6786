"""Dashboard entry point: page setup and navigation only (DESIGN.md)."""
import time

import streamlit as st

import resources

st.set_page_config(page_title="Medical Patients Generator", page_icon="🩺", layout="wide")
resources.warm_caches()  # once per process: lookups, run list, database link, metrics sampler
pg = st.navigation([
    st.Page("pages/scenario.py", title="Scenario", icon="🗺️", default=True),
    st.Page("pages/generate.py", title="Generate", icon=":material/play_circle:"),
    st.Page("pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/insights:"),
    st.Page("pages/replay.py", title="Replay", icon=":material/slow_motion_video:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
])
started = time.perf_counter()
try:
    pg.run()
finally:  # the page's script-run time, shown on Monitor (reruns and st.stop end here too)
    resources.page_timings().record(pg.title, time.perf_counter() - started)
