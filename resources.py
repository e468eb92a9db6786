"""Every Streamlit cache lives here (README: Project layout): pages call these, core/ never imports Streamlit."""
from __future__ import annotations

import functools
import threading
from pathlib import Path
from types import SimpleNamespace

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


def _counted(cache, cache_kwargs):
    """``cache`` (st.cache_data or st.cache_resource) that also counts calls and misses per function name."""
    def wrap(fn):
        name = fn.__name__

        @functools.wraps(fn)
        def body(*args, **kwargs):
            cache_stats().miss(name)  # runs only when the cache has no entry
            return fn(*args, **kwargs)

        cached = cache(show_spinner=False, **cache_kwargs)(body)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            cache_stats().call(name)
            return cached(*args, **kwargs)

        call.clear = cached.clear
        return call
    return wrap


def counted_cache_data(**cache_kwargs):
    """``st.cache_data`` that also counts hits and misses in ``cache_stats()`` under the function's name."""
    return _counted(st.cache_data, cache_kwargs)


def counted_cache_resource(**cache_kwargs):
    """``st.cache_resource`` counted like ``counted_cache_data``: for large read-only objects (plotly figures
    with hundreds of animation frames) that would cost more to unpickle on every hit than to share."""
    return _counted(st.cache_resource, cache_kwargs)


@counted_cache_data()
def preset_choices() -> dict[str, str]:
    """Preset id -> display name, 'default' first."""
    choices = {"default": reference.default_scenario()["name"]}
    choices.update({k: v["name"] for k, v in reference.presets().items()})
    return choices


def scenario_for(preset_id: str) -> Scenario:
    return load_scenario(preset_id)


# --- database, generation jobs and metrics (Generate, Monitor, Runs pages) ------------------------------------
@st.cache_resource(show_spinner=False, on_release=lambda link: link.close())
def database():
    """The process's core.db.link.DatabaseLink: the engine (one pool) or why there is none, re-checked in the
    background so pages never wait on it."""
    try:
        from core.db.link import DatabaseLink
    except ImportError:  # no SQLAlchemy: the dashboard works on files only and its banner says why
        return SimpleNamespace(engine=None, described=None, usable=lambda: None, close=lambda: None,
                               error="database support is not installed (core.db or SQLAlchemy is missing)")
    return DatabaseLink()


def db_engine():
    """The SQLAlchemy engine (one pool per process), or None while the database is down (see ``db_error``)."""
    return database().usable()


def db_error() -> str | None:
    """Why the database cannot be used (one line, for a banner), or None when it answers."""
    return database().error


def cache_hit_rate() -> float | None:
    from core.metrics import hit_rate
    return hit_rate(cache_stats().snapshot())


@st.cache_resource(show_spinner=False)
def job_registry():
    """Generation jobs shared by every session and tab of this process (one run at a time)."""
    from core import settings
    from core.jobs import JobRegistry
    from core.metrics import hit_rate
    # the worker threads get plain objects, never a Streamlit call
    link, stats = database(), cache_stats()
    return JobRegistry(settings.runs_dir, engine=link.usable, cache_hit_rate=lambda: hit_rate(stats.snapshot()))


def exports_dir():
    """Where run ZIPs are written (``<data dir>/exports``), outside the run folders."""
    from core import settings
    path = settings.data_dir() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pool_status(link=None) -> dict | None:
    from core.jobs import _db
    engine, db = (link or database()).usable(), _db()
    return db.pool_status(engine) if engine is not None and db is not None else None


def pool_status_now() -> dict | None:
    """The live pool status (no query), or None when there is no database."""
    try:
        return _pool_status()
    except Exception:
        return None


@st.cache_resource(show_spinner=False, on_release=lambda sampler: sampler.stop())
def metrics_sampler():
    """CPU, memory, threads and database pool of this process, sampled every second in a daemon thread."""
    from core.metrics import ProcessSampler
    link = database()
    return ProcessSampler(pool_status=lambda: _pool_status(link)).start()


@st.cache_resource(show_spinner=False)
def page_timings():
    """Script-run time of each page (app.py records it around ``pg.run()``)."""
    from core.metrics import PageTimings
    return PageTimings()


@counted_cache_data(ttl=60, max_entries=8)
def run_history(version: int) -> list[dict]:
    """All runs, newest first (``version`` is ``job_registry().version``: a new key when runs change;
    the minute's ttl picks up runs registered by the CLI in the database)."""
    return job_registry().run_history()


def runs() -> list[dict]:
    return run_history(job_registry().version)


@counted_cache_data(ttl=60, max_entries=8)
def run_table_rows(runs_root: str, registry_id: int, version: int) -> list[dict]:
    """``run_history`` rows as the Runs and Monitor pages show them: ``created_at`` a UTC datetime whatever the row
    came from (one type for a table column), and for a run that did not complete the patients it generated before
    it stopped and the patients it was meant to have (``patients_generated``, ``patients_planned``, from its
    manifest). Label a row with ``core.labels.run_label``."""
    from core.labels import utc_datetime
    from core.runs import read_manifest
    rows = []
    for r in job_registry().run_history():
        row = dict(r, created_at=utc_datetime(r.get("created_at")))
        if r.get("status") != "completed" and r.get("on_disk") and r.get("out_dir"):
            manifest = read_manifest(r["out_dir"]) or {}
            row["patients_generated"] = manifest.get("patients_generated")
            row["patients_planned"] = (manifest.get("scenario") or {}).get("patients")
        rows.append(row)
    return rows


def run_rows() -> list[dict]:
    """Every run, newest first, ready to show (see ``run_table_rows``)."""
    registry = job_registry()
    return run_table_rows(str(registry.runs_root), id(registry), registry.version)


def deletion_blocker(run: dict) -> str | None:
    """Why the Runs page must not offer to delete ``run`` (a ``run_rows`` row), or None when it may.

    A run whose writer may be alive is never offered (its status, or ``core.runs.deletable``: its folder is locked),
    nor a folder outside the dashboard's runs folder, nor a folder without a manifest in which a file changed
    recently (the command line may still be writing it)."""
    import time
    from core import runs as run_folders
    root = job_registry().runs_root
    folder = Path(run["out_dir"]) if run.get("out_dir") else root / run["run_id"]
    if run.get("status") in ("queued", "running"):
        return "it is still being written: cancel it on Generate first"
    if run.get("on_disk"):
        reason = run_folders.deletable(folder, root)
        if reason:
            return reason
    if folder.exists() and not run_folders.inside(folder, root):  # e.g. a command-line run saved with --db
        return "its folder is not in the dashboard's runs folder (delete it where it was written)"
    if run.get("status") == "interrupted" and folder.is_dir():  # no manifest: the command line may still write it
        newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
        quiet = time.time() - newest
        if quiet < RECENT_WRITE_S:
            return (f"a file in its folder changed {quiet:,.0f} s ago: a process may still be writing it "
                    f"(offered once nothing has changed for {RECENT_WRITE_S // 60:,} minutes)")
    return None


RECENT_WRITE_S = 600


@counted_cache_data(max_entries=256)
def run_summary(run_id: str, out_dir: str | None = None) -> dict:
    """A finished run's manifest (without the full scenario) and, for persisted runs, the database summary.

    ``out_dir`` is the run's folder when it is not named after the run (a CLI run copied into the runs folder)."""
    from core.jobs import _db
    from core.runs import read_manifest
    registry = job_registry()
    manifest = read_manifest(Path(out_dir) if out_dir else registry.runs_root / run_id) or {}
    summary = {"manifest": {k: v for k, v in manifest.items() if k != "scenario"}, "counts": None}
    engine, db = db_engine(), _db()
    if engine is not None and db is not None:
        try:
            row = db.get_run(engine, run_id)
            if row and row.get("persisted") and row.get("status") == "completed":
                summary["counts"] = db.run_summary(engine, run_id)
        except db.DatabaseUnavailable:
            pass
    return summary


@counted_cache_data()
def default_scenario() -> Scenario:
    """The default scenario (Generate uses it when the Scenario page has not set one)."""
    return load_scenario("default")


# --- Scenario, Explore and Replay pages -----------------------------------------------------------------------
# Run aggregates are keyed by (run folder, manifest stamp): a run that is re-written gets new entries.

@counted_cache_data(max_entries=64)
def preview_summary(scenario_json: str, patients: int) -> dict:
    """What the Scenario page shows of a scenario (keyed by its canonical JSON): without a medical plan, a sample
    of ``patients``; with one, the plan at work on the scenario at its own rate (core.capacity.preview: the whole
    scenario, or its first days). Keys: summary (core.explore.preview_summary), figures (core.explore.comparison),
    report (the capacity report, or None), note (what part of the scenario ran, or None), patients."""
    import json
    from datetime import timedelta

    from core import explore
    scenario = Scenario.from_dict(json.loads(scenario_json))
    report = note = None
    if scenario.medical_plan is None:
        batch = generator.generate(scenario.with_overrides(patients=patients))
        people, events = batch.patients, batch.events
    else:
        from core.capacity.preview import preview
        pv = preview(scenario)
        people, events, report, note = pv.patients, pv.events, pv.report, pv.note
    start = scenario.start
    end = (events["time"].max() if events.height else start) + timedelta(hours=1)
    summary = explore.preview_summary(people)
    occupancy = explore.occupancy(events.lazy(), start, end, "1h")
    timings = explore.ten_one_two(people.lazy(), events.lazy())["summary"]
    return {"summary": summary, "figures": explore.comparison(summary["figures"], timings, occupancy, report),
            "report": report, "note": note, "patients": people.height}


def warm_capacity() -> None:
    """Load (or compile, the first time on a machine) the medical plan's simulation, so the first preview of a
    scenario with a plan is quick (run once, in a background thread)."""
    from core.capacity.preview import warm
    warm()


@st.cache_resource(show_spinner=False, max_entries=16, on_release=lambda job: job.cancel())
def replications(scenario_json: str, runs: int):
    """A core.replication_job.ReplicationJob (``python -m core replicate`` in its own process) shared by every
    session: started once per scenario and number of runs; the page polls it."""
    import json

    from core import settings
    from core.replication_job import ReplicationJob
    scenario = Scenario.from_dict(json.loads(scenario_json))
    return ReplicationJob(scenario, runs, settings.data_dir() / "replications")


@counted_cache_data(ttl=30, max_entries=16)
def saved_scenarios(version: int) -> list[dict]:
    """Saved scenarios (latest version of each name) from the database; ``version`` changes on save/delete.
    Raises core.db.DatabaseUnavailable when the database is down (never cached)."""
    from core import db
    engine = db_engine()
    if engine is None:
        raise db.DatabaseUnavailable(db_error() or "database unavailable")
    return db.list_scenarios(engine)


@counted_cache_data(ttl=30, max_entries=64)
def saved_scenario_versions(name: str, version: int) -> list[dict]:
    """Every saved version of one scenario name, newest first."""
    from core import db
    engine = db_engine()
    if engine is None:
        raise db.DatabaseUnavailable(db_error() or "database unavailable")
    return sorted(db.scenario_versions(engine, name), key=lambda v: v["version"], reverse=True)


@counted_cache_data()
def nation_names() -> dict[str, str]:
    """ISO3 code -> nation name, NATO members then partners."""
    data = reference.nations_file()
    return {code: row.get("name", code) for group in ("nations", "partners") for code, row in data[group].items()}


@counted_cache_data(ttl=15, max_entries=16)
def find_runs(runs_dir: str, folders: tuple[str, ...], version: int) -> list[dict]:
    """Run folders with a manifest under ``runs_dir`` (settings.runs_dir()) and ``folders``; ``version`` is
    job_registry().version, so a run that just finished appears at once; the ttl picks up CLI runs."""
    from core import explore, runs
    allowed = [Path(f).expanduser() for f in folders if f.strip() and explore.missing_folder(f) is None]
    return runs.list_runs(runs_dir, *allowed, interrupted=False)


def explore_runs(folders: tuple[str, ...] = ()) -> list[dict]:
    """Every run Explore and Replay can list, newest first (core.runs.list_runs rows)."""
    from core import settings
    return find_runs(str(settings.runs_dir()), tuple(folders), job_registry().version)


def explore_needs_converting(path: str) -> bool:
    """True when opening the run in Explore will first convert its text tables to Parquet (a quick check: a
    manifest read and a few file look-ups); then call ``explore_convert`` with a progress bar."""
    from core import explore
    return explore.needs_converting(path)


def explore_convert(path: str, on_progress=None) -> None:
    """Convert a CSV, NDJSON or JSON run's tables to Parquet once (the explore cache), calling
    ``on_progress(fraction done, what is being done)`` between tables; quick when there is nothing to convert.
    Raises core.explore.RunNotExplorable with a one-line reason."""
    from core import explore
    explore.convert_run(path, on_progress)


@counted_cache_data(max_entries=32)
def explore_overview(path: str, stamp: str) -> dict:
    """Key figures, distributions and timelines of one run (patients table only: quick even for 1M patients)."""
    from core import explore
    run = explore.open_run(path)
    p = run.patients()
    days = int(run.scenario.get("days", 1))
    every = explore.time_bin(days)
    start, end = run.window
    return {"run_id": run.run_id, "manifest": {k: v for k, v in run.manifest.items() if k != "scenario"},
            "scenario": run.scenario, "figures": explore.key_figures(p), "every": every,
            "start": start, "end": end,
            "by_front": explore.over_time(p, "front", every), "by_warfare": explore.over_time(p, "warfare_type", every),
            "category": explore.counts(p, "category"), "mechanism": explore.counts(p, "mechanism", "category"),
            "body_region": explore.counts(p, "body_region", "category"), "triage": explore.counts(p, "triage", "category"),
            "outcomes_by_facility": explore.outcomes_by_facility(p), "options": explore.filter_options(p),
            "calibration": run.calibration()}


@counted_cache_data(max_entries=32)
def explore_flow(path: str, stamp: str, t1_battle_only: bool = True) -> dict:
    """Sankey links, 10-1-2 timings and facility occupancy of one run (each reads the events table lazily)."""
    from core import explore
    run = explore.open_run(path)
    start, end = run.window
    every = "1h" if (end - start).days <= 10 else "6h"
    return {"links": explore.flow_links(run.patients(), run.events()),
            "timings": explore.ten_one_two(run.patients(), run.events(), t1_battle_only=t1_battle_only),
            "occupancy": explore.occupancy(run.events(), start, end, every), "every": every}


@counted_cache_data(max_entries=64)
def explore_patients(path: str, stamp: str, filters: tuple[tuple[str, tuple[str, ...]], ...], search: str,
                     offset: int, limit: int = 200) -> tuple:
    """A page of the filtered patient table and the number of matching patients."""
    from core import explore
    return explore.patient_page(explore.open_run(path).patients(), dict(filters), search=search,
                                limit=limit, offset=offset)


@counted_cache_data(max_entries=128)
def explore_patient_card(path: str, stamp: str, patient_id: int) -> dict | None:
    from core import explore
    return explore.patient_card(explore.open_run(path), patient_id)


@counted_cache_data(max_entries=32)
def replay_frames(path: str, stamp: str, every: str, filters: tuple[tuple[str, tuple[str, ...]], ...]) -> dict:
    """Replay frames of one run (core.explore.replay_frames) with the run's window."""
    from core import explore
    run = explore.open_run(path)
    start, end = run.window
    return {"frames": explore.replay_frames(run.patients(), run.events(), start, end, every, dict(filters)),
            "start": start, "end": end}


def _figures(specs: dict[str, dict]) -> dict:
    import plotly.graph_objects as go
    return {name: go.Figure(spec) for name, spec in specs.items()}


# Figures are built (and validated by plotly) once per key and shared read-only by every session: pages must not
# change them. st.plotly_chart only serialises them, which keeps a script run far below the 50 ms budget.
@counted_cache_resource(max_entries=16)
def replay_figure(path: str, stamp: str, every: str, filters: tuple[tuple[str, tuple[str, ...]], ...],
                  first: int = 0) -> dict:
    """The animated replay figure ("animation"): bars, the whole run with a marker that follows the animation
    and, for a run with a medical plan, the queues."""
    from charts import figures
    data = replay_frames(path, stamp, every, filters)
    queues = replay_queues(path, stamp, every, tuple(v for k, v in filters if k == "front"))
    return _figures({"animation": figures.replay_figure(data["frames"], data["start"], every, first, queues)})


@counted_cache_data(max_entries=32)
def replay_queues(path: str, stamp: str, every: str, fronts: tuple[tuple[str, ...], ...] = ()):
    """Patients waiting for each kind of resource per replay step (core.explore.queues), or None for a run without
    a medical plan; ``fronts``: only the queues of these fronts (and of the theatre's Role 3 and flights)."""
    from core import explore
    run = explore.open_run(path)
    if not explore.has_plan(run):
        return None
    table = explore_load(path, stamp)
    chosen = [f for group in fronts for f in group]
    if chosen:
        table = table.filter(pl.col("front").is_in([*chosen, "theatre"]) | (pl.col("role") == "R3"))
    start, end = run.window
    return explore.queues(table, every, start, end)


@counted_cache_resource(max_entries=64)
def preview_figures(scenario_json: str, patients: int) -> dict:
    """The Scenario page's preview charts (with a medical plan, also its peak occupancy against capacity)."""
    from charts import capacity, figures
    pv = preview_summary(scenario_json, patients)
    specs = figures.preview_specs(pv["summary"])
    if pv["report"]:
        specs["peaks"] = capacity.peaks_spec(pv["report"], narrow=True)
    return _figures(specs)


# --- Explore: the Capacity view and Compare ------------------------------------------------------------------
@counted_cache_resource(max_entries=16)
def explore_load(path: str, stamp: str) -> pl.DataFrame:
    """A run's load table, read once and shared (read-only) by every session: it can hold 100,000s of rows."""
    from core import explore
    return explore.load(explore.open_run(path))


@counted_cache_data(max_entries=32)
def explore_capacity(path: str, stamp: str) -> dict | None:
    """The Capacity view's data of one run, or None when the run had no medical plan (unlimited care)."""
    from core import explore
    run = explore.open_run(path)
    if not explore.has_plan(run):
        return None
    table = explore_load(path, stamp)
    days = int(run.scenario.get("days", 1))
    every = "1d" if days > 3 else "6h"
    facilities = (table.filter(pl.col("capacity").is_not_null())
                  .select("facility", "role").unique(maintain_order=True)["facility"].to_list())
    return {"report": explore.capacity_report(run), "every": every, "facilities": facilities,
            "fullness": explore.fullness(table, every), "queues": explore.queues(table, "1h"),
            "waits": explore.waits(run.patients()), "diversions": explore.diversions(run.patients(), run.events(), every)}


@counted_cache_resource(max_entries=32)
def explore_capacity_figures(path: str, stamp: str) -> dict:
    """The Capacity view's charts of one run (a run with a medical plan)."""
    from charts import capacity
    data = explore_capacity(path, stamp)
    unit = "day" if data["every"] == "1d" else "6 hours"
    return _figures({"peaks": capacity.peaks_spec(data["report"] or {}),
                     "fullness": capacity.fullness_spec(data["fullness"], unit),
                     "queues": capacity.queues_spec(data["queues"]), "waits": capacity.waits_spec(data["waits"]),
                     "diversions": capacity.diversions_spec(data["diversions"], unit)})


@counted_cache_resource(max_entries=64)
def explore_facility_figure(path: str, stamp: str, facility: str):
    """One facility's resources over time against capacity, with its queues."""
    from charts import capacity
    return _figures({"facility": capacity.resource_spec(explore_load(path, stamp), facility)})["facility"]


@counted_cache_data(max_entries=64)
def explore_comparison(path: str, stamp: str) -> dict:
    """The figures Compare puts side by side for one run (core.explore.comparison)."""
    from core import explore
    ov, flow = explore_overview(path, stamp), explore_flow(path, stamp)
    run = explore.open_run(path)
    report = explore.capacity_report(run) if explore.has_plan(run) else None
    return explore.comparison(ov["figures"], flow["timings"]["summary"], flow["occupancy"], report)


@counted_cache_resource(max_entries=16)
def explore_compare_figures(path_a: str, stamp_a: str, label_a: str, path_b: str, stamp_b: str,
                            label_b: str) -> dict:
    """Two runs' main charts overlaid: casualties per day, outcomes, patients present at each role, 10-1-2."""
    from charts import compare
    sides = []
    for path, stamp, label in ((path_a, stamp_a, label_a), (path_b, stamp_b, label_b)):
        ov, flow = explore_overview(path, stamp), explore_flow(path, stamp)
        sides.append({"label": label, "overview": ov, "flow": flow})
    return _figures(compare.compare_specs(*sides))


@counted_cache_resource(max_entries=32)
def explore_figures(path: str, stamp: str) -> dict:
    """The Explore page's overview charts of one run."""
    from charts import figures
    return _figures(figures.overview_specs(explore_overview(path, stamp)))


@counted_cache_resource(max_entries=32)
def explore_flow_figures(path: str, stamp: str, t1_battle_only: bool = True) -> dict:
    """Sankey, 10-1-2 and occupancy charts of one run."""
    from charts import figures
    flow = explore_flow(path, stamp, t1_battle_only)
    timings = flow["timings"]
    return _figures({"sankey": figures.sankey_spec(flow["links"]),
                     "timings": figures.timings_spec(timings["summary"], timings["histogram"]),
                     "occupancy": figures.occupancy_spec(flow["occupancy"], flow["every"])})


@st.cache_resource(show_spinner=False)
def warm_caches() -> bool:
    """Fill the lookups once per process at start-up and start the sampler, so first page views are warm."""
    preset_choices()
    default_scenario()
    database()
    metrics_sampler()
    threading.Thread(target=warm_capacity, name="warm-capacity", daemon=True).start()
    for run in run_rows()[:20]:
        if run.get("status") in ("completed", "cancelled", "failed") and run.get("on_disk"):
            run_summary(run["run_id"], run.get("out_dir"))
    return True
