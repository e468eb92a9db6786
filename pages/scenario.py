"""Scenario: pick a preset and see a small sample of what it generates."""
import plotly.express as px
import polars as pl
import streamlit as st

import resources
from core.scenario import ScenarioError

st.title("Scenario")
choices = resources.preset_choices()
preset_id = st.selectbox("Preset", list(choices), format_func=lambda k: f"{choices[k]}  ({k})")
left, right = st.columns(2)
seed = left.number_input("Seed", min_value=0, max_value=2**53 - 1, value=7, step=1,
                         help="Same scenario and seed give the same patients. The CLI accepts seeds up to 2^63-1.")
sample = right.slider("Preview patients", min_value=500, max_value=10_000, value=3_000, step=500)

try:
    scenario = resources.scenario_for(preset_id).with_overrides(seed=int(seed))
except ScenarioError as exc:
    st.error(str(exc))
    st.stop()

st.caption(f"{scenario.patients:,} patients over {scenario.days} days · {len(scenario.fronts)} front(s) · "
           f"warfare: {', '.join(scenario.warfare_types)} · intensity {scenario.intensity} · "
           f"sha256 {scenario.sha256()[:12]}…")
patients = resources.preview(scenario.canonical_json(), sample)
deaths = patients.filter(pl.col("outcome").is_in(["KIA", "DOW"])).height
cols = st.columns(4)
cols[0].metric("Patients in preview", f"{patients.height:,}")
cols[1].metric("Battle injuries", f"{(patients['category'] == 'BI').mean():.0%}")
cols[2].metric("Returned to duty", f"{(patients['outcome'] == 'RTD').mean():.0%}")
cols[3].metric("Died (KIA + DOW)", f"{deaths / patients.height:.1%}")

per_day = (patients.with_columns(day=pl.col("injury_time").dt.date())
           .group_by("day", "category").len().sort("day"))
st.plotly_chart(px.bar(per_day, x="day", y="len", color="category", title="Casualties per day",
                       labels={"len": "patients"}), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(px.histogram(patients, x="triage", color="category", title="Triage",
                             category_orders={"triage": ["T1", "T2", "T3", "T4"]}), width="stretch")
c2.plotly_chart(px.histogram(patients, x="outcome", color="category", title="Outcomes"), width="stretch")
