"""Dashboard sessions during a big run: does a run slow the pages, do the pages slow the run?

    .venv/bin/python -m benchmarks.bench_sessions [--patients 1000000] [--sessions 20] [--interact 5]
                                                  [--url postgresql://postgres@127.0.0.1:5432/test] [--sqlite]

1. The CLI baseline: ``python -m core generate --patients N --db`` into the database (its own PostgreSQL schema,
   dropped at the end; ``--sqlite``: the embedded file), timed by its manifest (``elapsed_s``, which includes the
   database load).
2. The dashboard: a real Streamlit server (``streamlit run app.py``, in a process of its own, on a free port) and
   ``--sessions`` real browser tabs (the websocket protocol a browser speaks) spread over Generate, Monitor,
   Runs, Explore and Scenario. Each tab does what a browser does: its page's polling fragments rerun at their
   own interval (Generate's progress every second and Monitor's charts every two while a run goes on), and a
   user action reruns the whole page every ``--interact`` seconds. After a stretch with no run (the baseline
   of the pages), the same N-patient run is handed to the server's job registry, as the Generate page's button
   does, and saved to the database. Reports the run's time against the CLI's (goal: within 1.5x) and the
   server-side time of every script run: Streamlit's own measure (``page_profile.exec_time``, sent when
   ``browser.gatherUsageStats`` is on, as it is for this server only) and app.py's timer around ``pg.run()``
   (goal: p95 <= 200 ms), plus each tab's round trip.

``python -m benchmarks.bench_sessions --serve PORT`` is the server: ``streamlit run app.py`` in this process,
with a control thread on stdin (``submit N``: hand an N-patient run to the job registry and answer with its
result; ``clear`` and ``timings``: app.py's script-run times).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
ROTATION = ("Generate", "Monitor", "Runs", "Explore", "Scenario")
IDLE_S = 15  # seconds of the same sessions before the run starts


def pct(values: list[float], q: float) -> float | None:
    from core.metrics import percentile
    return percentile(values, q)


# --- the server (its own process) ------------------------------------------------------------------------------

def serve(port: int) -> None:
    """``streamlit run app.py`` in this process, with the control thread on stdin."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)  # the answers' own channel: Streamlit prints to stdout
    os.dup2(2, 1)

    def control() -> None:
        import resources
        from core.scenario import load_scenario
        for line in sys.stdin:
            command = line.split()
            if not command:
                continue
            if command[0] == "submit":
                registry = resources.job_registry()
                scenario = load_scenario("default").with_overrides(patients=int(command[1]), seed=21)
                job = registry.submit(scenario, persist=True, scenario_name="bench")
                view = registry.wait(job.run_id, 7200).view()
                answer = {k: view[k] for k in ("status", "elapsed_s", "peak_rss_mb", "db_note", "error")}
            elif command[0] == "clear":
                resources.page_timings().clear()
                answer = {}
            else:
                answer = resources.page_timings().stats()
            answers.write(json.dumps(answer) + "\n")

    threading.Thread(target=control, name="bench-control", daemon=True).start()
    from streamlit.web.cli import main as streamlit_main
    streamlit_main(["run", str(ROOT / "app.py"), "--server.port", str(port), "--server.headless", "true",
                    "--browser.gatherUsageStats", "true", "--server.fileWatcherType", "none"],
                   standalone_mode=False)


# --- browser sessions ------------------------------------------------------------------------------------------

def _rerun(page_hash: str, fragment_id: str = "") -> bytes:
    from streamlit.proto.BackMsg_pb2 import BackMsg
    msg = BackMsg()
    msg.rerun_script.query_string = ""
    msg.rerun_script.page_script_hash = page_hash
    msg.rerun_script.widget_states.SetInParent()
    if fragment_id:  # what a browser sends for a fragment's run_every
        msg.rerun_script.fragment_id = fragment_id
        msg.rerun_script.is_auto_rerun = True
    return msg.SerializeToString()


class Tab:
    """One browser tab on one page: the page's script runs, and its fragments' auto-reruns at their interval."""

    def __init__(self, ws) -> None:
        self.ws, self.pages, self.fragments = ws, {}, {}  # fragment id -> seconds between reruns

    async def run(self, page_hash: str, fragment_id: str = "") -> tuple[float, float | None]:
        """One script run as the browser asks for it: (round trip s, server exec_time s)."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        t0 = time.perf_counter()
        await self.ws.send(_rerun(page_hash, fragment_id))
        exec_s = None
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await self.ws.recv())
            kind = msg.WhichOneof("type")
            if kind == "navigation":
                self.pages = {p.page_name: p.page_script_hash for p in msg.navigation.app_pages}
            elif kind == "auto_rerun":
                self.fragments[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
            elif kind == "stop_auto_rerun":
                for fid in msg.stop_auto_rerun.fragment_ids:
                    self.fragments.pop(fid, None)
            elif kind == "page_profile":
                exec_s = msg.page_profile.exec_time / 1e6
            elif kind == "script_finished":
                return time.perf_counter() - t0, exec_s


async def _session(port: int, page: str, interact: float, stop: asyncio.Event, trips: list, errors: list) -> None:
    """A tab kept open on ``page``: its fragments rerun at their own interval (Generate and Monitor poll while a
    run goes on), and the user does something that reruns the whole page every ``interact`` seconds."""
    import websockets
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=None, ping_interval=None) as ws:
            tab = Tab(ws)
            await tab.run("")
            page_hash = tab.pages[page]
            await tab.run(page_hash)
            now = time.perf_counter()
            next_page, next_fragment = now + interact, {}
            while not stop.is_set():
                now = time.perf_counter()
                for fid, interval in tab.fragments.items():
                    next_fragment.setdefault(fid, now + interval)
                due = [(at, fid) for fid, at in next_fragment.items() if fid in tab.fragments]
                at, fid = min(due + [(next_page, "")])
                if at > now:
                    try:
                        await asyncio.wait_for(stop.wait(), at - now)
                    except asyncio.TimeoutError:
                        pass
                    continue
                took, exec_s = await tab.run(page_hash, fid)
                trips.append((page, "fragment" if fid else "page", took, exec_s, time.perf_counter()))
                if fid:
                    next_fragment[fid] = time.perf_counter() + tab.fragments.get(fid, 1.0)
                else:
                    next_page = time.perf_counter() + interact
    except Exception as exc:  # counted and shown: a session that breaks is a finding
        errors.append(f"session on {page}: {type(exc).__name__}: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server ended ({server.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server never answered")


def _ask(server: subprocess.Popen, command: str) -> dict:
    server.stdin.write(command + "\n")
    server.stdin.flush()
    return json.loads(server.stdout.readline())


def _schema(url: str):
    """A fresh PostgreSQL schema for the benchmark: its URL, its name and how to drop it."""
    import sqlalchemy as sa
    name = f"mpg_bench_sessions_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')

    def drop():
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={name}')}", name, drop


def _cli(patients: int, out: Path, env: dict, seed: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "core", "generate", "--patients", str(patients), "--seed", str(seed),
                           "--db", "--quiet", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"CLI run failed ({done.returncode}): {done.stderr}")
    return json.loads((out / "manifest.json").read_text())


def _report(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values if v is not None]
    if not ms:
        return f"  {name:<18} no runs"
    return (f"  {name:<18} runs {len(ms):>5}  p50 {pct(ms, 50):>7.1f} ms  p95 {pct(ms, 95):>7.1f} ms  "
            f"max {max(ms):>8.1f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--interact", type=float, default=5.0,
                    help="seconds between a user's actions that rerun a whole page (fragments poll on their own)")
    ap.add_argument("--url", default=os.environ.get("MPG_TEST_DATABASE_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--sqlite", action="store_true", help="the embedded SQLite file instead of PostgreSQL")
    ap.add_argument("--skip-cli", type=float, default=None, metavar="SECONDS",
                    help="skip the CLI baseline and compare with this many seconds")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    data_dir = Path(tempfile.mkdtemp(prefix="mpg-bench-sessions-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPG_DATA_DIR": str(data_dir)}
    drop, where = None, "SQLite"
    if args.sqlite:
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"], where, drop = _schema(args.url)
        where = f"PostgreSQL schema {where}"
    server = None
    try:
        print(f"{args.patients:,} patients saved to {where}; {args.sessions} sessions spread over "
              f"{', '.join(ROTATION)}, each rerunning its page every {args.interact:g} s and its polling fragments "
              f"at their own interval", flush=True)
        if args.skip_cli is None:
            baseline = _cli(args.patients, data_dir / "cli-baseline", env, seed=21)
            cli_s = baseline["elapsed_s"]
            print(f"CLI run: {cli_s:.1f} s by its manifest, peak {baseline['peak_rss_mb']:.0f} MB, saved to the "
                  f"database: {baseline.get('persisted')}", flush=True)
        else:
            cli_s = args.skip_cli
        _cli(20_000, data_dir / "runs" / "explore-me", env, seed=3)  # a finished run for Explore to show

        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_sessions", "--serve", str(port)],
                                  cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        _wait_healthy(port, server)
        trips, errors = [], []

        async def drive() -> dict:
            stop = asyncio.Event()
            # every page visited first, so caches are warm as on a server that has been up for a while
            warm = [asyncio.create_task(_session(port, page, 2.0, stop, [], errors)) for page in ROTATION]
            await asyncio.sleep(10)
            stop.set()
            await asyncio.gather(*warm)
            stop = asyncio.Event()
            tabs = [asyncio.create_task(_session(port, ROTATION[i % len(ROTATION)], args.interact, stop, trips,
                                                 errors)) for i in range(args.sessions)]
            await asyncio.sleep(5)
            idle_from = time.perf_counter()
            await asyncio.sleep(IDLE_S)  # the same sessions with no run: what the run changes
            await asyncio.to_thread(_ask, server, "clear")
            start = time.perf_counter()
            result = await asyncio.to_thread(_ask, server, f"submit {args.patients}")
            result.update(wall_s=time.perf_counter() - start, start=start, idle_from=idle_from)
            result["timings"] = await asyncio.to_thread(_ask, server, "timings")
            stop.set()
            await asyncio.gather(*tabs)
            return result

        result = asyncio.run(drive())
        during = [t for t in trips if t[4] >= result["start"]]
        idle = [t for t in trips if result["idle_from"] <= t[4] < result["start"]]
        run_s = result["elapsed_s"]
        print(f"dashboard run: {result['status']}, {run_s:.1f} s by its manifest ({result['wall_s']:.1f} s from "
              f"submit), peak {result['peak_rss_mb']:.0f} MB (the run process's own), "
              f"{result['db_note'] or 'saved to the database'}")
        print(f"  run vs CLI: {run_s / cli_s:.2f}x (goal <= 1.5x)")
        print(f"server-side script time with no run, Streamlit's exec_time ({len(idle)} script runs):")
        print(_report("all", [t[3] for t in idle]))
        print(f"server-side script time during the run, Streamlit's exec_time ({len(during)} script runs; "
              f"fragment = a polling fragment's auto-rerun):")
        for name in ROTATION:
            for kind in ("page", "fragment"):
                runs_ = [t[3] for t in during if t[0] == name and t[1] == kind]
                if runs_:
                    print(_report(f"{name} {kind}", runs_))
        print(_report("all", [t[3] for t in during]))
        print("app.py's timer around pg.run() during the run (whole-page runs only):")
        for name, t in sorted(result["timings"].items()):
            print(f"  {name:<18} runs {t['runs']:>5}  p50 {t['p50_ms']:>7.1f} ms  p95 {t['p95_ms']:>7.1f} ms  "
                  f"max {t['max_ms']:>8.1f} ms")
        print("round trips (websocket, client side) during the run:")
        print(_report("all", [t[2] for t in during]))
        if errors:
            print(f"{len(errors)} session error(s), first: {errors[0]}")
        return 0 if result["status"] == "completed" and not errors else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if drop is not None:
            drop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
