"""charts: the dashboard's plotly figures and Vega-Lite specs, built as plain dicts from core's aggregates."""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import plotly.graph_objects as go
import pytest

from charts import figures, live
from core import explore, generator
from core.run import generate_run
from core.scenario import load_scenario

from conftest import REPO

N = 1_500


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("charts") / "run"
    generate_run(load_scenario("default").with_overrides(patients=N, seed=21), folder)
    return explore.open_run(folder)


@pytest.fixture(scope="module")
def frames(run):
    start, end = run.window
    return explore.replay_frames(run.patients(), run.events(), start, end, "6h")


def test_replay_figure_animates_every_frame_with_play_pause_and_speeds(run, frames):
    fig = figures.replay_figure(frames, run.window[0], "6h", first=4)
    assert len(fig["frames"]) == frames.height
    labels = [b["label"] for b in fig["layout"]["updatemenus"][0]["buttons"]]
    assert labels == ["▶ 1×", "▶ 4×", "▶ 16×", "❚❚ Pause"]
    assert fig["layout"]["sliders"][0]["active"] == 4
    assert fig["data"][0]["y"] == [frames.row(4, named=True)[p] for p in explore.PLACES]
    assert figures.replay_figure(frames.head(0), run.window[0], "6h")["data"] == []


def test_preview_specs_draw_every_patient_of_the_sample():
    sample = generator.generate(load_scenario("peacekeeping").with_overrides(patients=N)).patients
    specs = figures.preview_specs(explore.preview_summary(sample))
    assert set(specs) == {"day", "hour", "triage", "outcome", "mechanism"}
    assert sum(sum(t["y"]) for t in specs["day"]["data"]) == N
    assert specs["mechanism"]["data"][0]["orientation"] == "h"


def test_every_run_figure_is_a_valid_plotly_figure(run, frames):
    """What resources.py hands to go.Figure: plotly validates every property name and value."""
    p, e = run.patients(), run.events()
    start, end = run.window
    ov = {"every": "6h", "by_front": explore.over_time(p, "front", "6h"),
          "by_warfare": explore.over_time(p, "warfare_type", "6h"), "category": explore.counts(p, "category"),
          "mechanism": explore.counts(p, "mechanism", "category"),
          "body_region": explore.counts(p, "body_region", "category"),
          "triage": explore.counts(p, "triage", "category"), "outcomes_by_facility": explore.outcomes_by_facility(p)}
    timings = explore.ten_one_two(p, e)
    specs = {**figures.overview_specs(ov), "sankey": figures.sankey_spec(explore.flow_links(p, e)),
             "timings": figures.timings_spec(timings["summary"], timings["histogram"]),
             "occupancy": figures.occupancy_spec(explore.occupancy(e, start, end, "6h"), "6h"),
             "timeline": figures.timeline_spec(frames, frames["time"][3]),
             "replay": figures.replay_figure(frames, start, "6h")}
    for name, spec in specs.items():
        assert go.Figure(spec).data, name
    assert specs["by_front"]["layout"]["title"]["text"] == "Casualties per 6 hours by front"
    sankey = specs["sankey"]["data"][0]
    assert sankey["node"]["label"] == list(explore.SANKEY_NODES)
    assert sum(v for v, s in zip(sankey["link"]["value"], sankey["link"]["source"]) if s == 0) == N  # from POI
    assert [s["x0"] for s in specs["timings"]["layout"]["shapes"]] == [10, 60, 120]  # the 10-1-2 lines


def test_live_specs_fold_the_series_into_one_vega_lite_chart():
    spec = live.line_spec("time", ["pool in use", "pool budget"], x_type="temporal", x_title="time (UTC)", height=200)
    assert spec["transform"][0] == {"fold": ["pool in use", "pool budget"], "as": ["series", "value"]}
    x = spec["encoding"]["x"]
    assert (x["field"], x["type"], x["title"], x["scale"]) == ("time", "temporal", "time (UTC)", {"type": "utc"})
    assert "%H:%M:%S" in x["axis"]["labelExpr"]  # a 24-hour UTC clock
    assert spec["height"] == 200 and spec["autosize"]["type"] == "fit-x"  # the plot area's own height
    assert spec["encoding"]["color"]["legend"]["labelLimit"] == 0  # legend labels never cut
    assert live.line_spec("t", ["a"], x_title="seconds")["encoding"]["x"]["title"] == "seconds"
    assert live.line_spec("t", ["a"])["encoding"]["color"]["legend"] is None  # one series: no legend
    assert live.line_spec("s", ["p"], y_title="patients/s")["encoding"]["y"]["title"] == "patients/s"
    bars = live.bar_spec("run", "patients/s")
    assert bars["encoding"]["x"]["sort"] is None and bars["mark"]["type"] == "bar"
    two = live.two_scale_spec("s", ("a", "left title"), ("b", "right title"))
    assert two["resolve"] == {"scale": {"y": "independent"}}
    assert [layer["encoding"]["y"]["axis"]["orient"] for layer in two["layer"]] == ["left", "right"]
    json.dumps([spec, bars, two])  # plain JSON, what st.vega_lite_chart sends


def test_charts_need_neither_streamlit_nor_plotly_and_core_never_imports_them():
    code = ("import sys, charts.figures, charts.live; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    for path in (REPO / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n.split(".")[0] == "charts" for n in names), path
