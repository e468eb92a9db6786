"""Replay page (AppTest): the animation of a real run, its controls, filters, step and jump."""
from __future__ import annotations

import json

import polars as pl
import pytest

from core.run import generate_run
from core.scenario import load_scenario
from pages import metrics, open_page, use_data_dir

N = 2_000
RUN = "20260101T000000Z-bbbbbbbb"


PLANNED = "20251231T000000Z-dddddddd"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("replay_page")
    generate_run(load_scenario("brigade_okinawa").with_overrides(days=5, patients=300, seed=2), data / "runs" / PLANNED)
    generate_run(load_scenario("default").with_overrides(patients=N, seed=9), data / "runs" / RUN)
    generate_run(load_scenario("default").with_overrides(patients=50), data / "runs" / "locked", password="pw")
    return data


@pytest.fixture
def data_dir(run_dir, monkeypatch):
    return use_data_dir(monkeypatch, run_dir)


def open_replay():
    return open_page("views/replay.py")


def animation(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_replay_animates_the_run_with_play_pause_speeds_and_a_time_slider(data_dir):
    at = open_replay()
    assert len(at.selectbox(key="rp_run").options) == 2  # the encrypted run cannot be replayed
    m = metrics(at)
    assert m["Injured"] == f"{N:,}"
    spec = animation(at)
    days = 8 * 24 + 168  # the default scenario's window plus follow-up, in hours
    assert len(spec["frames"]) == days // 3 + 1  # 3-hour steps by default for a 15-day window
    buttons = [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]]
    assert buttons == ["▶ 1×", "▶ 4×", "▶ 16×", "❚❚ Pause"]
    assert len(spec["layout"]["sliders"][0]["steps"]) == len(spec["frames"])
    assert spec["data"][0]["x"] == ["Point of<br>injury", "In<br>transit", "Role 1", "Role 2", "Role 3"]
    assert len(at.get("plotly_chart")) == 1  # one figure: the bars, the whole run and its marker move together
    assert any("Role 4 is not drawn" in c.value and "unlimited care" in c.value for c in at.caption)


def test_filters_and_step_change_what_is_replayed(data_dir):
    at = open_replay()
    p = pl.read_parquet(data_dir / "runs" / RUN / "patients.parquet")
    at.multiselect(key="rp_front").set_value(["Finland"]).run()
    at.multiselect(key="rp_triage").set_value(["T1"]).run()
    assert not at.exception
    m = metrics(at)
    expected = p.filter((pl.col("front") == "Finland") & (pl.col("triage") == "T1")).height
    assert m["Injured"] == f"{expected:,}"
    at.selectbox(key="rp_step").set_value("12h").run()
    assert len(animation(at)["frames"]) == (8 * 24 + 168) // 12 + 1


def test_the_slider_title_and_whole_run_marker_stay_in_step(data_dir):
    at = open_replay()
    assert not at.select_slider  # no second slider on the server that playback in the browser cannot move
    spec = animation(at)
    marker = len(spec["data"]) - 1
    assert spec["data"][marker]["line"]["dash"] == "dot"
    for i in (0, 40, len(spec["frames"]) - 1):
        frame = spec["frames"][i]
        step = spec["layout"]["sliders"][0]["steps"][i]
        assert step["args"][0] == [frame["name"]]  # the slider step shows this frame ...
        assert frame["traces"][-1] == marker and frame["data"][-1]["x"] == [frame["name"]] * 2  # ... and the marker
        day = int(step["label"].split()[1])
        assert frame["layout"]["title"]["text"].startswith(f"Day {day},")  # ... and the title, the same day


def test_a_run_with_a_plan_shows_queues_forming(data_dir):
    at = open_replay()
    at.selectbox(key="rp_run").set_value(str(data_dir / "runs" / PLANNED)).run()
    assert not at.exception
    spec = animation(at)
    waiting = spec["data"][2]
    assert waiting["name"] == "waiting" and "operating<br>table" in waiting["x"]
    peaks = [sum(f["data"][2]["y"]) for f in spec["frames"]]
    assert max(peaks) > 0 and peaks[0] == 0  # nobody waits at the start; queues form later
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert any(t.startswith("Patients waiting over the whole run") for t in titles)
    assert any("This run has a medical plan" in c.value for c in at.caption)


def test_no_replayable_run_says_so(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path)
    at = open_replay()
    assert any("No run to replay" in i.value for i in at.info)
