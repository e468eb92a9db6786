"""Dashboard entry point: page setup and navigation only (DESIGN.md)."""
import streamlit as st

st.set_page_config(page_title="Medical Patients Generator", page_icon="🩺", layout="wide")
pg = st.navigation([
    st.Page("pages/scenario.py", title="Scenario", icon="🗺️", default=True),
])
pg.run()
