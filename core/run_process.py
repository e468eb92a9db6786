"""The process that runs one dashboard generation (started by core.jobs.JobRegistry): a run never shares the
server's interpreter, so pages do not slow the run and the run does not slow the pages.

    python -m core.run_process          # stdin: one JSON line with the run's order, then "cancel" lines
                                        # stdout: JSON lines (started, progress, sample, notice, finished)

The order line carries the validated scenario, the options, the password of an encrypted run (through the pipe,
never on the command line or in the environment) and the database URL. The run is cancelled cleanly (the
manifest says ``cancelled``) by a ``cancel`` line, by SIGINT or SIGTERM, and when stdin ends: the server that
started it is gone, and the manifest says so. Samples are this process's own: CPU, RSS and peak RSS of the run.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

SERVER_GONE = "the dashboard server stopped during the run"
PROGRESS_EVERY_S = 0.2  # progress messages at most this often (a batch can take a few milliseconds)


class _Channel:
    """JSON lines to the server on the real stdout; Python's stdout goes to stderr, so a stray print of a library
    cannot break the protocol."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, kind: str, **data) -> None:
        line = json.dumps({"type": kind, **data}, default=str, ensure_ascii=False)
        with self._lock:
            try:
                self._out.write(line + "\n")
            except (BrokenPipeError, ValueError):  # the server is gone: the stdin watcher cancels the run
                pass


class _Lines:
    """Lines from stdin read straight from its file descriptor: a thread blocked here holds no lock of Python's
    (a daemon thread blocked in sys.stdin would stop the interpreter from shutting down cleanly)."""

    def __init__(self, fd: int = 0) -> None:
        self.fd, self._held = fd, b""

    def readline(self) -> bytes | None:
        while b"\n" not in self._held:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self._held += chunk
        line, self._held = self._held.split(b"\n", 1)
        return line


def _watch_stdin(lines: _Lines, cancel) -> None:
    """``cancel`` lines cancel the run; the end of stdin means the server is gone, which cancels it too."""
    while (line := lines.readline()) is not None:
        if line.strip() == b"cancel":
            cancel.set()
    if not cancel.is_set():
        cancel.reason = SERVER_GONE
        cancel.set()


def main() -> int:
    channel = _Channel()
    lines = _Lines()
    order = json.loads(lines.readline() or b"{}")
    from core.metrics import ProcessSampler
    from core.run import Cancel, Progress, cancel_on_signals, failure_reason, generate_run
    from core.scenario import Scenario

    cancel = Cancel()
    threading.Thread(target=_watch_stdin, args=(lines, cancel), name="mpg-run-stdin", daemon=True).start()
    scenario = Scenario.from_dict(order["scenario"], base=order["scenario"])
    engine, db_note = None, None
    if order.get("database_url"):
        from core import db
        try:
            engine = db.get_engine(order["database_url"])
        except Exception as exc:  # down, or not ours: the files are still written
            db_note = db.unavailable_text(exc, order["database_url"])
    kwargs = {}
    if engine is not None:
        kwargs = {"engine": engine, "persist": order["persist"], "scenario_name": order["scenario_name"],
                  "scenario_version": order["scenario_version"]}

    def pool_status():
        from core import db
        return db.pool_status(engine)

    last = [0.0]

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or p.patients_done >= p.patients_total:
            last[0] = now
            channel.send("progress", patients_done=p.patients_done, elapsed_s=p.elapsed_s)

    sampler = ProcessSampler(order.get("sample_interval", 1.0), pool_status=pool_status if engine else None,
                             peak_every=order.get("peak_every"), name="mpg-run-sampler",
                             on_sample=lambda sample: channel.send("sample", **sample))
    channel.send("started", pid=os.getpid(), db_note=db_note)
    sampler.start()
    manifest, error = None, None
    try:
        with cancel_on_signals(cancel):
            manifest = generate_run(scenario, order["out_dir"], fmt=order["fmt"], compress=order["compress"],
                                    password=order.get("password"), chunk_size=order["chunk_size"],
                                    on_progress=progress, cancel=cancel, run_id=order["run_id"],
                                    on_notice=lambda text: channel.send("notice", text=text), **kwargs)
    except Exception as exc:  # the manifest (if any) says failed too; the reason goes to the server
        error = failure_reason(exc)
    finally:
        sampler.stop()
        sampler.sample()
    channel.send("finished", manifest=manifest, error=error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
