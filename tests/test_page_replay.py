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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("replay_page")
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
    assert len(at.selectbox(key="rp_run").options) == 1  # the encrypted run cannot be replayed
    m = metrics(at)
    assert m["Injured"] == f"{N:,}"
    spec = animation(at)
    days = 8 * 24 + 168  # the default scenario's window plus follow-up, in hours
    assert len(spec["frames"]) == days // 3 + 1  # 3-hour steps by default for a 15-day window
    buttons = [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]]
    assert buttons == ["▶ 1×", "▶ 4×", "▶ 16×", "❚❚ Pause"]
    assert len(spec["layout"]["sliders"][0]["steps"]) == len(spec["frames"])
    assert spec["data"][0]["x"] == ["POI", "in transit", "R1", "R2", "R3", "R4"]
    assert len(at.get("plotly_chart")) == 2  # animation and whole-run timeline


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


def test_jump_starts_the_animation_at_the_chosen_time(data_dir):
    at = open_replay()
    at.select_slider(key="rp_jump_3h").set_value(40).run()
    assert not at.exception
    spec = animation(at)
    assert spec["layout"]["sliders"][0]["active"] == 40
    assert spec["layout"]["title"]["text"].startswith("Day 6, 00:00 UTC")  # frame 40 x 3 h = 120 h after start


def test_no_replayable_run_says_so(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path)
    at = open_replay()
    assert any("No run to replay" in i.value for i in at.info)
