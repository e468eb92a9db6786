"""Process sampler, page timings and cache hit rate for the Monitor page."""
from __future__ import annotations

import threading
import time

import psutil
import pytest

from core.metrics import PageTimings, ProcessSampler, hit_rate, percentile


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(list(reversed(values)), 0) == 1 and percentile(values, 100) == 100


def test_page_timings_give_p50_p95_per_page_over_a_bounded_window():
    timings = PageTimings(keep=100)
    for i in range(1, 201):  # 1..200 ms; only the last 100 (101..200) are kept
        timings.record("Generate", i / 1000)
    timings.record("Runs", 0.004)
    stats = timings.stats()
    assert stats["Generate"]["runs"] == 100
    assert stats["Generate"]["p50_ms"] == pytest.approx(150.5)
    assert stats["Generate"]["p95_ms"] == pytest.approx(195.05)
    assert stats["Generate"]["max_ms"] == 200 and stats["Generate"]["last_ms"] == 200
    assert stats["Runs"] == {"runs": 1, "p50_ms": 4.0, "p95_ms": 4.0, "max_ms": 4.0, "last_ms": 4.0}
    timings.clear()
    assert timings.stats() == {}


def test_sampler_records_this_process_in_the_background_with_a_bounded_history():
    pool = {"checked_out": 2, "budget": 10, "query_ms_p50": 0.4, "query_ms_p95": 1.5}
    sampler = ProcessSampler(interval=0.02, history=10, pool_status=lambda: pool).start()
    try:
        deadline = time.monotonic() + 10
        while len(sampler.history()) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sampler.running
        history = sampler.history()
        assert len(history) == 10  # bounded
        last = sampler.latest()
        rss_now = psutil.Process().memory_info().rss / 2**20
        assert abs(last["rss_mb"] - rss_now) < 0.25 * rss_now
        assert last["threads"] >= 2  # this thread and the sampler's
        assert last["pool_checked_out"] == 2 and last["pool_budget"] == 10 and last["query_ms_p95"] == 1.5
        assert [s["t"] for s in history] == sorted(s["t"] for s in history)
    finally:
        sampler.stop()
    assert not sampler.running


def test_history_can_be_limited_to_the_last_seconds():
    sampler = ProcessSampler(interval=60)
    first = sampler.sample()
    time.sleep(0.4)
    second = sampler.sample()
    assert sampler.history() == [first, second]
    assert sampler.history(seconds=0.2) == [second]


def test_sampler_sees_cpu_work_and_survives_a_failing_database():
    def down():
        raise ConnectionError("database unreachable")

    sampler = ProcessSampler(interval=0.05, pool_status=down)
    stop = threading.Event()

    def burn():
        while not stop.is_set():
            sum(i * i for i in range(10_000))

    worker = threading.Thread(target=burn)
    worker.start()
    try:
        sampler.sample()
        time.sleep(0.5)
        busy = sampler.sample()
    finally:
        stop.set()
        worker.join()
    assert busy["cpu_pct"] > 30  # one thread spinning is most of a core
    assert "pool_checked_out" not in busy  # the failing pool callable is left out, the sample still counts


def test_hit_rate_of_a_cache_snapshot():
    assert hit_rate({}) is None
    snap = {"preset_choices": {"calls": 10, "hits": 9, "misses": 1},
            "run_history": {"calls": 10, "hits": 10, "misses": 0}}
    assert hit_rate(snap) == pytest.approx(0.95)
