"""Replay: a run's flow animated over scenario time: where patients are (point of injury, in transit, Role 1..4)
and how many were injured, returned to duty, died or left theatre so far. The animation is a plotly figure with
frames, so play, pause, speed and the time slider run in the browser without a round trip to the server."""
import streamlit as st

import resources
from core.explore import RunNotExplorable, replay_step
from views.run_picker import pick_run

STEPS = ("1h", "2h", "3h", "6h", "12h", "1d")

st.title("Replay")
path, run = pick_run("rp_run", explorable_only=True, follow_key="ex_run",  # starts on the run open on Explore
                     none_yet="No run to replay yet: generate one on the Generate page (encrypted and unfinished "
                              "runs cannot be replayed).")
try:
    ov = resources.explore_overview(path, run["stamp"])
except RunNotExplorable as exc:
    st.error(str(exc))
    st.stop()

options = ov["options"]
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
chosen = {"front": c1.multiselect("Front", options["front"], key="rp_front", placeholder="all fronts"),
          "nationality": c2.multiselect("Nation", options["nationality"], key="rp_nation", placeholder="all nations"),
          "triage": c3.multiselect("Triage", options["triage"], key="rp_triage", placeholder="all triage groups")}
auto = replay_step(ov["start"], ov["end"])
every = c4.selectbox("Step", STEPS, index=STEPS.index(auto) if auto in STEPS else len(STEPS) - 1, key="rp_step",
                     help="Scenario time per animation frame")
filters = tuple((k, tuple(v)) for k, v in chosen.items() if v)

data = resources.replay_frames(path, run["stamp"], every, filters)
frames = data["frames"]
if frames.is_empty():
    st.warning("No frame in this run's window.")
    st.stop()
times = frames["time"].to_list()
first = st.select_slider("Jump to", options=range(len(times)), value=0, key=f"rp_jump_{every}",
                         format_func=lambda i: f"day {(times[i] - ov['start']).days + 1}, {times[i]:%H:%M}")
figs = resources.replay_figure(path, run["stamp"], every, filters, int(first))
st.plotly_chart(figs["animation"], width="stretch", key="rp_figure")
st.caption("▶ plays from the frame shown (1×, 4× or 16× speed), ❚❚ pauses; drag the slider under the chart to "
           "scrub. 'In transit' are patients between a departure and the next arrival.")

last = frames.row(-1, named=True)
cols = st.columns(4)
cols[0].metric("Injured", f"{last['total_injured']:,}")
cols[1].metric("Returned to duty", f"{last['total_rtd']:,}")
cols[2].metric("Died", f"{last['total_died']:,}")
cols[3].metric("Out of theatre", f"{last['total_evacuated']:,}")

st.plotly_chart(figs["timeline"], width="stretch", key="rp_timeline")
