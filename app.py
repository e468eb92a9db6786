"""Dashboard entry point: page setup and navigation only (README: Project layout)."""
import time

import streamlit as st

import resources

st.set_page_config(page_title="Medical Patients Generator", page_icon=":material/medical_services:", layout="wide")
resources.warm_caches()  # once per process: lookups, run list, database link, metrics sampler
pg = st.navigation([
    st.Page("views/scenario.py", title="Scenario", icon=":material/tune:", default=True),
    st.Page("views/generate.py", title="Generate", icon=":material/play_circle:"),
    st.Page("views/monitor.py", title="Monitor", icon=":material/monitoring:"),
    st.Page("views/explore.py", title="Explore", icon=":material/insights:"),
    st.Page("views/replay.py", title="Replay", icon=":material/slow_motion_video:"),
    st.Page("views/runs.py", title="Runs", icon=":material/folder_open:"),
])
started = time.perf_counter()
try:
    pg.run()
finally:  # the page's script-run time, shown on Monitor (reruns and st.stop end here too)
    resources.page_timings().record(pg.title, time.perf_counter() - started)
