"""Every Streamlit cache lives here (DESIGN.md): pages call these, core/ never imports Streamlit."""
from __future__ import annotations

import functools
import threading

import polars as pl
import streamlit as st

from core import generator, reference
from core.scenario import Scenario, load_scenario


class CacheStats:
    """Hits and misses per cached function: Monitor shows them, the brief asks for >= 90 % hits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def call(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def miss(self, name: str) -> None:
        with self._lock:
            self.misses[name] = self.misses.get(name, 0) + 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """name -> {"calls", "hits", "misses"} (a miss is a call that ran the function body)."""
        with self._lock:
            return {n: {"calls": c, "misses": min(self.misses.get(n, 0), c),
                        "hits": c - min(self.misses.get(n, 0), c)} for n, c in self.calls.items()}


@st.cache_resource(show_spinner=False)
def cache_stats() -> CacheStats:
    return CacheStats()


def counted_cache_data(**cache_kwargs):
    """``st.cache_data`` that also counts hits and misses in ``cache_stats()`` under the function's name."""
    def wrap(fn):
        name = fn.__name__

        @functools.wraps(fn)
        def body(*args, **kwargs):
            cache_stats().miss(name)  # runs only when the cache has no entry
            return fn(*args, **kwargs)

        cached = st.cache_data(show_spinner=False, **cache_kwargs)(body)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            cache_stats().call(name)
            return cached(*args, **kwargs)

        call.clear = cached.clear
        return call
    return wrap


@counted_cache_data()
def preset_choices() -> dict[str, str]:
    """Preset id -> display name, 'default' first."""
    choices = {"default": reference.default_scenario()["name"]}
    choices.update({k: v["name"] for k, v in reference.presets().items()})
    return choices


@counted_cache_data(max_entries=64)
def preview(scenario_json: str, patients: int) -> pl.DataFrame:
    """Patients table of a small sample of the scenario (keyed by its canonical JSON)."""
    import json
    scenario = Scenario.from_dict(json.loads(scenario_json)).with_overrides(patients=patients)
    return generator.generate(scenario).patients


def scenario_for(preset_id: str) -> Scenario:
    return load_scenario(preset_id)
