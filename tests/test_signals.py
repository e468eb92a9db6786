"""Ctrl-C (SIGINT) and SIGTERM to a run's whole process group, with one and two worker processes: the run ends
within seconds as ``cancelled``, with one line on stderr (no worker traceback, no panic of the dataframe
library), exit code 128 + the signal, and nothing but its manifest in its folder.

The four runs go at once (each in its own session, signalled as a terminal's Ctrl-C would be), so the test stays
quick enough for every CI run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

CASES = [  # (signal, workers, format): the FHIR run renders its bundles in the worker processes
    (signal.SIGINT, 1, "parquet"),
    (signal.SIGINT, 2, "fhir"),
    (signal.SIGTERM, 1, "csv"),
    (signal.SIGTERM, 2, "parquet"),
]
CANCEL_WITHIN_S = 30  # generous for a loaded CI machine; a quiet one ends in about a second


def _start(out: Path, workers: int, fmt: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "ENCRYPTION_PASSWORD"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "core", "generate", "--patients", "5000000", "--format", fmt,
                             "--workers", str(workers), "--out", str(out)],
                            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _writing(out: Path) -> bool:
    """The run has started writing: its hidden temporary files are there (in the run folder or fhir/)."""
    return out.is_dir() and any(".partial-" in p.name for p in out.rglob(".*"))


def test_sigint_and_sigterm_cancel_a_run_cleanly_with_one_and_two_workers(tmp_path):
    runs = [(sig, workers, fmt, tmp_path / f"{sig.name}-{workers}-{fmt}") for sig, workers, fmt in CASES]
    procs = [_start(out, workers, fmt) for _, workers, fmt, out in runs]
    try:
        deadline = time.monotonic() + 60
        pending = set(range(len(runs)))
        signalled = {}
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                sig, _, _, out = runs[i]
                assert procs[i].poll() is None, f"run {out.name} ended before it could be interrupted"
                if _writing(out):
                    time.sleep(0.3)  # well into the run: batches in flight, workers busy
                    os.killpg(procs[i].pid, sig)  # the whole group, as a terminal's Ctrl-C does
                    signalled[i] = time.monotonic()
                    pending.discard(i)
            time.sleep(0.02)
        assert not pending, f"runs that never started writing: {[runs[i][3].name for i in pending]}"
        results = []
        for i, proc in enumerate(procs):
            _, stderr = proc.communicate(timeout=CANCEL_WITHIN_S)
            results.append((time.monotonic() - signalled[i], proc.returncode, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    for (sig, workers, fmt, out), (took, code, stderr) in zip(runs, results):
        case = f"{sig.name} with {workers} worker(s), {fmt}"
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 128 + sig, f"{case}: exit code {code}, stderr: {stderr[-2000:]}"
        assert lines == [f"run cancelled: no data files were left in {out}"], f"{case}: {stderr[-2000:]}"
        assert took < CANCEL_WITHIN_S, f"{case}: took {took:.1f} s to end"
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["status"] == "cancelled" and manifest["files"] == [], case
        left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        assert left == ["manifest.json"], f"{case}: left behind {left}"
