"""Replications for the dashboard: ``python -m core replicate`` in a process of its own, so the server neither
waits on it nor hands its worker processes the dashboard's script as their main module (spawn would run it).

    job = ReplicationJob(scenario, runs=20, folder=data_dir / "replications")
    job.done()          # polled by the page
    job.result()        # core.replicate.replicate's dict, once done; raises RuntimeError with the CLI's message
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from core.scenario import Scenario

REPO = Path(__file__).resolve().parents[1]


class ReplicationJob:
    """One ``replicate(scenario, runs, workers)`` running in a child process; files in ``folder``."""

    def __init__(self, scenario: Scenario, runs: int, folder: Path, workers: int = 2) -> None:
        self.runs = runs
        self.started = time.time()
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{scenario.sha256()[:16]}-{runs}-{time.time_ns()}"
        self._scenario = folder / f"{stem}.scenario.json"
        self._out = folder / f"{stem}.json"
        self._log = folder / f"{stem}.log"
        self._scenario.write_text(scenario.canonical_json(), "utf-8")
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "core", "replicate", "--scenario", str(self._scenario), "--runs", str(runs),
                 "--workers", str(workers), "--json", str(self._out)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def done(self) -> bool:
        return self._process.poll() is not None

    def wait(self, timeout: float | None = None) -> dict:
        self._process.wait(timeout)
        return self.result()

    def result(self) -> dict:
        """The replications' figures; RuntimeError (one line, the CLI's own message) when they failed."""
        if not self.done():
            raise RuntimeError("the replications are still running")
        if self._process.returncode != 0 or not self._out.is_file():
            lines = [ln for ln in self._log.read_text("utf-8", "replace").splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"replicate stopped with exit code {self._process.returncode}")
        return json.loads(self._out.read_text("utf-8"))

    def cancel(self) -> None:
        if not self.done():
            self._process.terminate()
