"""Replay: a run's flow animated over scenario time: where patients are (point of injury, in transit, Role 1..3),
how many were injured, returned to duty, died or left theatre so far and, for a run with a medical plan, how many
wait for each kind of resource. The animation is one plotly figure with frames, so play, pause, speed, the time
slider and the marker on the whole-run charts move together in the browser, without a round trip to the server."""
import streamlit as st

import resources
from charts.figures import R4_NOTE
from core.explore import RunNotExplorable, replay_step
from views.run_picker import pick_run

STEPS = ("1h", "2h", "3h", "6h", "12h", "1d")
STEP_WORDS = {"1h": "1 hour", "2h": "2 hours", "3h": "3 hours", "6h": "6 hours", "12h": "12 hours", "1d": "1 day"}

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
                     format_func=lambda s: STEP_WORDS.get(s, s), help="Scenario time per animation frame")
filters = tuple((k, tuple(v)) for k, v in chosen.items() if v)

data = resources.replay_frames(path, run["stamp"], every, filters)
frames = data["frames"]
if frames.is_empty():
    st.warning("No frame in this run's window.")
    st.stop()
figs = resources.replay_figure(path, run["stamp"], every, filters)
st.plotly_chart(figs["animation"], width="stretch", key="rp_figure")
queues = resources.replay_queues(path, run["stamp"], every, tuple(v for k, v in filters if k == "front"))
notes = ["▶ plays from the step shown (1×, 4× or 16× speed), ❚❚ pauses; drag the slider to move to any step: the "
         "bars, the title and the dotted marker on the whole-run charts follow. 'In transit' are patients between "
         "a departure and the next arrival.", R4_NOTE]
if queues is not None:
    notes.append("This run has a medical plan: 'waiting now' counts the patients waiting for a Role 1 team, a bed, "
                 "an operating table or a vehicle" + (" (of every nation and triage group: queues are counted per "
                                                      "facility)" if chosen["nationality"] or chosen["triage"] else "")
                 + ".")
else:
    notes.append("This run had unlimited care (no medical plan), so nobody queued.")
st.caption(" ".join(notes))

last = frames.row(-1, named=True)
st.markdown("**Whole run**")
cols = st.columns(4)
cols[0].metric("Injured", f"{last['total_injured']:,}")
cols[1].metric("Returned to duty", f"{last['total_rtd']:,}")
cols[2].metric("Died", f"{last['total_died']:,}")
cols[3].metric("Out of theatre", f"{last['total_evacuated']:,}")
