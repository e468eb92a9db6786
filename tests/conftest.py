"""Shared fixtures for the engine and CLI tests: repository paths, small generated runs, subprocess helpers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from core import generator
from core.contract import check_run
from core.run import generate_run
from core.scenario import Scenario, load_scenario

REPO = Path(__file__).resolve().parents[1]
TABLE_NAMES = ("patients", "events", "conditions", "vitals")


def assert_contract_holds(run_dir: Path) -> str:
    """Check a run folder against the data contract (core.contract); returns the report's text."""
    report = check_run(run_dir)
    text = "\n".join(report.lines())
    assert report.holds, f"contract check failed on {run_dir}:\n{text}"
    return text


def fail_stream_at(monkeypatch, block: int, message: str = "disk on fire") -> None:
    """Make every generation fail with RuntimeError(``message``) when it reaches batch ``block`` (0-based): a run
    that breaks part-way after writing its first batches."""
    real = generator.stream

    def failing(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == block:
                raise RuntimeError(message)
            yield item
    monkeypatch.setattr(generator, "stream", failing)


def cli(*args: str, env: dict | None = None, stdin=subprocess.DEVNULL, timeout: float = 120,
        cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` from the repository root; stdin is not a terminal unless given."""
    full_env = {k: v for k, v in os.environ.items() if k != "ENCRYPTION_PASSWORD"}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, env=full_env, stdin=stdin,
                          capture_output=True, text=True, timeout=timeout)


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def tables(batches) -> dict[str, pl.DataFrame]:
    """Concatenate streamed batches into the four tables."""
    batches = list(batches)
    return {t: pl.concat([getattr(b, t) for b in batches]) for t in TABLE_NAMES}


@pytest.fixture(scope="session")
def default_scenario() -> Scenario:
    return load_scenario("default")


@pytest.fixture(scope="session")
def scenario_20k(default_scenario) -> Scenario:
    return default_scenario.with_overrides(patients=20_000, seed=11)


@pytest.fixture(scope="session")
def batch_20k(scenario_20k):
    """A 20,000-patient default run, in memory (generated once per session)."""
    return generator.generate(scenario_20k)


@pytest.fixture(scope="session")
def scenario_3k(default_scenario) -> Scenario:
    return default_scenario.with_overrides(patients=3_000, seed=5)


@pytest.fixture(scope="session")
def parquet_run(tmp_path_factory, scenario_3k):
    """A 3,000-patient parquet run folder written by generate_run, and its returned manifest."""
    out = tmp_path_factory.mktemp("run_parquet") / "run"
    manifest = generate_run(scenario_3k, out, fmt="parquet")
    return out, manifest


# --- dashboard pages (AppTest) ----------------------------------------------------------------------------------

def reset_dashboard() -> None:
    """Stop any job of an earlier test and drop the process-wide Streamlit caches (engine, registry, sampler)."""
    import resources
    registry = resources.job_registry()
    registry.cancel()
    for job in registry.jobs():
        job.done_event.wait(60)
    for cached in (resources.job_registry, resources.database, resources.metrics_sampler, resources.page_timings,
                   resources.warm_caches, resources.cache_stats, resources.run_history, resources.run_summary):
        cached.clear()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data folder and the embedded SQLite database for one page test, with fresh caches."""
    monkeypatch.setenv("MPG_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_dashboard()
    yield tmp_path
    reset_dashboard()
