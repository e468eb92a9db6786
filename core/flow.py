"""How each casualty moves through the chain of care, and what becomes of them (docs/casualty-model.md, Flow and Treatments).

One model: a semi-Markov location process POI -> R1 -> R2 -> R3 -> R4 (routing by facility and triage, dwell
and transit times by posture) competing with a delay-driven death process drawn once at injury. The whole
block moves one stage at a time (at most five), so there is no per-patient Python loop; events, treatments
and vital signs are then emitted column-wise and sorted once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from core import reference
from core.schema import (BI, BSI, CATEGORIES, DIS, EVENT as EV, FACILITIES, MECHANISM, POI, R1, R2, R3, R4, REGIONS,
                         SEVERITIES, TRIAGES)

RTD_NEXT = 5  # routing column order: R1 R2 R3 RTD R4 -> facility or RTD
ROUTE_TO = np.array([R1, R2, R3, RTD_NEXT, R4])
GROUND, AIR = 1, 2
Z90 = 1.2815515655446004
NA = -1


@dataclass(frozen=True)
class Casualties:
    """What the flow needs of each patient of a block, fixed before the flow starts (numpy columns)."""

    category: np.ndarray
    triage: np.ndarray
    severity: np.ndarray
    mechanism: np.ndarray
    region: np.ndarray
    lethal: np.ndarray       # bool: lethal trajectory
    instant: np.ndarray      # bool: dead at the scene
    mascal: np.ndarray       # bool: injured in a mass-casualty incident
    front: np.ndarray
    day: np.ndarray          # 0-based scenario day of the injury
    t0: np.ndarray           # injury, seconds after scenario start
    local_hour: np.ndarray   # hour of day at the front
    fracture: np.ndarray     # bool: primary condition is a fracture
    spinal: np.ndarray       # bool: spinal cord injury
    severe_tbi: np.ndarray   # bool: severe traumatic brain injury
    burn: np.ndarray         # bool: burn mechanism


@dataclass(frozen=True)
class Journey:
    """Where each patient was when, by stage (at most five: POI then up to four facilities), and how it ended.

    Stage arrays are (n, 5) with NA where a stage was not reached; times are seconds after scenario start."""

    fac: np.ndarray          # facility of each stage
    arr: np.ndarray          # arrival at the stage (stage 0: injury)
    dep: np.ndarray          # departure from the stage
    mode: np.ndarray         # evacuation means of the departure (GROUND, AIR)
    t_die: np.ndarray        # time of death (int64 max when not on a lethal course)
    dies: np.ndarray         # bool: dies within the horizon
    natural: np.ndarray      # bool: reaches RTD or R4 within the horizon
    terminal: np.ndarray     # EV["rtd"], EV["evacuated"] or 0
    t_term: np.ndarray       # time of the terminal event
    term_stage: np.ndarray   # stage of the terminal event
    cutoff: np.ndarray       # last time anything is recorded for the patient
    first_mtf: np.ndarray    # arrival at the first medical treatment facility
    doomed: np.ndarray       # bool: will die of wounds (not saved)
    # the draws behind the journey, for the medical plan (core.capacity) to replay it under constraints
    t_kia: np.ndarray        # untreated death time of a lethal course (int64 max when instant)
    salvage_draw: np.ndarray  # the uniform that decided salvage at the first facility
    dow_delay: np.ndarray    # first facility to death of wounds, when not saved
    ground_leg: np.ndarray   # (n, 5): the leg into each stage by road (equal to the leg when driven)


@dataclass(frozen=True)
class Care:
    """When care actually started under a medical plan (core.capacity), per stage (n, 5); NA where none."""

    start: np.ndarray        # first care at the stage (Role 1 team, resuscitation, operating table or bed)
    surgery: np.ndarray      # start of surgery at the stage
    diverted: np.ndarray     # bool: the patient was taken past a saturated facility to this one


SURGERY = "387713003"  # SNOMED CT surgical procedure: under a medical plan it starts when a table is free


@dataclass(frozen=True)
class EventRows:
    """Event rows of a block (sorted by patient, then time) as numpy columns, with per-patient summaries."""

    idx: np.ndarray          # row-local patient index
    time: np.ndarray
    key: np.ndarray          # tie-break order of events at the same second
    fac: np.ndarray
    ev: np.ndarray
    detail: np.ndarray       # index into FlowTables.details
    seq: np.ndarray
    last_time: np.ndarray    # per patient: time of the last event
    last_fac: np.ndarray     # per patient: facility of the last event


@dataclass(frozen=True)
class FlowTables:
    routing: np.ndarray        # (facility POI..R3, triage, 5)
    details: list[str | None]  # event detail vocabulary: index 0 is null
    detail_index: dict[str, int]
    rules: list[dict]


@cache
def tables() -> FlowTables:
    fl = reference.flow()
    r = fl["routing"]
    routing = np.array([[r[f][t] for t in TRIAGES] for f in ("POI", "R1", "R2", "R3")], dtype=float)
    routing /= routing.sum(axis=2, keepdims=True)
    codes = sorted({rule["code"] for rule in fl["treatments"]} | {fl["cpr"]["code"]})
    details = ([None, "ground", "air", "dead_at_scene"] + [f"in_transit:{f}" for f in FACILITIES[1:]] + codes
               + ["diverted"])
    return FlowTables(routing, details, {d: i for i, d in enumerate(details) if d}, fl["treatments"])


def lognormal(rng, med_p90, n: int, scale=1.0) -> np.ndarray:
    """Seconds from a lognormal given in minutes as [median, p90]."""
    med, p90 = med_p90
    sigma = np.log(p90 / med) / Z90
    return (med * 60 * np.exp(sigma * rng.standard_normal(n)) * scale)


def _pick(rng, probs: np.ndarray) -> np.ndarray:
    cum = np.cumsum(probs, axis=1)
    cum /= np.maximum(cum[:, -1:], 1e-300)
    return (rng.random(len(probs))[:, None] >= cum).sum(axis=1)


def simulate(rng: np.random.Generator, scenario, env: dict, p: Casualties) -> Journey:
    """Journey of every patient of a block: stage arrays and the death/terminal times ``emit`` turns into rows."""
    fl = reference.flow()
    t = tables()
    times = fl["times"][scenario.evacuation_posture]
    n = len(p.t0)
    cat, tri = p.category, p.triage
    dnbi_sick = (cat == DIS) | (cat == BSI)
    fac = np.full((n, 5), NA, dtype=np.int64)
    arr = np.full((n, 5), NA, dtype=np.int64)
    dep = np.full((n, 5), NA, dtype=np.int64)
    mode = np.zeros((n, 5), dtype=np.int64)
    fac[:, 0], arr[:, 0] = POI, p.t0
    vis = env["visibility"][p.front, p.day]
    mobility = env["mobility"][p.front, p.day]
    air_ok = vis >= fl["air_min_visibility"]
    air_share = np.array([fl["air_share"][x] for x in TRIAGES])[tri] * times["air_factor"]

    # --- POI: dwell, first destination, transit ------------------------------------------------------
    poi_med = np.array([times["poi_dwell"][x] for x in TRIAGES] + [times["poi_dwell"]["DNBI"]], dtype=float)
    row = np.where(dnbi_sick, 4, tri)
    dwell = _lognormal_rows(rng, poi_med, row)
    delay = env["evac_delay_min"][p.front, p.day] * 60
    night_row = reference.arrivals()["environment"]["night_operations"]
    lo, hi = night_row["night_hours"]
    at_night = (p.local_hour >= lo) | (p.local_hour <= hi)
    delay = delay + np.where(env["night_ops"][p.front, p.day] & at_night, night_row["evac_delay_min"] * 60, 0)
    dwell = (dwell + delay) * np.where(p.mascal, fl["mascal_factor"]["poi"], 1.0)
    onset = fl["cbrn_onset"]
    cbrn = (p.mechanism == MECHANISM["cbrn"]) & ~p.lethal & (rng.random(n) < onset["p"])
    dwell = dwell + np.where(cbrn, rng.choice(onset["delays_h"], size=n) * 3600, 0)
    dep[:, 0] = p.t0 + np.maximum(np.round(dwell), 60).astype(np.int64)

    first = ROUTE_TO[_pick(rng, t.routing[0][tri])]
    first = np.where(dnbi_sick, R1, first)
    by_air_r1 = air_ok & (rng.random(n) < air_share)
    m0 = np.where(first == R1, np.where(by_air_r1, AIR, GROUND), np.where(air_ok, AIR, GROUND))
    base = lognormal(rng, times["poi_r1"], n)
    transit = base / np.where(m0 == GROUND, mobility, 1.0)
    leg12, road12 = _leg(rng, times["r1_r2"], m0, n, times["transit_factor"], mobility)
    leg23, road23 = _leg(rng, times["r2_r3"], m0, n, times["transit_factor"], mobility)
    # a MEDEVAC helicopter flies straight to the Role 2/3 it bypasses to; by road the legs add up
    by_road = transit + np.where(first >= R2, leg12, 0) + np.where(first >= R3, leg23, 0)
    direct = np.where(first == R2, leg12, leg23)
    transit = np.where((first >= R2) & (m0 == AIR), direct, by_road)
    mode[:, 0] = m0
    fac[:, 1] = first
    arr[:, 1] = dep[:, 0] + np.maximum(np.round(transit), 60).astype(np.int64)
    ground_leg = np.full((n, 5), NA, dtype=np.int64)
    road = base / mobility + np.where(first >= R2, road12, 0) + np.where(first >= R3, road23, 0)
    ground_leg[:, 1] = np.maximum(np.round(road), 60).astype(np.int64)

    # --- death process: drawn once, decided against the arrival at the first MTF ----------------------
    mort = fl["mortality"]
    A = arr[:, 1]
    untreated = lognormal(rng, [mort["untreated_death_min"]["median"],
                                mort["untreated_death_min"]["median"] * np.exp(mort["untreated_death_min"]["sigma"] * Z90)], n)
    t_die = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    doomed = p.lethal.copy()
    t_die = np.where(p.instant, p.t0, t_die)
    slow = p.lethal & ~p.instant
    t_kia = p.t0 + np.maximum(np.round(untreated), 1).astype(np.int64)
    before = slow & (t_kia < A)
    t_die = np.where(before, t_kia, t_die)
    reached = slow & ~before
    slack_min = np.maximum(t_kia - A, 0) / 60
    salvage = mort["salvage"]["max"] * (1 - np.exp(-slack_min / mort["salvage"]["scale_min"]))
    salvage_draw = rng.random(n)
    saved = reached & (salvage_draw < salvage)
    doomed &= ~saved
    x = lognormal(rng, mort["dow_after_arrival_min"], n)
    dow_delay = np.maximum(np.round(x), 60).astype(np.int64)
    t_die = np.where(reached & ~saved, A + dow_delay, t_die)

    # --- R1..R3: routing, dwell, onward transit ---------------------------------------------------------
    terminal = np.zeros(n, dtype=np.int64)             # 0 none, EV["rtd"], EV["evacuated"]
    t_term = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    term_stage = np.full(n, NA, dtype=np.int64)
    onward_key = {R1: "r1_onward", R2: "r2_onward", R3: "r3_onward"}
    rtd_key = {R1: "r1_rtd", R2: "r2_rtd", R3: "r3_rtd"}
    for k in range(1, 5):
        here = fac[:, k]
        active = (here >= R1) & (here <= R3)
        if not active.any():
            break
        idx = np.flatnonzero(active)
        f = here[idx]
        probs = t.routing[f, tri[idx]].copy()
        rtd_col = 3
        sick_r1 = (cat[idx] != BI) & (f == R1)  # disease and non-battle injuries: mostly treated forward
        probs[sick_r1, rtd_col] = np.minimum(probs[sick_r1, rtd_col] * fl["dnbi_r1_rtd_factor"], fl["dnbi_r1_rtd_cap"])
        probs[doomed[idx], rtd_col] = 0                       # the dying are not sent back to duty
        serious = (p.spinal[idx] | p.severe_tbi[idx]) & (f == R2)
        probs[serious, rtd_col] = 0
        burn_bypass = p.burn[idx] & (p.severity[idx] >= 2) & (f == R1) & (rng.random(len(idx)) < fl["burn_bypass_r1_p"])
        probs[burn_bypass] = [0, 0, 1, 0, 0]
        probs[probs.sum(axis=1) == 0] = [0, 0, 0, 0, 1]
        nxt = ROUTE_TO[_pick(rng, probs)]
        to_rtd = nxt == RTD_NEXT
        stay = np.zeros(len(idx))
        for fc in (R1, R2, R3):
            sel = f == fc
            if not sel.any():
                continue
            onward = _lognormal_rows(
                rng, np.array([times[onward_key[fc]][x] for x in TRIAGES], dtype=float), tri[idx][sel])
            back = lognormal(rng, times[rtd_key[fc]], sel.sum())
            stay[sel] = np.where(to_rtd[sel], back, onward)
        stay *= np.where(p.mascal[idx] & (f <= R2), fl["mascal_factor"]["r1_r2"], 1.0)
        leave = arr[idx, k] + np.maximum(np.round(stay), 60).astype(np.int64)
        rtd_i = idx[to_rtd]
        terminal[rtd_i], t_term[rtd_i], term_stage[rtd_i] = EV["rtd"], leave[to_rtd], k
        go = ~to_rtd
        gi = idx[go]
        dep[gi, k] = leave[go]
        dest = nxt[go]
        m = np.where(air_ok[gi] & (rng.random(len(gi)) < air_share[gi]), AIR, GROUND)
        m = np.where(dest == R4, AIR, m)
        from_f = f[go]
        leg = np.zeros(len(gi))
        road = np.zeros(len(gi))
        to_r2 = (from_f == R1) & (dest >= R2) & (dest <= R3)
        to_r3 = (from_f <= R2) & (dest == R3)
        flown, driven = _leg(rng, times["r1_r2"], m, len(gi), times["transit_factor"], mobility[gi])
        leg, road = leg + np.where(to_r2, flown, 0), road + np.where(to_r2, driven, 0)
        flown, driven = _leg(rng, times["r2_r3"], m, len(gi), times["transit_factor"], mobility[gi])
        leg, road = leg + np.where(to_r3, flown, 0), road + np.where(to_r3, driven, 0)
        strategic = np.where(dest == R4, lognormal(rng, times["r3_r4"], len(gi)), 0)
        leg, road = leg + strategic, road + strategic
        mode[gi, k] = m
        if k + 1 < 5:
            fac[gi, k + 1] = dest
            arr[gi, k + 1] = leave[go] + np.maximum(np.round(leg), 60).astype(np.int64)
            ground_leg[gi, k + 1] = np.maximum(np.round(road), 60).astype(np.int64)
            r4 = dest == R4
            terminal[gi[r4]], t_term[gi[r4]], term_stage[gi[r4]] = EV["evacuated"], arr[gi[r4], k + 1], k + 1

    horizon = (scenario.days * 24 + scenario.follow_up_h) * 3600
    dies = doomed & (t_die <= horizon) & (t_die < t_term)
    natural = (terminal > 0) & ~dies & (t_term <= horizon)
    cutoff = np.where(dies, t_die, np.where(natural, t_term, horizon))
    return Journey(fac, arr, dep, mode, t_die, dies, natural, terminal, t_term, term_stage, cutoff, A, doomed,
                   np.where(slow, t_kia, np.iinfo(np.int64).max), salvage_draw, dow_delay, ground_leg)


def _lognormal_rows(rng, med_p90_rows: np.ndarray, row: np.ndarray) -> np.ndarray:
    med, p90 = med_p90_rows[row, 0], med_p90_rows[row, 1]
    sigma = np.log(p90 / med) / Z90
    return med * 60 * np.exp(sigma * rng.standard_normal(len(row)))


def _leg(rng, spec: dict, mode: np.ndarray, n: int, factor: float, mobility) -> tuple[np.ndarray, np.ndarray]:
    """The leg by each patient's means, and the same leg by road."""
    ground = lognormal(rng, spec["ground"], n) * factor / mobility
    air = lognormal(rng, spec["air"], n) * factor
    return np.where(mode == AIR, air, ground), ground


def outcomes(s: Journey) -> np.ndarray:
    """Outcome index into schema.OUTCOMES (RTD, KIA, DOW, ROLE4, IN_CARE)."""
    kia = s.dies & (s.t_die < s.first_mtf)
    dow = s.dies & ~kia
    rtd = s.natural & (s.terminal == EV["rtd"])
    role4 = s.natural & (s.terminal == EV["evacuated"])
    return np.select([rtd, kia, dow, role4], [0, 1, 2, 3], default=4)


def emit(rng: np.random.Generator, p: Casualties, s: Journey, care: Care | None = None) -> EventRows:
    """Event rows (sorted by patient, then time) as numpy columns with a row-local patient index.

    With ``care`` (a medical plan), treatments start from when care started rather than from the arrival,
    surgery is recorded when it started, and an arrival past a saturated facility says ``diverted``."""
    t = tables()
    n = len(p.t0)
    fac, arr, dep, mode, cutoff = s.fac, s.arr, s.dep, s.mode, s.cutoff
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("idx", "time", "key", "fac", "ev", "detail")}

    def add(idx, time, key, facility, ev, detail):
        m = len(idx)
        cols["idx"].append(idx)
        cols["time"].append(np.asarray(time, dtype=np.int64))
        cols["key"].append(np.broadcast_to(np.asarray(key, dtype=np.int64), m))
        cols["fac"].append(np.broadcast_to(np.asarray(facility, dtype=np.int64), m))
        cols["ev"].append(np.full(m, ev, dtype=np.int64))
        cols["detail"].append(np.broadcast_to(np.asarray(detail, dtype=np.int64), m))

    all_idx = np.arange(n)
    add(all_idx, p.t0, 0, POI, EV["injury"], 0)
    for k in range(5):
        if k > 0:
            i = np.flatnonzero(fac[:, k] != NA)
            detail = 0 if care is None else np.where(care.diverted[i, k], t.detail_index["diverted"], 0)
            add(i, arr[i, k], 10 * k + 1, fac[i, k], EV["arrival"], detail)
        i = np.flatnonzero(dep[:, k] != NA)
        add(i, dep[i, k], 10 * k + 8, fac[i, k], EV["departure"], mode[i, k])
    _treatments(rng, p, s, add, care)
    if care is not None:
        for k in range(1, 5):
            i = np.flatnonzero(care.surgery[:, k] != NA)
            add(i, care.surgery[i, k], 10 * k + 2, fac[i, k], EV["treatment_start"], t.detail_index[SURGERY])
    # terminal events
    i = np.flatnonzero(s.natural)
    st = s.term_stage[i]
    add(i, s.t_term[i], 10 * st + 9, fac[i, st], s.terminal[i], 0)
    i = np.flatnonzero(s.dies)
    if len(i):
        where, transit_to = death_place(s, i)
        detail = np.where(transit_to != NA, t.detail_index["in_transit:R1"] + transit_to - R1, 0)
        detail = np.where(p.instant[i], t.detail_index["dead_at_scene"], detail)
        add(i, s.t_die[i], 99, where, EV["death"], detail)
        # CPR for deaths that happen at a facility (not in transit, not instant)
        cpr = reference.flow()["cpr"]
        ok = (transit_to == NA) & ~p.instant[i] & (rng.random(len(i)) < cpr["p"])
        j = i[ok]
        stage_start = arr[j, _stage_at(s, j, s.t_die[j])]
        before = (rng.uniform(*cpr["before_death_min"], size=len(j)) * 60).astype(np.int64)
        add(j, np.maximum(s.t_die[j] - before, stage_start), 98, where[ok], EV["treatment_start"],
            t.detail_index[cpr["code"]])

    idx = np.concatenate(cols["idx"])
    time = np.concatenate(cols["time"])
    keep = time <= cutoff[idx]
    ev = np.concatenate(cols["ev"])
    keep |= ev == EV["death"]
    out = {k: np.concatenate(v)[keep] for k, v in cols.items()}
    # one int64 sort key: patient (< 2^24), time in seconds (< 2^32), tie-break key (< 2^7)
    order = np.argsort((out["idx"] << 39) | (out["time"] << 7) | out["key"], kind="stable")
    out = {k: v[order] for k, v in out.items()}
    starts = np.r_[0, np.flatnonzero(np.diff(out["idx"])) + 1]
    counts = np.diff(np.r_[starts, len(out["idx"])])
    last = np.r_[starts[1:] - 1, len(out["idx"]) - 1]
    return EventRows(**out, seq=np.arange(len(out["idx"])) - np.repeat(starts, counts),
                     last_time=out["time"][last], last_fac=out["fac"][last])


def _stage_at(s: Journey, i: np.ndarray, when: np.ndarray) -> np.ndarray:
    """The last stage whose arrival is at or before ``when``."""
    reached = (s.arr[i] != NA) & (s.arr[i] <= when[:, None])
    return reached.shape[1] - 1 - np.argmax(reached[:, ::-1], axis=1)


def death_place(s: Journey, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Facility where each death is recorded, and the destination when it happens in transit (else -1)."""
    when = s.t_die[i]
    k = _stage_at(s, i, when)
    where = s.fac[i, k]
    d = s.dep[i, k]
    in_transit = (d != NA) & (when > d)
    dest = s.fac[i, np.minimum(k + 1, 4)]
    return where, np.where(in_transit, dest, NA)


def _treatments(rng, p: Casualties, s: Journey, add, care: Care | None = None) -> None:
    """Treatments started at each facility, at times inside the stay there (docs/casualty-model.md); under a medical
    plan from when care started, and surgery only as the plan's operating tables gave it."""
    t = tables()
    fac, arr, dep = s.fac, s.arr, s.dep
    n = len(fac)
    rows = np.arange(n)
    for f in range(R4):
        at_f = fac == f                      # a patient is at a given facility in one stage at most
        here = at_f.any(axis=1) & ~p.instant
        k = np.argmax(at_f, axis=1)
        start = arr[rows, k]
        if care is not None and f > POI:
            started = care.start[rows, k]
            here &= started != NA
            start = np.where(started != NA, started, start)
        leave = dep[rows, k]
        end = np.where(leave != NA, leave, np.where(s.term_stage == k, s.t_term, s.cutoff))
        for rule, ok in _rule_masks(p, f):
            if care is not None and rule["code"] == SURGERY and f >= R2:
                continue
            i = np.flatnonzero(here & ok & (rng.random(n) < rule["p"]))
            if not len(i):
                continue
            span = np.minimum(end[i] - start[i], rule["within_min"] * 60)
            when = start[i] + (rng.random(len(i)) * np.maximum(span, 0)).astype(np.int64)
            add(i, when, 10 * k[i] + 2, f, EV["treatment_start"], t.detail_index[rule["code"]])


def _rule_masks(p: Casualties, facility: int):
    """Each treatment rule of a facility with the patients it applies to (lookup tables, no isin)."""
    for rule in tables().rules:
        if FACILITIES.index(rule["at"]) != facility:
            continue
        ok = _lookup(CATEGORIES, rule["categories"])[p.category]
        for key, vocab, col in (("triage", TRIAGES, "triage"), ("regions", REGIONS, "region"),
                                ("severity", SEVERITIES, "severity")):
            if key in rule:
                ok = ok & _lookup(vocab, rule[key])[getattr(p, col)]
        if rule.get("fracture"):
            ok = ok & p.fracture
        yield rule, ok


def _lookup(vocab: tuple, allowed: list) -> np.ndarray:
    return np.isin(np.array(vocab), allowed)
