"""Process and page metrics for the dashboard's Monitor page (no Streamlit here).

- ``ProcessSampler``: a daemon thread sampling this process once a second with psutil (CPU %, RSS, peak RSS,
  threads) and, through a callable, the database pool (checked out, query latency); a bounded history. The
  Monitor page samples the server with one; each generation job samples its run with another.
- ``PageTimings``: script-run time of each page, bounded per page, with p50 / p95.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Callable

import psutil

HISTORY = 900  # samples kept (15 minutes at one a second)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class ProcessSampler:
    """Samples this process every ``interval`` seconds in a daemon thread; ``history()`` returns the samples.

    Each sample: ``t`` (unix seconds), ``cpu_pct`` (of one core, like ``top``), ``rss_mb``, ``peak_rss_mb``,
    ``threads`` and, when ``pool_status`` is given and answers, ``pool_checked_out``, ``pool_budget``,
    ``query_ms_p50`` and ``query_ms_p95``. A failing ``pool_status`` (database down) leaves those keys out, it
    never stops sampling. With ``peak_every`` the memory is also read that often between samples, so a short
    peak is not missed; ``on_sample`` is called with every sample (from the sampling thread).
    """

    def __init__(self, interval: float = 1.0, history: int = HISTORY,
                 pool_status: Callable[[], dict | None] | None = None, *, peak_every: float | None = None,
                 on_sample: Callable[[dict], None] | None = None, name: str = "mpg-process-sampler") -> None:
        self.interval = interval
        self.pool_status = pool_status
        self.peak_every = peak_every
        self.on_sample = on_sample
        self.name = name
        self.peak_rss_mb = 0.0
        self._samples: deque[dict] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only sets the reference point

    def start(self) -> "ProcessSampler":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self.sample()  # the history is never empty once started
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _rss_mb(self) -> float:
        rss = self._process.memory_info().rss / 2**20
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        return rss

    def sample(self) -> dict:
        """Take one sample now, add it to the history and return it."""
        with self._process.oneshot():
            s = {"t": time.time(), "cpu_pct": self._process.cpu_percent(None), "rss_mb": round(self._rss_mb(), 1),
                 "peak_rss_mb": round(self.peak_rss_mb, 1), "threads": self._process.num_threads()}
        if self.pool_status is not None:
            try:
                pool = self.pool_status()
            except Exception:  # database down or not configured: the process metrics still count
                pool = None
            if pool:
                s.update(pool_checked_out=pool.get("checked_out"), pool_budget=pool.get("budget"),
                         query_ms_p50=pool.get("query_ms_p50"), query_ms_p95=pool.get("query_ms_p95"))
        with self._lock:
            self._samples.append(s)
        if self.on_sample is not None:
            self.on_sample(s)
        return s

    def _loop(self) -> None:
        tick = min(self.peak_every or self.interval, self.interval)
        next_sample = time.monotonic() + self.interval
        while not self._stop.wait(tick):
            if time.monotonic() >= next_sample - tick / 10:  # a wait may end a hair early
                self.sample()
                next_sample += self.interval
            else:
                self._rss_mb()

    def history(self, seconds: float | None = None) -> list[dict]:
        """Samples, oldest first; only the last ``seconds`` when given."""
        with self._lock:
            samples = list(self._samples)
        if seconds is not None:
            cutoff = time.time() - seconds
            samples = [s for s in samples if s["t"] >= cutoff]
        return samples

    def latest(self) -> dict | None:
        with self._lock:
            return self._samples[-1] if self._samples else None


class PageTimings:
    """Script-run time per page (seconds), the last ``keep`` runs of each page."""

    def __init__(self, keep: int = 500) -> None:
        self._keep = keep
        self._runs: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def record(self, page: str, seconds: float) -> None:
        with self._lock:
            self._runs.setdefault(page, deque(maxlen=self._keep)).append(seconds)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()

    def stats(self) -> dict[str, dict]:
        """page -> {"runs", "p50_ms", "p95_ms", "max_ms", "last_ms"} over the kept runs."""
        with self._lock:
            runs = {page: list(times) for page, times in self._runs.items()}
        out = {}
        for page, times in runs.items():
            ms = [t * 1000 for t in times]
            out[page] = {"runs": len(ms), "p50_ms": round(percentile(ms, 50), 2),
                         "p95_ms": round(percentile(ms, 95), 2), "max_ms": round(max(ms), 2),
                         "last_ms": round(ms[-1], 2)}
        return out


def hit_rate(cache_snapshot: dict[str, dict[str, int]]) -> float | None:
    """Overall hit rate (0..1) of a ``CacheStats.snapshot()``; None before the first call."""
    calls = sum(v["calls"] for v in cache_snapshot.values())
    return sum(v["hits"] for v in cache_snapshot.values()) / calls if calls else None
