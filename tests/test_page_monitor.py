"""Monitor page (AppTest): process metrics, cache hit rates, page script-run times, run throughput, DB banner."""
from __future__ import annotations

import resources
from conftest import reset_dashboard
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
    assert shown["Memory (RSS)"].endswith("MB") and int(shown["Memory (RSS)"].split()[0].replace(",", "")) > 50
    assert int(shown["Threads"]) >= 2
    timings = frame(at, "page").set_index("page")
    assert timings.loc["Generate", "runs"] == 3 and timings.loc["Runs", "runs"] == 3
    assert 0 < timings.loc["Generate", "p50 ms"] <= timings.loc["Generate", "p95 ms"] <= timings.loc["Generate", "max ms"]
    assert "Scenario" in timings.index  # app.py's first run shows the default page


def test_cached_lookups_reach_a_90_percent_hit_rate_in_steady_state(data_dir):
    at = open_app()
    for _ in range(5):
        for page in ("views/generate.py", "views/runs.py", "views/monitor.py"):
            visit(at, page)
    caches = frame(at, "function").set_index("function")
    assert {"preset_choices", "default_scenario", "run_history"} <= set(caches.index)
    assert (caches["calls"] == caches["hits"] + caches["misses"]).all()
    rate = metrics(at)["Cache hit rate"]
    assert int(rate.rstrip("%")) >= 90, rate


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
    spec = str(charts[-1].proto)
    assert "patients/s" in spec


def test_database_down_shows_a_banner(data_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", DOWN_URL)
    reset_dashboard()
    at = open_page("views/monitor.py")
    banner = " ".join(w.value for w in at.warning)
    assert "Database unavailable" in banner
    assert "No database connection." in [c.value for c in at.caption]
    assert metrics(at)["Pool in use"] == "–"


def test_database_pool_and_query_latency_when_the_database_answers(data_dir):
    at = open_page("views/monitor.py")
    assert not at.warning
    resources.metrics_sampler().sample()  # the background sampler takes one a second; do not wait for it
    at.run()
    shown = metrics(at)
    assert shown["Pool in use"].endswith("/ 10")  # default budget 5 + 5
    assert shown["Query p95"].endswith("ms")
    pool = frame(at, "measure").set_index("measure")["value"]
    assert {"checked_out", "budget", "query_ms_p95", "connects"} <= set(pool.index)
    specs = " ".join(str(c.proto.spec) for c in at.get("vega_lite_chart"))
    assert "pool in use" in specs and "query p95 ms" in specs
