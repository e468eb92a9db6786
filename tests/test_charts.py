"""charts: the dashboard's plotly figures and Vega-Lite specs, built as plain dicts from core's aggregates, in
plain words, with one colour per role of care."""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from charts import capacity, compare, figures, labels, live
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
def planned(tmp_path_factory):
    """A run with a medical plan: the Okinawa brigade, a few days."""
    folder = tmp_path_factory.mktemp("charts_plan") / "run"
    generate_run(load_scenario("brigade_okinawa").with_overrides(days=6, patients=300, seed=3), folder)
    return explore.open_run(folder)


@pytest.fixture(scope="module")
def frames(run):
    start, end = run.window
    return explore.replay_frames(run.patients(), run.events(), start, end, "6h")


def as_list(values) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def test_replay_figure_animates_bars_title_and_the_whole_run_marker_together(run, frames):
    fig = figures.replay_figure(frames, run.window[0], "6h", first=4)
    assert len(fig["frames"]) == frames.height
    labels_ = [b["label"] for b in fig["layout"]["updatemenus"][0]["buttons"]]
    assert labels_ == ["▶ 1×", "▶ 4×", "▶ 16×", "❚❚ Pause"]
    slider = fig["layout"]["sliders"][0]
    assert slider["active"] == 4 and slider["steps"][4]["label"] == "day 2 00:00"  # 4 x 6 h after the start
    # Role 4 holds nobody (evacuated there means out of theatre): not drawn as a place
    assert fig["data"][0]["x"] == ["Point of<br>injury", "In<br>transit", "Role 1", "Role 2", "Role 3"]
    assert fig["data"][0]["y"] == [frames.row(4, named=True)[p] for p in figures.IN_THEATRE]
    # each frame moves the bars and the dotted marker on the whole-run chart: the marker is at that frame's time
    marker = fig["data"][-1]
    assert marker["line"]["dash"] == "dot" and marker["xaxis"] == "x4"
    frame = fig["frames"][10]
    assert frame["traces"][-1] == len(fig["data"]) - 1
    assert frame["data"][-1]["x"] == [f"{frames['time'][10]:%Y-%m-%d %H:%M}"] * 2
    assert frame["layout"]["title"]["text"].startswith("Day 3, 12:00 UTC")
    assert figures.replay_figure(frames.head(0), run.window[0], "6h")["data"] == []


def test_replay_figure_of_a_run_with_a_plan_shows_the_queues_forming(planned):
    start, end = planned.window
    frames_ = explore.replay_frames(planned.patients(), planned.events(), start, end, "3h")
    queues = explore.queues(explore.load(planned), "3h", start, end)
    assert queues.height == frames_.height and queues.width > 1
    fig = figures.replay_figure(frames_, start, "3h", queues=queues)
    waiting_now = fig["data"][2]
    assert waiting_now["name"] == "waiting" and waiting_now["xaxis"] == "x3"
    kinds = [c for c in queues.columns if c != "time"]
    peak = int(np.argmax(queues.select(kinds).sum_horizontal().to_numpy()))
    assert fig["frames"][peak]["data"][2]["y"] == [queues.row(peak, named=True)[k] for k in kinds]
    assert sum(fig["frames"][peak]["data"][2]["y"]) > 0  # somebody waits at the busiest step
    assert go.Figure(fig).data


def test_one_colour_per_role_the_same_in_sankey_occupancy_and_replay(run, frames):
    p, e = run.patients(), run.events()
    start, end = run.window
    roles = ["R1", "R2", "R3"]
    assert len({figures.ROLE_COLORS[r] for r in (*roles, "R4", "POI")}) == 5  # five distinct colours
    sankey = figures.sankey_spec(explore.flow_links(p, e))["data"][0]["node"]
    occupancy = figures.occupancy_spec(explore.occupancy(e, start, end, "6h"), "6h")["data"]
    replay = figures.replay_figure(frames, start, "6h")
    for role in roles:
        colour = figures.ROLE_COLORS[role]
        assert sankey["color"][sankey["label"].index(labels.PLACE[role])] == colour
        assert next(t for t in occupancy if t["name"] == labels.PLACE[role])["line"]["color"] == colour
        assert replay["data"][0]["marker"]["color"][list(figures.IN_THEATRE).index(role)] == colour
    assert "Role 4" not in [t["name"] for t in occupancy]  # always 0: left out, and the page says why


def test_preview_specs_draw_every_patient_of_the_sample_in_plain_words():
    sample = generator.generate(load_scenario("peacekeeping").with_overrides(patients=N)).patients
    specs = figures.preview_specs(explore.preview_summary(sample))
    assert set(specs) == {"day", "hour", "triage", "outcome", "mechanism"}
    assert sum(sum(as_list(t["y"])) for t in specs["day"]["data"]) == N
    assert specs["mechanism"]["data"][0]["orientation"] == "h"
    outcome = specs["outcome"]
    assert outcome["data"][0]["orientation"] == "h"  # whole labels, not "R", "R", "K"
    shown = {y for t in outcome["data"] for y in t["y"]}
    assert shown <= set(labels.OUTCOME.values()) and "Returned to duty" in shown
    legends = {t["name"] for t in specs["day"]["data"]}
    assert legends <= set(labels.CATEGORY.values())  # no raw codes (BI, NBI) in legends
    triage_ticks = specs["triage"]["layout"]["xaxis"]["categoryarray"]
    assert triage_ticks == ["T1<br>immediate", "T2<br>delayed", "T3<br>minimal", "T4<br>expectant"]


def test_every_run_figure_is_a_valid_plotly_figure_with_thousands_separators(run, frames):
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
             "replay": figures.replay_figure(frames, start, "6h")}
    for name, spec in specs.items():
        fig = go.Figure(spec)
        assert fig.data, name
        assert fig.layout.separators == ".,", name
    assert specs["by_front"]["layout"]["title"]["text"] == "Casualties per 6 hours by front"
    assert specs["by_front"]["layout"]["yaxis"]["tickformat"] == ",~f"  # 12,000 rather than 12k
    sankey = specs["sankey"]["data"][0]
    assert sankey["node"]["label"][:5] == ["Point of injury", "Role 1", "Role 2", "Role 3", "Role 4"]
    assert sankey["valueformat"] == ",d"
    assert sum(v for v, s in zip(sankey["link"]["value"], sankey["link"]["source"]) if s == 0) == N  # from POI
    assert [s["x0"] for s in specs["timings"]["layout"]["shapes"]] == [10, 60, 120]  # the 10-1-2 lines
    # times go out as text: encoding thousands of datetime objects on every script run is slow
    assert isinstance(specs["occupancy"]["data"][0]["x"][0], str)


def test_capacity_charts_of_a_run_with_a_plan(planned):
    report = explore.capacity_report(planned)
    table = explore.load(planned)
    peaks = capacity.peaks_spec(report)
    bars = {y: (x, text) for t in peaks["data"] for y, x, text in zip(t["y"], t["x"], t["text"])}
    ot = next(r for r in report["resources"] if r["resource"] == "operating tables" and "Enhanced" in r["facility"])
    x, text = bars[f"{ot['facility']} · operating tables"]
    assert x == pytest.approx(ot["peak"] / ot["capacity"]) and text == f"{ot['peak']:,} of {ot['capacity']:,}"
    full = explore.fullness(table, "1d")
    heat = capacity.fullness_spec(full)["data"][0]
    assert len(heat["y"]) == full.select("facility", "resource").unique().height
    assert max(max(row) for row in heat["z"]) <= 1  # coloured by the share of capacity in use
    facility = capacity.resource_spec(table, ot["facility"])
    names = {t["name"] for t in facility["data"]}
    assert {"in use (most in each hour)", "capacity"} <= names
    waits = capacity.waits_spec(explore.waits(planned.patients()))
    assert sum(sum(t["x"]) for t in waits["data"]) == planned.patients().collect().height
    for spec in (peaks, capacity.fullness_spec(full), facility, waits,
                 capacity.queues_spec(explore.queues(table)),
                 capacity.diversions_spec(explore.diversions(planned.patients(), planned.events()))):
        pio.to_json(go.Figure(spec))


def test_compare_specs_overlay_two_runs_by_day_of_the_scenario(run, planned):
    sides = []
    for r, label in ((run, "A"), (planned, "B")):
        start, end = r.window
        p, e = r.patients(), r.events()
        sides.append({"label": label, "overview": {"by_front": explore.over_time(p, "front", "6h"), "start": start,
                                                   "figures": explore.key_figures(p)},
                      "flow": {"timings": explore.ten_one_two(p, e),
                               "occupancy": explore.occupancy(e, start, end, "6h")}})
    specs = compare.compare_specs(*sides)
    per_day = specs["per_day"]["data"]
    assert [t["name"] for t in per_day] == ["A", "B"]
    assert sum(per_day[0]["y"]) == N and per_day[0]["x"][0] == 1  # day 1 is each run's own first day
    outcomes = specs["outcomes"]["data"][1]
    assert sum(outcomes["customdata"]) == planned.patients().collect().height
    for spec in specs.values():
        go.Figure(spec)


def test_plain_words_for_codes_numbers_and_user_text():
    assert labels.plain("ROLE4") == "Evacuated out of theatre" and labels.plain("IN_CARE") == "Still in care"
    assert labels.plain("lower_extremity") == "lower extremity" and labels.plain(None) == "–"
    assert labels.header("within_share") == "Within share"
    assert labels.number(1234567) == "1,234,567" and labels.share(0.695) == "70 %"  # rounded, not 0.695
    assert labels.minutes(5.8333) == "6 min" and labels.minutes(150) == "2.5 h"
    assert labels.detail("409063005") == "Counselling (SNOMED CT 409063005)"
    assert labels.difference(-3, "count") == "−3" and labels.difference(0.021, "share") == "+2.1 points"
    assert labels.difference(0.2, "min") == "no change"
    # a scenario name is shown as typed: no bold, no image fetched from a host, no colour directive
    name = "**Bold** ![x](http://evil.example/x.png) :red[alarm] <b>"
    escaped = labels.text(name)
    assert "**" not in escaped.replace("\\*", "") and "![" not in escaped.replace("\\!\\[", "")
    assert ":red[" not in escaped
    assert labels.plotly_text("<a href='x'>y</a>") == "&lt;a href='x'&gt;y&lt;/a&gt;"


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
    code = ("import sys, charts.figures, charts.live, charts.capacity, charts.compare, charts.labels; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    for path in (REPO / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n.split(".")[0] == "charts" for n in names), path
