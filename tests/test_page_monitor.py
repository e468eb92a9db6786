"""Monitor page (AppTest): process metrics, cache hit rates, page script-run times, run throughput, DB banner."""
from __future__ import annotations

import json
import time

import resources
from conftest import reset_dashboard
from core.labels import plain
from core.scenario import load_scenario
from pages import metrics, open_app, open_page, visit

DOWN_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/test"


def frame(at, first_column: str):
    for df in at.dataframe:
        if df.value.columns[0] == first_column:
            return df.value
    raise AssertionError(f"no table starting with {first_column!r}")


def test_process_metrics_and_page_timings_of_the_pages_visited(data_dir):
    at = open_app()
    for _ in range(3):
        visit(at, "views/generate.py")
        visit(at, "views/runs.py")
    visit(at, "views/monitor.py")
    shown = metrics(at)
    assert shown["Server memory"].endswith("MB") and int(shown["Server memory"].split()[0].replace(",", "")) > 50
    timings = frame(at, "page").set_index("page")
    assert timings.loc["Generate", "builds"] == "3" and timings.loc["Runs", "builds"] == "3"
    ms = [float(timings.loc["Generate", c].replace(",", "")) for c in ("median (ms)", "95 % within (ms)", "slowest (ms)")]
    assert 0 < ms[0] <= ms[1] <= ms[2]
    assert timings.loc["Generate", "within 50 ms"] in ("yes", "no")
    assert "Scenario" in timings.index  # app.py's first run shows the default page
    assert "Details (for developers)" in [e.label for e in at.expander]


def test_cached_lookups_reach_a_90_percent_hit_rate_in_steady_state(data_dir):
    at = open_app()
    for _ in range(5):
        for page in ("views/generate.py", "views/runs.py", "views/monitor.py"):
            visit(at, page)
    caches = frame(at, "lookup").set_index("function")
    assert {"preset_choices", "default_scenario", "run_table_rows"} <= set(caches.index)
    assert caches.loc["run_table_rows", "lookup"] == "Runs table"  # plain words first, the name for developers
    count = lambda column: caches[column].str.replace(",", "").astype(int)  # noqa: E731
    assert (count("calls") == count("from the cache") + count("computed")).all()
    rate = metrics(at)["Cache hit rate"]
    assert int(rate.rstrip(" %")) >= 90, rate


def test_run_throughput_chart_after_runs(data_dir):
    at = open_page("views/monitor.py")
    assert "No completed run yet." in [c.value for c in at.caption]
    registry = resources.job_registry()
    for seed in (1, 2):
        job = registry.submit(load_scenario("default").with_overrides(patients=2_000, seed=seed))
        registry.wait(job.run_id, 120)
    at.run()
    assert not at.exception
    assert "No completed run yet." not in [c.value for c in at.caption]
    charts = at.get("vega_lite_chart")
    assert charts, "no throughput chart"
    spec = json.loads(charts[-1].proto.spec)
    assert spec["encoding"]["x"]["title"] == "patients per second"
    import pyarrow as pa
    labels = pa.ipc.open_stream(charts[-1].proto.data.data).read_all().column("run").to_pylist()
    assert len(labels) == 2 and all("2,000 patients · Parquet" in x and " UTC " in x for x in labels)  # told apart


def test_database_down_shows_a_banner(data_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", DOWN_URL)
    reset_dashboard()
    at = open_page("views/monitor.py")
    banner = " ".join(w.value for w in at.warning)
    assert "Database unavailable" in banner
    assert "No database connection." in [c.value for c in at.caption]
    assert metrics(at)["Database connections"] == "–"


def test_database_pool_and_query_latency_when_the_database_answers(data_dir):
    at = open_page("views/monitor.py")
    assert not at.warning
    resources.metrics_sampler().sample()  # the background sampler takes one a second; do not wait for it
    at.run()
    shown = metrics(at)
    assert shown["Database connections"].endswith("of 10")  # default budget 5 + 5
    assert shown["Query time"].endswith("ms")
    pool = frame(at, "measure").set_index("measure")["value"]
    assert {"Connections in use now", "Most connections allowed at once", "Queries answered so far"} <= set(pool.index)
    assert "None" not in set(pool) and not any("_" in m for m in pool.index)
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert {"Server CPU", "Server memory (MB)", "Database connections", "Database query time"} <= {
        s["title"]["text"] for s in specs if "title" in s}
    for spec in specs[:4]:  # the time axis: a 24-hour UTC clock
        x = spec["encoding"]["x"]
        assert x["scale"]["type"] == "utc" and "%H:%M:%S" in x["axis"]["labelExpr"] and x["title"] == "time (UTC)"


def test_the_current_run_shows_its_progress(data_dir):
    registry = resources.job_registry()
    job = registry.submit(load_scenario("default").with_overrides(patients=5_000_000, seed=1))
    deadline = time.monotonic() + 60
    while job.patients_done == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    at = open_page("views/monitor.py")
    assert plain("5,000,000 patients · Parquet · running") in " ".join(m.value for m in at.markdown)
    assert "of 5,000,000 patients" in at.get("progress")[0].proto.text
    registry.cancel()
    registry.wait(job.run_id, 30)
    at.run()
    assert "No run is going. Last run:" in " ".join(c.value for c in at.caption)
