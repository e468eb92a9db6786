"""The dashboard renders: every page runs without an exception (streamlit.testing AppTest)."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).parents[1] / "app.py")


def test_scenario_page_renders_a_preview():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    assert labels["Patients in preview"] == "3,000"
    assert len(at.get("plotly_chart")) == 3


def test_changing_preset_redraws_the_preview():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.selectbox[0].set_value("peacekeeping").run()
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    assert labels["Battle injuries"] == "10%"  # the preset's mix, not the default's 35 %
