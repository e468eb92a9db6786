"""The streaming generator: ``stream(scenario, chunk_size, workers)`` yields Batches of patients 1..N in order.

Reproducibility: arrivals are drawn per scenario day (keyed by seed and day); everything else per fixed block
of ``BLOCK`` patient ids (keyed by seed and block number). Chunks are cut from whole blocks afterwards, so the
tables are identical for any chunk size and any number of worker processes. Memory is bounded by a chunk plus
one day's arrival skeleton, whatever N is.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable, Iterator

import numpy as np
import polars as pl

from core import arrivals, demographics, flow, injuries, reference, vitals
from core.scenario import Scenario
from core.schema import (BLOOD_GROUPS, CATEGORIES, CONDITIONS, DEATH_TYPES, EVENTS, EVENTS_SCHEMA, FACILITIES,
                         MECHANISM, MECHANISMS, OUTCOMES, PATIENTS, RANKS, REGIONS, SEVERITIES, SEXES, TRIAGES,
                         VITAL_CODES, VITAL_NAMES, VITAL_UNITS, VITAL_SIGNS, VITALS, WARFARE_TYPES, CAPACITY_COLUMNS,
                         Batch)

BLOCK = 16_384            # part of the reproducibility contract: changing it changes every run's data
MAX_CHUNK = 5_000_000
BLOCK_DEFAULT = BLOCK  # one block per batch: no regrouping copies, flat memory
US = 1_000_000


@cache
def _lut(values: tuple, dtype) -> pl.Series:
    return pl.Series(list(values), dtype=dtype)


def enum_col(values: tuple, codes: np.ndarray) -> pl.Series:
    """An Enum column from integer codes into ``values`` (a gather, no string work)."""
    return _lut(values, pl.Enum(list(values))).gather(np.asarray(codes, dtype=np.int64))


@cache
def _fracture_codes() -> tuple[str, ...]:
    return tuple(reference.flow()["fracture_codes"])


@cache
def _display_map() -> dict[str, str]:
    return {code: row["display"] for code, row in reference.conditions().items()}


@cache
def _vital_unit_idx() -> np.ndarray:
    return np.array([VITAL_UNITS.index(VITAL_SIGNS[c][1]) for c in VITAL_CODES])


@dataclass
class Prepared:
    """A block up to its intended journey: everything drawn, nothing emitted yet (the medical plan may still
    change the journey). Randomness already used stays used: the flow and vitals streams continue in
    ``finish_block``, so a block is the same wherever its two halves run."""

    block: int
    ids: np.ndarray
    sk: arrivals.Skeleton
    demo: demographics.Demographics
    inj: injuries.Injuries
    cond: injuries.Conditions
    p: flow.Casualties
    journey: flow.Journey
    r_flow: np.random.Generator
    r_vit: np.random.Generator
    capacity: np.ndarray | None = None   # the medical plan's rows for this block (core.capacity.inputs)


def prepare_block(scenario: Scenario, env: dict, block: int, sk: arrivals.Skeleton) -> Prepared:
    """Identity, injuries and the intended journey of patients ``block * BLOCK + 1`` ... (as many as ``sk``)."""
    n = len(sk)
    first_id = block * BLOCK + 1
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    streams = np.random.SeedSequence([scenario.seed, 2, block]).spawn(4 if scenario.medical_plan is None else 5)
    r_demo, r_inj, r_flow, r_vit = (np.random.default_rng(s) for s in streams[:4])
    category = sk.category.astype(np.int64)
    front = sk.front.astype(np.int64)
    warfare = sk.warfare.astype(np.int64)
    day = sk.day.astype(np.int64)
    nations = tuple(scenario.nations())

    demo = demographics.draw(r_demo, scenario, nations, ids, front, category, sk.time_s)
    inj, cond = injuries.draw(r_inj, scenario, category, warfare, front, day, sk.mascal, env)
    code = inj.condition_code
    offsets = np.array([f.utc_offset_h for f in scenario.fronts])
    p = flow.Casualties(
        category=category, triage=inj.triage, severity=inj.severity, mechanism=inj.mechanism,
        region=inj.body_region, lethal=inj.lethal, instant=inj.instant, mascal=sk.mascal, front=front, day=day,
        t0=sk.time_s, local_hour=((sk.time_s % 86_400) // 3600 + offsets[front]) % 24,
        fracture=code.is_in(_fracture_codes()).to_numpy(), spinal=(code == "1734006").to_numpy(),
        severe_tbi=(code == "127295002").to_numpy(), burn=inj.mechanism == MECHANISM["burn"])
    journey = flow.simulate(r_flow, scenario, env, p)
    prepared = Prepared(block, ids, sk, demo, inj, cond, p, journey, r_flow, r_vit)
    if scenario.medical_plan is not None:
        from core.capacity.model import inputs
        prepared.capacity = inputs(np.random.default_rng(streams[4]), scenario, env, p, journey, first_id - 1)
    return prepared


def generate_block(scenario: Scenario, env: dict, block: int, sk: arrivals.Skeleton) -> Batch:
    """All four tables for patients ``block * BLOCK + 1`` ... (as many as the skeleton holds), without a plan."""
    return finish_block(scenario, prepare_block(scenario, env, block, sk))


def finish_block(scenario: Scenario, prep: Prepared, settled=None) -> Batch:
    """The four tables of a prepared block: its intended journey, or the journey a medical plan gave it
    (``settled``: core.capacity.model.Settled, whose extra columns then join the patients table)."""
    ids, sk, demo, inj, cond, p = prep.ids, prep.sk, prep.demo, prep.inj, prep.cond, prep.p
    code = inj.condition_code
    category, front, warfare, day = p.category, p.front, sk.warfare.astype(np.int64), p.day
    journey = prep.journey if settled is None else settled.journey
    care = None if settled is None else flow.Care(settled.care, settled.operated, settled.diverted)
    r_flow, r_vit = prep.r_flow, prep.r_vit
    ev = flow.emit(r_flow, p, journey, care)
    vit = vitals.measurements(r_vit, p, journey, code)
    outcome = flow.outcomes(journey)
    start_us = int(scenario.start.timestamp()) * US

    def ts(seconds: np.ndarray) -> pl.Series:
        return pl.Series(start_us + np.asarray(seconds, dtype=np.int64) * US).cast(pl.Datetime("us", "UTC"))

    dead = (outcome == OUTCOMES.index("KIA")) | (outcome == OUTCOMES.index("DOW"))
    death_type = enum_col(DEATH_TYPES, (category != 0).astype(np.int64))
    labels = _lut(arrivals.STREAM_LABELS, pl.String).gather(sk.stream.astype(np.int64))
    patients = pl.DataFrame({
        "patient_id": ids,
        "service_number": demo.service_number,
        "given_name": demo.given_name,
        "family_name": demo.family_name,
        "sex": enum_col(SEXES, demo.sex),
        "birth_date": pl.Series(demo.birth_date).cast(pl.Date),
        "age": demo.age,
        "nationality": demo.nationality,
        "rank": enum_col(RANKS, demo.rank),
        "blood_group": enum_col(BLOOD_GROUPS, demo.blood_group),
        "front": _lut(tuple(f.name for f in scenario.fronts), pl.String).gather(front),
        "category": enum_col(CATEGORIES, category),
        "mechanism": enum_col(MECHANISMS, inj.mechanism),
        "body_region": enum_col(REGIONS, inj.body_region),
        "polytrauma": inj.polytrauma,
        "condition_code": code,
        "condition_display": code.replace_strict(_display_map(), return_dtype=pl.String),
        "severity": enum_col(SEVERITIES, inj.severity),
        "triage": enum_col(TRIAGES, inj.triage),
        "injury_time": ts(sk.time_s),
        "event_id": pl.DataFrame({"f": front + 1, "l": labels, "d": day + 1, "i": sk.incident}).select(
            pl.format("F{}-{}-D{}-{}", "f", "l", pl.col("d").cast(pl.String).str.zfill(3),
                      pl.col("i").cast(pl.String).str.zfill(5))).to_series(),
        "mass_casualty": sk.mascal if settled is None else settled.mascal,
        "warfare_type": enum_col(WARFARE_TYPES, warfare),
        "outcome": enum_col(OUTCOMES, outcome),
        "outcome_time": ts(ev.last_time),
        "last_facility": enum_col(FACILITIES, ev.last_fac),
    }).with_columns(death_type=pl.when(pl.Series(dead)).then(death_type))

    events = pl.DataFrame({
        "patient_id": ids[ev.idx],
        "seq": ev.seq.astype(np.int16),
        "time": ts(ev.time),
        "facility": enum_col(FACILITIES, ev.fac),
        "event": enum_col(EVENTS, ev.ev),
        "detail": _lut(tuple(flow.tables().details), pl.String).gather(ev.detail),
    })
    conditions = pl.DataFrame({
        "patient_id": ids[cond.idx],
        "rank": _ranks(cond.idx).astype(np.int8),
        "code": cond.code,
        "display": cond.code.replace_strict(_display_map(), return_dtype=pl.String),
        "body_region": enum_col(REGIONS, cond.body_region),
        "severity": enum_col(SEVERITIES, cond.severity),
    })
    # a vital sign is never recorded after the patient's last event
    vtime = np.minimum(vit.time, ev.last_time[vit.idx])
    vitals_df = pl.DataFrame({
        "patient_id": ids[vit.idx],
        "time": ts(vtime),
        "facility": enum_col(FACILITIES, vit.fac),
        "code": enum_col(VITAL_CODES, vit.code),
        "name": enum_col(VITAL_NAMES, vit.code),
        "value": vit.value,
        "unit": enum_col(VITAL_UNITS, _vital_unit_idx()[vit.code]),
    })
    columns = list(PATIENTS)
    if settled is not None:
        patients = patients.with_columns(pl.Series("wait_min", settled.wait_min, dtype=pl.Int32),
                                         pl.Series("diversions", settled.diversions, dtype=pl.Int8))
        columns += list(CAPACITY_COLUMNS)
    return Batch(patients.select(columns), events.select(list(EVENTS_SCHEMA)),
                 conditions.select(list(CONDITIONS)), vitals_df.select(list(VITALS)))


def _ranks(idx: np.ndarray) -> np.ndarray:
    if not len(idx):
        return idx
    starts = np.r_[0, np.flatnonzero(np.diff(idx)) + 1]
    counts = np.diff(np.r_[starts, len(idx)])
    return np.arange(len(idx)) - np.repeat(starts, counts) + 1


# --- chunking and workers ----------------------------------------------------------------------------------

def _concat(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    return Batch(*(pl.concat([getattr(b, t) for b in batches], rechunk=False)
                   for t in ("patients", "events", "conditions", "vitals")))


def _split(batch: Batch, n: int) -> tuple[Batch, Batch]:
    """The first ``n`` patients of a batch, and the rest."""
    last_id = batch.first_id + n - 1

    def cut(df: pl.DataFrame) -> int:
        return int(df["patient_id"].search_sorted(last_id, side="right"))

    parts = []
    for table in ("patients", "events", "conditions", "vitals"):
        df = getattr(batch, table)
        k = cut(df)
        parts.append((df.slice(0, k), df.slice(k)))
    return Batch(*(a for a, _ in parts)), Batch(*(b for _, b in parts))


def rechunk(blocks: Iterator[Batch], chunk_size: int) -> Iterator[Batch]:
    """Regroup blocks into batches of exactly ``chunk_size`` patients (the last may be shorter)."""
    held: list[Batch] = []
    count = 0
    for b in blocks:
        held.append(b)
        count += b.size
        while count >= chunk_size:
            merged = _concat(held)
            head, rest = _split(merged, chunk_size)
            yield head
            held, count = ([rest] if rest.size else []), rest.size
    if count:
        yield _concat(held)


_worker_env: dict = {}


def _environment(scenario: Scenario) -> dict:
    key = scenario.sha256()
    if key not in _worker_env:
        _worker_env.clear()
        _worker_env[key] = arrivals.environment_effects(scenario)
    return _worker_env[key]


def _work(args):
    scenario, block, sk, transform = args
    batch = generate_block(scenario, _environment(scenario), block, sk)
    return batch if transform is None else (batch, transform(batch))


def _prepare(args) -> Prepared:
    scenario, block, sk = args
    return prepare_block(scenario, _environment(scenario), block, sk)


def _in_order(work: Callable, scenario: Scenario, workers: int, extra: tuple = (), stop=None) -> Iterator:
    """``work((scenario, block, skeleton, *extra))`` for every block, in block order, here or in ``workers``
    processes; bounded in-flight work keeps memory flat when the consumer is slower than the workers. With
    ``stop`` (a threading.Event) set, it ends early: a cancelled run does not wait for a block nobody reads."""
    plan = arrivals.make_plan(scenario)
    skeletons = arrivals.blocks(plan, BLOCK)
    if workers <= 1:
        _worker_env.clear()
        _worker_env[scenario.sha256()] = plan.env
        for b, sk in enumerate(skeletons):
            if stop is not None and stop.is_set():
                return
            yield work((scenario, b, sk, *extra))
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_start,
                               initargs=(os.getpid(),))
    try:
        pending: deque = deque()
        for b, sk in enumerate(skeletons):
            with _signals_blocked():  # a worker starts inside submit and keeps this mask for its whole life
                pending.append(pool.submit(work, (scenario, b, sk, *extra)))
            if len(pending) >= 2 * workers:
                if (result := _result(pending.popleft(), stop)) is _STOPPED:
                    return
                yield result
        while pending:
            if (result := _result(pending.popleft(), stop)) is _STOPPED:
                return
            yield result
    finally:  # blocks not started are dropped; a worker ends once its block is done (killing it mid-message
        # could leave the pool's result pipe half-written, and the shutdown waiting for the rest for ever)
        pool.shutdown(wait=True, cancel_futures=True)


_STOPPED = object()


def _result(future, stop):
    """The future's result, or _STOPPED as soon as ``stop`` is set (checked ten times a second)."""
    if stop is None:
        return future.result()
    while True:
        try:
            return future.result(timeout=0.1)
        except FutureTimeout:
            if stop.is_set():
                return _STOPPED


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM held back in this thread meanwhile (delivered after, never lost). A worker process
    started meanwhile inherits the mask, so a Ctrl-C to the process group while it starts up (importing for a
    second or so) cannot interrupt it with a traceback; ``_worker_start`` then decides."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def blocks(scenario: Scenario, workers: int = 1, transform: Callable[[Batch], Any] | None = None,
           simulation=None, stop=None) -> Iterator:
    """Blocks of BLOCK patients in patient-id order, generated here or in ``workers`` processes.

    With ``transform`` (a picklable top-level callable) yields ``(block, transform(block))`` pairs instead, the
    transform run where the block was made: in the worker process when ``workers`` > 1. A scenario with a medical
    plan runs it in this process (``simulation``: a core.capacity.model.Simulation to read afterwards, else a new
    one); its blocks come out once every journey in them is settled. ``stop``: see ``stream``."""
    if scenario.medical_plan is not None:
        yield from _planned(scenario, workers, transform, simulation, stop)
        return
    yield from _in_order(_work, scenario, workers, (transform,), stop)


def _planned(scenario: Scenario, workers: int, transform, simulation, stop=None) -> Iterator:
    from core.capacity.model import Simulation
    sim = simulation if simulation is not None else Simulation(scenario)

    def settled() -> Iterator:
        for done in sim.settled():
            batch = finish_block(scenario, done.payload, done)
            yield batch if transform is None else (batch, transform(batch))

    def add(prep) -> None:
        rows, prep.capacity = prep.capacity, None
        sk = prep.sk
        incidents = ((((sk.front.astype(np.int64) * 16 + sk.stream) * 256 + sk.day) << 32)
                     | sk.incident.astype(np.int64))
        sim.add(rows, prep, flow.outcomes(prep.journey), incidents, sk.day.astype(np.int64))

    # the simulation of block k (compiled, without the GIL) runs in a thread while this thread prepares block
    # k + 1; blocks still enter the simulation one after the other, in order, so the data are the same
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="capacity") as pool:
            running = None
            for prep in _in_order(_prepare, scenario, workers, stop=stop):
                if running is not None:
                    running.result()
                    yield from settled()
                running = pool.submit(add, prep)
            if running is not None:
                running.result()
                yield from settled()
        if stop is not None and stop.is_set():
            return
        sim.finish()
        yield from settled()
    finally:
        sim.discard()


def stream(scenario: Scenario, chunk_size: int = BLOCK_DEFAULT, workers: int = 1,
           transform: Callable[[Batch], Any] | None = None, simulation=None, stop=None) -> Iterator:
    """Batches of ``chunk_size`` patients (the four contract tables), patients 1..N in order.

    With ``transform`` (a picklable top-level callable, run on each BLOCK in the worker that generated it) yields
    ``(batch, extras)``: ``extras`` lists, in order, the transform results of the blocks whose last patient is in
    this batch, so every block's result comes exactly once, with or after its last rows, whatever the chunk size.

    ``stop`` (a threading.Event, e.g. a run's cancel): once set, the stream ends early, without waiting for the
    blocks still being made (the consumer then knows it was stopped)."""
    check_options(chunk_size, workers)
    if transform is None:
        yield from rechunk(blocks(scenario, workers, simulation=simulation, stop=stop), chunk_size)
        return
    done: deque = deque()  # (last patient id of a block, its transform result), in block order

    def tagged() -> Iterator[Batch]:
        for block, extra in blocks(scenario, workers, transform, simulation, stop):
            done.append((block.last_id if block.size else 0, extra))
            yield block

    for batch in rechunk(tagged(), chunk_size):
        extras = []
        while done and done[0][0] <= batch.last_id:
            extras.append(done.popleft()[1])
        yield batch, extras


def check_options(chunk_size: int, workers: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk size {chunk_size!r} is not allowed (a whole number from 1 to {MAX_CHUNK:,})")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise ValueError(f"workers {workers!r} is not allowed (a whole number from 1 to 64)")


def generate(scenario: Scenario, simulation=None) -> Batch:
    """The whole run in memory (small runs, tests and previews only)."""
    return _concat(list(blocks(scenario, simulation=simulation)))


def _worker_start(parent: int) -> None:
    """A worker process's first act: Ctrl-C reaches the whole process group, and the main process cancels the run
    (core.run.cancel_on_signals), so the worker ignores it and finishes its block; SIGTERM keeps its default (the
    pool's own shutdown of a broken pool relies on it). A worker whose main process was killed exits too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # before unblocking: a Ctrl-C held back meanwhile is dropped
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    threading.Thread(target=_exit_with, args=(parent,), name="mpg-worker-parent", daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)  # the main process is gone (kill -9): nobody will read this worker's blocks
