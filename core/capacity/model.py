"""The medical plan at work on a stream of blocks (docs/capacity.md).

``inputs`` turns a block's intended journeys (the unconstrained flow, drawn exactly as without a plan) and
its own capacity draws into the simulation's per-patient rows; it runs wherever the block is made (a worker
process too). ``Simulation`` runs in the process that writes the run: blocks go in, in patient order; the
simulation advances to the last injury of each block (no later patient can need care earlier) and hands back
every block whose patients' journeys are all settled, with the actual journeys. Memory holds the patients in
the theatre's care (and the rest of their blocks), never the run's total.
"""
from __future__ import annotations

import math
import os
import pickle
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from core import reference
from core.capacity import des
from core.capacity.plan import MedicalPlan, config
from core.flow import NA, Casualties, Journey, lognormal
from core.schema import CATEGORIES, EVENT as EV, POI, R1, R2, R3, T1, TRIAGES

INT_MAX = np.iinfo(np.int64).max
# a patient's simulation row holds seconds (a run's horizon is under 2^31 s) and small counts: 4 bytes each
ROW_TYPE = np.int32
ROW_MAX = np.iinfo(ROW_TYPE).max
# inputs the block gives the simulation, in des field order (GID .. ROT)
N_INPUTS = des.ROT + 1


def _triangular(rng, spec, n: int) -> np.ndarray:
    lo, mode, hi = spec
    return np.round(rng.triangular(lo, mode, hi, n) * 60).astype(np.int64)


def inputs(rng: np.random.Generator, scenario, env: dict, p: Casualties, j: Journey, first_gid: int) -> np.ndarray:
    """The simulation's rows for one block: the intended journey, the death process and the capacity draws.

    ``rng`` is the block's own capacity stream, so the intended journey (and with it everything a run without a
    plan draws) stays exactly as without a plan."""
    cfg = config()
    dur = cfg["durations_min"]
    n = len(p.t0)
    x = np.full((n, N_INPUTS), NA, dtype=np.int64)
    x[:, des.GID] = np.arange(first_gid, first_gid + n)
    x[:, des.FRONT], x[:, des.TRI], x[:, des.CAT], x[:, des.T0] = p.front, p.triage, p.category, p.t0
    x[:, des.POIDEP] = j.dep[:, 0]
    for k in range(1, 5):
        x[:, des.FAC + k - 1] = j.fac[:, k]
        reached = j.fac[:, k] != NA
        leaves = np.where(j.dep[:, k] != NA, j.dep[:, k],
                          np.where((j.term_stage == k) & (j.terminal == EV["rtd"]), j.t_term, j.arr[:, k]))
        x[:, des.DWELL + k - 1] = np.where(reached, leaves - j.arr[:, k], 0)
        x[:, des.MODE + k - 1] = np.where(reached, j.mode[:, k - 1], 0)
        x[:, des.LEG + k - 1] = np.where(reached, j.arr[:, k] - j.dep[:, k - 1], 0)
        x[:, des.LEGG + k - 1] = np.where(reached, j.ground_leg[:, k], 0)
    x[:, des.TERM] = np.select([j.terminal == EV["rtd"], j.terminal == EV["evacuated"]], [1, 2], 0)
    x[:, des.TERMSTAGE] = j.term_stage

    # capacity draws: one stream per block, drawn for everyone in a fixed order
    cat, tri = p.category, p.triage
    dr1 = _triangular(rng, dur["r1_treatment"], n)
    long_r = _triangular(rng, dur["long_resuscitation"], 2 * n).reshape(2, n)
    short_r = _triangular(rng, dur["short_resuscitation"], 2 * n).reshape(2, n)
    surg = _triangular(rng, dur["damage_control_surgery"], 2 * n).reshape(2, n)
    icu = _triangular(rng, dur["icu_after_surgery"], 2 * n).reshape(2, n)
    postop = _triangular(rng, dur["postoperative_holding"], 2 * n).reshape(2, n)
    need_u = rng.random((2, n))
    times = reference.flow()["times"][scenario.evacuation_posture]
    mobility = env["mobility"][p.front, p.day]
    xleg_g = lognormal(rng, times["r2_r3"]["ground"], n) * times["transit_factor"] / mobility
    xleg_a = lognormal(rng, times["r2_r3"]["air"], n) * times["transit_factor"]

    resus_cfg = cfg["resuscitation"]
    long_need = np.isin(tri, [TRIAGES.index(t) for t in resus_cfg["long"]])
    short_need = (np.isin(tri, [TRIAGES.index(t) for t in resus_cfg["short_triage"]])
                  & np.isin(cat, [CATEGORIES.index(c) for c in resus_cfg["short_categories"]]))
    icu_need = np.isin(tri, [TRIAGES.index(t) for t in cfg["icu_after_surgery_triage"]])
    for role in (0, 1):
        need = np.array([cfg["surgery_need"]["r2" if role == 0 else "r3"][c] for c in CATEGORIES])[cat, tri]
        surgical = need_u[role] < need
        x[:, des.SURG + role] = np.where(surgical, surg[role], 0)
        # a casualty who needs surgery goes to a table as soon as one is free, resuscitated until then
        x[:, des.RESUS + role] = np.where(surgical, 0, np.where(long_need, long_r[role],
                                                                np.where(short_need, short_r[role], 0)))
        x[:, des.ICU + role] = np.where(icu_need, icu[role], 0)
        x[:, des.POSTOP + role] = postop[role]
    x[:, des.DR1] = dr1
    x[:, des.XLEGG] = np.maximum(np.round(xleg_g), 60).astype(np.int64)
    x[:, des.XLEGA] = np.maximum(np.round(xleg_a), 60).astype(np.int64)
    # each casualty's Role 2: one of its front's, in proportion to their holding beds (where casualties stay)
    assigned = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for i in range(len(scenario.fronts)):
        beds = np.array(fp_r2(scenario, i), dtype=float)
        cum = np.cumsum(beds / beds.sum())
        here = p.front == i
        assigned[here] = np.minimum(np.searchsorted(cum, u[here], side="right"), len(beds) - 1)
    x[:, des.ROT] = assigned

    # the death process of the flow, replayed against the actual times (DOMAIN: delay feeds mortality)
    mort = reference.flow()["mortality"]
    a0 = j.arr[:, 1]
    slow = p.lethal & ~p.instant
    kia = slow & (j.t_kia < a0)
    reached = slow & ~kia
    slack = np.where(reached, j.t_kia - a0, 0)
    smax, scale = mort["salvage"]["max"], mort["salvage"]["scale_min"] * 60
    salvage = smax * (1 - np.exp(-np.maximum(slack, 0) / scale))
    saved = reached & (j.salvage_draw < salvage)
    # the least slack that still saves this casualty: saved while the delay to decisive care stays below
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = -scale * np.log1p(-np.minimum(j.salvage_draw / smax, 1.0))
    budget = np.where(saved, np.maximum(np.floor(slack - needed), 1), 0).astype(np.int64)
    x[:, des.LKIND] = np.select([p.instant, kia, saved, reached], [1, 4, 3, 2], 0)
    x[:, des.TKIA] = np.where(slow, j.t_kia, INT_MAX)
    x[:, des.BUDGET] = budget
    x[:, des.XDOW] = j.dow_delay

    # decisive care: surgery at the first Role 2/3 on the way when needed there, else the first care
    fac = j.fac
    first_surgical = np.full(n, NA)
    for k in range(4, 0, -1):
        first_surgical = np.where((fac[:, k] == R2) | (fac[:, k] == R3), k, first_surgical)
    has = first_surgical != NA
    k_s = np.where(has, first_surgical, 1)
    role_s = np.take_along_axis(fac, k_s[:, None], axis=1)[:, 0]
    surgical = has & ((x[:, des.SURG] > 0) | ((role_s == R3) & (x[:, des.SURG + 1] > 0)))
    # when the decisive surgery is reached with no wait anywhere: on arrival at that facility
    at_s = np.take_along_axis(j.arr, k_s[:, None], axis=1)[:, 0]
    x[:, des.DKIND] = surgical.astype(np.int64)
    x[:, des.D0] = np.where(surgical, at_s, a0)
    return x


KEEP_IN_MEMORY = 2  # pending blocks held in memory; later ones wait on disk (one straggler can hold many)


class _Spilled:
    """A block waiting on disk while an earlier block's journeys are not settled (a stay of weeks)."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def write(cls, payload, folder: Path, first: int) -> "_Spilled":
        path = folder / f".capacity-spill-{os.getpid()}-{first}.pkl"
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        return cls(path)

    def read(self):
        with self.path.open("rb") as f:
            payload = pickle.load(f)
        self.path.unlink(missing_ok=True)
        return payload

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _lookup(sorted_set: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value: whether it is in the sorted set, and its position there (a binary search each, where
    np.isin would sort ``values``)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values, at


class _Block(NamedTuple):
    """A block the simulation has not handed back yet."""
    first: int                   # gid of its first patient
    n: int
    payload: Any                 # whatever the caller attached (or a _Spilled waiting on disk)
    incidents: np.ndarray        # each patient's incident key
    last_day: int
    first_day: int
    day_of: np.ndarray           # each patient's day


def fp_r2(scenario, front: int) -> list[int]:
    """Holding beds of each Role 2 facility of a front, in the simulation's order (Basic, then Enhanced)."""
    fp = scenario.medical_plan.fronts[front]
    return [fp.r2_basic.holding_beds] * fp.r2_basic.count + [fp.r2_enhanced.holding_beds] * fp.r2_enhanced.count


@dataclass
class Settled:
    """A block whose journeys are all settled: the actual journey and what a planner reads per patient."""

    payload: object              # whatever the caller attached to the block
    journey: Journey
    care: np.ndarray             # (n, 5) start of care at each stage (NA: none)
    operated: np.ndarray         # (n, 5) start of surgery at each stage (NA: none)
    diverted: np.ndarray         # (n, 5) bool: the stage's facility was not the first choice
    wait_min: np.ndarray         # minutes waited for teams, beds, tables and vehicles
    diversions: np.ndarray
    mascal: np.ndarray           # bool: arrived at a first facility in a declared mass-casualty situation
    t1_surgery_wait_min: np.ndarray  # per patient (NaN: not a T1 who was operated)


def _t1_needing_surgery(rows: np.ndarray) -> np.ndarray:
    """T1 casualties whose decisive care is surgery and who do not die at once or before reaching care."""
    return (rows[:, des.TRI] == T1) & (rows[:, des.DKIND] == 1) & ~np.isin(rows[:, des.LKIND], (1, 4))


@dataclass
class Tally:
    """Running counts of settled patients for the capacity report (flat memory: counts and T1 waits only)."""

    outcomes: np.ndarray = field(default_factory=lambda: np.zeros((4, 5), dtype=np.int64))
    outcomes_unconstrained: np.ndarray = field(default_factory=lambda: np.zeros((4, 5), dtype=np.int64))
    patients: int = 0
    waited: int = 0
    waited_hour: int = 0
    wait_min_total: float = 0.0
    diversions: int = 0
    diverted_patients: int = 0
    mascal: int = 0
    t1: int = 0
    t1_reached_surgery_facility: int = 0
    t1_operated: int = 0
    t1_needing_surgery: int = 0
    t1_within_2h: int = 0
    t1_within_2h_unconstrained: int = 0
    t1_waits: list = field(default_factory=list)
    t1_delays: list = field(default_factory=list)
    waiting_at_end: int = 0

    def unconstrained(self, rows: np.ndarray, outcome: np.ndarray) -> None:
        """The same casualties with unlimited care: their outcomes, and T1 surgery on arrival where it is due."""
        np.add.at(self.outcomes_unconstrained, (rows[:, des.CAT], outcome), 1)
        t1 = _t1_needing_surgery(rows)
        self.t1_needing_surgery += int(t1.sum())
        self.t1_within_2h_unconstrained += int((t1 & (rows[:, des.D0] - rows[:, des.T0] <= 7200)).sum())

    def settled(self, r: np.ndarray, j: Journey, t1_wait: np.ndarray) -> None:
        from core.flow import outcomes
        np.add.at(self.outcomes, (r[:, des.CAT], outcomes(j)), 1)
        wait = r[:, des.WTOT]
        self.patients += len(r)
        self.waited += int((wait > 0).sum())
        self.waited_hour += int((wait >= 3600).sum())
        self.wait_min_total += float(wait.sum()) / 60
        self.diversions += int(r[:, des.NDIV].sum())
        self.diverted_patients += int((r[:, des.NDIV] > 0).sum())
        self.mascal += int((r[:, des.MASCAL] == 1).sum())  # arrived while a facility had declared one
        t1 = r[:, des.TRI] == T1
        self.t1 += int(t1.sum())
        fac = r[:, des.AFAC:des.AFAC + 5]
        self.t1_reached_surgery_facility += int((t1 & ((fac == R2) | (fac == R3)).any(axis=1)).sum())
        ot = r[:, des.AOT:des.AOT + 5]
        first_ot = np.where(ot == NA, INT_MAX, ot).min(axis=1)
        operated = t1 & (first_ot < INT_MAX)
        self.t1_operated += int(operated.sum())
        due = _t1_needing_surgery(r) & (first_ot < INT_MAX)
        self.t1_within_2h += int((due & (first_ot - r[:, des.T0] <= 7200)).sum())
        waits = t1_wait[~np.isnan(t1_wait)]
        if len(waits):
            self.t1_waits.append(waits.astype(np.float32))
        if due.any():  # how much later than with unlimited care surgery began
            self.t1_delays.append(((first_ot[due] - r[due, des.D0]) / 60).astype(np.float32))
        self.waiting_at_end += int(((r[:, des.WAITRES] != NA) & (r[:, des.TDIE] == NA)).sum())


@dataclass
class Facility:
    name: str
    role: str
    front: str


RESOURCE_NAMES = {des.K_FIRST: "first care", des.K_OT: "operating tables", des.K_ICU: "ICU beds",
                  des.K_HOLD: "holding beds", des.K_AMBQ: "waiting for an ambulance",
                  des.K_HELIQ: "waiting for a helicopter", des.K_AMB: "ground ambulances",
                  des.K_HELI: "MEDEVAC helicopters", des.K_STRAT: "strategic evacuation seats"}


@dataclass
class Simulation:
    """One run's medical plan at work. Feed blocks in patient order with ``add``; take settled blocks from
    ``settled()``; call ``finish()`` after the last block, then ``settled()`` returns the rest."""

    scenario: object
    plan: MedicalPlan = field(init=False)
    facilities: list[Facility] = field(default_factory=list)
    spill_dir: object = None                          # where blocks waiting for a straggler are kept (else in memory)
    _pending: deque = field(default_factory=deque)   # _Block-s not handed back, in patient order
    # incidents whose flag is known: their keys, sorted, and whether each overwhelmed its first facility
    _incident_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _incident_hit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    _incident_day: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _newest_day: int = -1
    _finished: bool = False
    _next_gid: int = 0
    _oldest: int = 0

    def __post_init__(self):
        sc = self.scenario
        self.plan = sc.medical_plan
        cfg = config()
        self.horizon = (sc.days * 24 + sc.follow_up_h) * 3600
        fronts = [(sc.fronts[i], fp) for i, fp in enumerate(self.plan.fronts)]
        fa, fr = [], []
        start_h = sc.start.hour
        for i, (front, fp) in enumerate(fronts):
            offset = (start_h + front.utc_offset_h) % 24
            fr.append([len(fa), fp.r2_basic.count, fp.r2_enhanced.count, 0, 0, fp.ambulance_litters,
                       fp.helicopter_litters])
            fa.append((R1, i, 0, offset, None))
            self.facilities.append(Facility(f"Role 1 ({front.name})", "R1", front.name))
            for kind, spec, label in ((1, fp.r2_basic, "R2 Basic"), (2, fp.r2_enhanced, "R2 Enhanced")):
                for c in range(spec.count):
                    fa.append((R2, i, kind, offset, spec))
                    self.facilities.append(Facility(f"{label} {c + 1} ({front.name})", "R2", front.name))
        r3_j0 = len(fa)
        for c in range(self.plan.r3.count):
            fa.append((R3, NA, 3, start_h % 24, self.plan.r3))
            self.facilities.append(Facility(f"Role 3 field hospital {c + 1}", "R3", "theatre"))
        nfac = len(fa)
        nres = nfac * des.SLOTS + 2 * len(fronts) + 1
        RS = np.zeros((nres, des.NRS), dtype=np.int64)
        RS[:, des.RS_QH:des.RS_QH + 4] = NA
        RS[:, des.RS_QT:des.RS_QT + 4] = NA
        FA = np.zeros((nfac, des.NFA), dtype=np.int64)
        self.resource_names: list[tuple[int, str]] = []  # (facility or -1, resource) per resource id
        for j, (role, front_i, kind, offset, spec) in enumerate(fa):
            base = j * des.SLOTS
            FA[j] = (role, front_i, kind, base, offset)
            RS[base:base + des.SLOTS, des.RS_KIND] = np.arange(des.SLOTS)
            RS[base:base + des.SLOTS, des.RS_FAC] = j
            if role == R1:
                RS[base + des.K_FIRST, des.RS_CAP] = fronts[front_i][1].r1_teams
            else:
                RS[base + des.K_FIRST, des.RS_CAP] = spec.resuscitation_beds
                RS[base + des.K_OT, des.RS_TABLES] = spec.operating_tables
                RS[base + des.K_OT, des.RS_DAY] = spec.surgical_teams_day
                RS[base + des.K_OT, des.RS_NIGHT] = spec.surgical_teams_night
                RS[base + des.K_OT, des.RS_OFFSET] = offset
                RS[base + des.K_ICU, des.RS_CAP] = spec.icu_beds
                RS[base + des.K_HOLD, des.RS_CAP] = spec.holding_beds
        FR = np.zeros((max(len(fronts), 1), des.NFR), dtype=np.int64)
        for i, (front, fp) in enumerate(fronts):
            amb, heli = nfac * des.SLOTS + 2 * i, nfac * des.SLOTS + 2 * i + 1
            FR[i] = fr[i]
            FR[i, des.FR_AMB], FR[i, des.FR_HELI] = amb, heli
            RS[amb, des.RS_KIND], RS[amb, des.RS_CAP], RS[amb, des.RS_FAC] = des.K_AMB, fp.ground_ambulances, i
            RS[heli, des.RS_KIND], RS[heli, des.RS_CAP], RS[heli, des.RS_FAC] = des.K_HELI, fp.helicopters, i
        strat = nres - 1
        se = self.plan.strategic_evacuation
        RS[strat, des.RS_KIND], RS[strat, des.RS_CAP], RS[strat, des.RS_FAC] = des.K_STRAT, se.seats, NA
        interval = int(round(se.interval_h * 3600))
        day0, day1 = cfg["day_shift_local_h"]
        horizon_h = self.horizon // 3600
        self.bin_s = 3600 * max(1, math.ceil(horizon_h / 1440))  # at most ~1,440 bins per resource
        TH = np.zeros(des.NTH, dtype=np.int64)
        defer = [int(cfg["delayed_surgery_max_wait_h"][t] * 3600) for t in TRIAGES[1:]]
        TH[:] = (r3_j0, self.plan.r3.count, strat, interval, se.seats, self.horizon, day0, day1, self.bin_s,
                 cfg["diversion_queue_factor"], 0, *defer,
                 int(cfg["surgical_recall"]["after_min"] * 60), int(cfg["surgical_recall"]["surgery_h_per_team_per_day"] * 3600))
        self.RS, self.FA, self.FR, self.TH = RS, FA, FR, TH
        self.TS = np.zeros((self.horizon // self.bin_s + 2, nres, 4), dtype=np.int32)
        self.S = np.zeros(des.NS, dtype=np.int64)
        self.STACK = np.zeros(16 * nres + 4096, dtype=np.int64)
        self._alloc(1 << 12)
        for j in range(nfac):  # surgical teams on shift at the start, then at each change of shift
            if FA[j, des.FA_ROLE] != R1:
                des.push(self.H, self.S, 0, des.E_SHIFT, j, 0)
        if interval > 0 and interval <= self.horizon:
            des.push(self.H, self.S, interval, des.E_SORTIE, 0, 0)
        self.tally = Tally()

    # --- memory: rows for the patients in care, and an event heap sized to them ---------------------------
    def _alloc(self, rows: int) -> None:
        P = np.empty((rows, des.NPF), dtype=ROW_TYPE)  # each patient's row is filled when the patient comes in
        # pending events: a patient has at most a few at once (its next step, a deadline or death, a release)
        H = np.empty((4 * rows + 8 * self.RS.shape[0] + 1024, 3), dtype=np.int64)
        if hasattr(self, "P"):  # the live rows, in runs that are contiguous in both rings
            old_mask, g = int(self.S[des.S_MASK]), self._oldest
            while g < self._next_gid:
                a, b = g & old_mask, g & (rows - 1)
                run = min(self._next_gid - g, old_mask + 1 - a, rows - b)
                P[b:b + run] = self.P[a:a + run]
                g += run
            n = self.S[des.S_HN]
            H[:n] = self.H[:n]
        self.P, self.H = P, H
        self.S[des.S_MASK] = rows - 1

    def add(self, rows: np.ndarray, payload, unconstrained_outcomes: np.ndarray | None = None,
            incidents: np.ndarray | None = None, days: np.ndarray | None = None) -> None:
        """Take one block (``inputs`` rows, consecutive patients after the previous block). ``incidents``: each
        patient's incident key (patients of one incident share a mass-casualty flag), ``days``: its day."""
        n = len(rows)
        first = self._next_gid
        need = first + n - self._oldest
        if need > self.P.shape[0]:
            size = self.P.shape[0]
            while size < need:
                size *= 2
            self._alloc(size)
        slots = np.arange(first, first + n) & self.S[des.S_MASK]
        self.P[slots] = NA
        self.P[slots, :N_INPUTS] = np.minimum(rows, ROW_MAX)  # "never" (an untreated death time) as the row's max
        state = self.P[slots]
        for col, value in ((des.STAGE, 0), (des.OSTAGE, 0), (des.HELD, NA), (des.WAITRES, NA), (des.WTOT, 0),
                           (des.NDIV, 0), (des.MASCAL, 0), (des.DECIDED, 0), (des.DONE, 0), (des.OPERATED, 0),
                           (des.MERGED, 0), (des.TERMOUT, 0)):
            state[:, col] = value
        state[:, des.AFAC] = POI
        state[:, des.AARR] = rows[:, des.T0]
        state[:, des.ADIV:des.ADIV + 5] = 0
        instant = rows[:, des.LKIND] == 1
        state[instant, des.TDIE] = rows[instant, des.T0]
        state[instant, des.DONE] = 1
        self.P[slots] = state
        self._next_gid = first + n
        if incidents is None:  # every patient its own incident
            incidents = -1 - np.arange(first, first + n, dtype=np.int64)
        last_day = int(days.max()) if days is not None and n else self._newest_day
        first_day = int(days.min()) if days is not None and n else last_day
        self._newest_day = max(self._newest_day, last_day)
        if self.spill_dir is not None and len(self._pending) >= KEEP_IN_MEMORY:
            payload = _Spilled.write(payload, Path(self.spill_dir), first)
        day_of = (np.asarray(days, dtype=np.int64) if days is not None
                  else np.full(n, last_day, dtype=np.int64))
        self._pending.append(_Block(first, n, payload, np.asarray(incidents, dtype=np.int64), last_day, first_day,
                                    day_of))
        if unconstrained_outcomes is not None:
            self.tally.unconstrained(rows, unconstrained_outcomes)
        des.inject(self.P, self.H, self.S, first, n)
        if n:
            self._advance(int(rows[:, des.T0].max()))

    def _advance(self, until: int) -> None:
        des.advance(self.P, self.RS, self.FA, self.FR, self.TH, self.H, self.S, self.TS, self.STACK, until)
        if self.S[des.S_ERR]:
            raise RuntimeError(f"capacity simulation ran out of room (code {self.S[des.S_ERR]})")

    def discard(self) -> None:
        """Remove the blocks waiting on disk (a run that stops early)."""
        for block in self._pending:
            if isinstance(block.payload, _Spilled):
                block.payload.discard()
        self._pending.clear()

    def finish(self) -> None:
        """After the last block: play the plan to the horizon; whoever is still in care stays there."""
        self._advance(self.horizon + 1)
        des.close_books(self.RS, self.TS, self.TH, self.horizon)
        live = np.arange(self._oldest, self._next_gid) & self.S[des.S_MASK]
        self.P[live, des.DONE] = 1
        self._finished = True

    def settled(self):
        """Blocks whose journeys are all settled and whose incidents' mass-casualty flags are known, in order,
        one at a time (a block waiting on disk is read back only when its turn comes)."""
        while self._pending:
            head = self._pending[0]
            first, n, payload = head.first, head.n, head.payload
            slots = np.arange(first, first + n) & self.S[des.S_MASK]
            if n and not (self.P[slots, des.DONE] == 1).all():
                return
            flags = self._incident_mascal(head)
            if flags is None:
                return
            self._pending.popleft()
            self._oldest = first + n
            if isinstance(payload, _Spilled):
                payload = payload.read()
            yield self._journeys(self.P[slots], payload, flags)

    def _incident_mascal(self, head: _Block) -> np.ndarray | None:
        """Each patient's incident flag: an incident is a mass-casualty one when any of its casualties reached a
        first facility in a declared mass-casualty situation. None while some casualty of these incidents has not
        reached a facility yet (or a later block may still add casualties to them)."""
        incidents, last_day = head.incidents, head.last_day
        here, where = np.unique(incidents, return_index=True)
        unknown = ~self._known_incidents(here)[0]
        todo, todo_day = here[unknown], head.day_of[where[unknown]]  # an incident's casualties share its day
        if len(todo):
            if not self._finished and last_day >= self._newest_day:
                return None  # incidents of this day may go on in the next block
            # the incidents' casualties are in this block and the next ones that reach back to its last day
            # (patients are numbered in order of injury, and an incident's casualties share its day)
            near = [b for b in self._pending if b.first_day <= last_day]
            keys = np.concatenate([b.incidents for b in near])
            gids = np.concatenate([np.arange(b.first, b.first + b.n) for b in near])
            member = _lookup(todo, keys)[0]
            rows = self.P[gids[member] & self.S[des.S_MASK]]
            first_mtf = rows[:, des.FIRSTMTF]
            decided = ((first_mtf != NA) & (first_mtf <= self.S[des.S_CLOCK])) | np.isin(rows[:, des.LKIND], (1, 4))
            if not self._finished and not decided.all():
                return None
            hit = _lookup(np.unique(keys[member][rows[:, des.MASCAL] == 1]), todo)[0]
            merged = np.concatenate([self._incident_keys, todo])
            order = np.argsort(merged, kind="stable")
            self._incident_keys = merged[order]
            self._incident_hit = np.concatenate([self._incident_hit, hit])[order]
            self._incident_day = np.concatenate([self._incident_day, todo_day])[order]
        flags = self._known_incidents(incidents)[1]
        # forget incidents of earlier days: the blocks after this one begin on its last day at the earliest
        keep = self._incident_day >= last_day
        self._incident_keys, self._incident_hit, self._incident_day = (
            self._incident_keys[keep], self._incident_hit[keep], self._incident_day[keep])
        return flags

    def _known_incidents(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each key: whether its incident's flag is known, and the flag (False where not known)."""
        found, at = _lookup(self._incident_keys, keys)
        return found, found & (self._incident_hit[at] if len(self._incident_hit) else found)

    # --- the actual journey as the flow's Journey ---------------------------------------------------------
    def _journeys(self, r: np.ndarray, payload, mascal: np.ndarray) -> Settled:
        r = r.astype(np.int64)
        n = len(r)
        horizon = self.horizon
        fac = r[:, des.AFAC:des.AFAC + 5].copy()
        arr = r[:, des.AARR:des.AARR + 5].copy()
        dep = r[:, des.ADEP:des.ADEP + 5].copy()
        mode = np.where(r[:, des.AMODE:des.AMODE + 5] == NA, 0, r[:, des.AMODE:des.AMODE + 5])
        t_die = np.where(r[:, des.TDIE] == NA, INT_MAX, r[:, des.TDIE])
        termout = r[:, des.TERMOUT]
        terminal = np.select([termout == 1, termout == 2], [EV["rtd"], EV["evacuated"]], 0)
        t_term = np.where(terminal > 0, r[:, des.TTERM], INT_MAX)
        term_stage = np.where(terminal > 0, r[:, des.TERMSTG], NA)
        dies = (t_die <= horizon) & (t_die < t_term)
        natural = (terminal > 0) & ~dies & (t_term <= horizon)
        cutoff = np.where(dies, t_die, np.where(natural, t_term, horizon))
        first_mtf = np.where(r[:, des.FIRSTMTF] == NA, INT_MAX, r[:, des.FIRSTMTF])
        j = Journey(fac, arr, dep, mode, t_die, dies, natural, terminal, t_term, term_stage, cutoff, first_mtf,
                    dies, r[:, des.TKIA], np.zeros(n), r[:, des.XDOW], np.full((n, 5), NA))
        t1_wait = np.where((r[:, des.TRI] == T1) & (r[:, des.SURGWAIT] != NA), r[:, des.SURGWAIT] / 60, np.nan)
        # a diversion counts once the patient arrives (a casualty who died on the way, or is still on the way at
        # the end, has no arrival in the events either)
        diverted = (r[:, des.ADIV:des.ADIV + 5] == 1) & (fac != NA) & (arr <= cutoff[:, None])
        r[:, des.NDIV] = diverted.sum(axis=1)
        self.tally.settled(r, j, t1_wait)
        return Settled(payload, j, r[:, des.ACARE:des.ACARE + 5].copy(), r[:, des.AOT:des.AOT + 5].copy(),
                       diverted, np.round(r[:, des.WTOT] / 60).astype(np.int32),
                       r[:, des.NDIV].astype(np.int8), mascal, t1_wait)

