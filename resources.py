"""Every Streamlit cache lives here (DESIGN.md): pages call these, core/ never imports Streamlit."""
from __future__ import annotations

import polars as pl
import streamlit as st

from core import generator, reference
from core.scenario import Scenario, load_scenario


@st.cache_data(show_spinner=False)
def preset_choices() -> dict[str, str]:
    """Preset id -> display name, 'default' first."""
    choices = {"default": reference.default_scenario()["name"]}
    choices.update({k: v["name"] for k, v in reference.presets().items()})
    return choices


@st.cache_data(show_spinner=False, max_entries=64)
def preview(scenario_json: str, patients: int) -> pl.DataFrame:
    """Patients table of a small sample of the scenario (keyed by its canonical JSON)."""
    import json
    scenario = Scenario.from_dict(json.loads(scenario_json)).with_overrides(patients=patients)
    return generator.generate(scenario).patients


def scenario_for(preset_id: str) -> Scenario:
    return load_scenario(preset_id)
