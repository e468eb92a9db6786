"""What a planner reads of a run with a medical plan (docs/capacity.md): the capacity report, its flat figures
for replications, the load of every facility and resource over time, and a one-screen text version.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from core.capacity import des
from core.capacity.model import RESOURCE_NAMES, Simulation
from core.schema import CATEGORIES, OUTCOMES

KIA, DOW = OUTCOMES.index("KIA"), OUTCOMES.index("DOW")
# what each kind of resource counts, for a reader
UNITS = {des.K_FIRST: "teams", des.K_OT: "tables", des.K_ICU: "beds", des.K_HOLD: "beds", des.K_AMB: "vehicles",
         des.K_HELI: "helicopters", des.K_STRAT: "seats per sortie", des.K_AMBQ: "", des.K_HELIQ: ""}
VERDICTS = {"holds": "The plan holds", "strained": "The plan is strained", "overwhelmed": "The plan is overwhelmed"}


def _resource_label(kind: int, role: str) -> str:
    if kind == des.K_FIRST:
        return "treatment teams" if role == "R1" else "resuscitation beds"
    return RESOURCE_NAMES[kind]


def resources(sim: Simulation) -> list[dict]:
    """One row per facility resource and vehicle pool that exists or was used."""
    RS, rows = sim.RS, []
    nfac = len(sim.facilities)
    fronts = [f.name for f in sim.scenario.fronts]
    for r in range(RS.shape[0]):
        kind = int(RS[r, des.RS_KIND])
        if r < nfac * des.SLOTS:
            fac = sim.facilities[r // des.SLOTS]
            facility, role, front = fac.name, fac.role, fac.front
        elif kind == des.K_STRAT:
            facility, role, front = "Strategic aeromedical evacuation", "R4", "theatre"
        else:
            front = fronts[int(RS[r, des.RS_FAC])]
            facility, role = f"{'Ambulances' if kind == des.K_AMB else 'Helicopters'} ({front})", "evacuation"
        queue_only = kind in (des.K_AMBQ, des.K_HELIQ)
        capacity = int(RS[r, des.RS_TABLES] if kind == des.K_OT else RS[r, des.RS_CAP])
        if queue_only and not RS[r, des.RS_SERVED]:
            continue
        if not queue_only and capacity == 0 and not RS[r, des.RS_SERVED]:
            continue  # not part of this facility (a Role 1 has no operating table) or an empty pool
        served = int(RS[r, des.RS_SERVED])
        cap_time = int(RS[r, des.RS_CAPINT])
        rows.append({
            "facility": facility, "role": role, "front": front, "resource": _resource_label(kind, role),
            "kind": kind, "capacity": None if queue_only else capacity, "unit": UNITS[kind],
            "peak": None if queue_only else int(RS[r, des.RS_PEAK]),
            "hours_at_capacity": None if queue_only else round(int(RS[r, des.RS_FULLT]) / 3600, 1),
            "longest_queue": int(RS[r, des.RS_MAXQ]),
            "utilisation": None if queue_only or not cap_time else round(int(RS[r, des.RS_BUSYINT]) / cap_time, 4),
            "served": served,
            "mean_wait_min": round(int(RS[r, des.RS_WAITSUM]) / served / 60, 1) if served else 0.0,
            "teams_called_in": int(RS[r, des.RS_CALLS]) if kind == des.K_OT else None,
            "_id": r,
        })
    return rows


def report(sim: Simulation) -> dict:
    """The capacity report of a finished simulation (capacity.json)."""
    sc, t, cfg = sim.scenario, sim.tally, _verdict_rules()
    deaths = lambda m: {"KIA": int(m[:, KIA].sum()), "DOW": int(m[:, DOW].sum()),  # noqa: E731
                        "total": int(m[:, KIA].sum() + m[:, DOW].sum())}
    constrained, free = deaths(t.outcomes), deaths(t.outcomes_unconstrained)
    attributable = {k: constrained[k] - free[k] for k in constrained}
    by_category = {c: int(t.outcomes[i, KIA] + t.outcomes[i, DOW] - t.outcomes_unconstrained[i, KIA]
                          - t.outcomes_unconstrained[i, DOW]) for i, c in enumerate(CATEGORIES)}
    waits = np.concatenate(t.t1_waits) if t.t1_waits else np.zeros(0, dtype=np.float32)
    delays = np.concatenate(t.t1_delays) if t.t1_delays else np.zeros(0, dtype=np.float32)
    pct = lambda a, q: round(float(np.percentile(a, q)), 1) if len(a) else None  # noqa: E731
    share = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    res = resources(sim)
    horizon_h = sim.horizon / 3600
    busiest = max((r for r in res if r["hours_at_capacity"] is not None and r["kind"] != des.K_STRAT),
                  key=lambda r: r["hours_at_capacity"], default=None)
    waited_hour = share(t.waited_hour, t.patients) or 0.0
    at_end = share(t.waiting_at_end, t.patients) or 0.0
    full_share = (busiest["hours_at_capacity"] / horizon_h) if busiest else 0.0
    costly = attributable["total"] >= max(3, cfg["overwhelmed_attributable_death_share"] * free["total"])
    if (waited_hour >= cfg["overwhelmed_waited_hour_share"] or at_end >= cfg["overwhelmed_waiting_at_end_share"]
            or costly):
        verdict = "overwhelmed"
    elif (waited_hour >= cfg["strained_waited_hour_share"] or full_share >= cfg["strained_full_time_share"]
          or attributable["total"] >= cfg["strained_attributable_deaths"]):
        verdict = "strained"
    else:
        verdict = "holds"
    out = {
        "scenario": sc.name, "patients": t.patients, "seed": sc.seed, "verdict": verdict,
        "deaths": {"with_plan": constrained, "unconstrained": free, "attributable_to_capacity": attributable,
                   "attributable_by_category": by_category},
        "t1_surgery": {
            "t1_patients": t.t1, "reached_role2_or_3": t.t1_reached_surgery_facility, "operated": t.t1_operated,
            "wait_median_min": pct(waits, 50), "wait_p90_min": pct(waits, 90),
            "delay_median_min": pct(delays, 50), "delay_p90_min": pct(delays, 90), "delay_max_min": pct(delays, 100),
            "needing_surgery": t.t1_needing_surgery,
            "within_2h_of_injury": share(t.t1_within_2h, t.t1_needing_surgery),
            "within_2h_of_injury_unconstrained": share(t.t1_within_2h_unconstrained, t.t1_needing_surgery)},
        "waiting": {"patients_waited": t.waited, "waited_1h_or_more": t.waited_hour,
                    "share_waited_1h_or_more": share(t.waited_hour, t.patients),
                    "mean_wait_min": round(t.wait_min_total / t.patients, 1) if t.patients else None,
                    "still_waiting_at_end": t.waiting_at_end, "diversions": t.diversions,
                    "patients_diverted": t.diverted_patients, "mass_casualty_patients": t.mascal},
        "surgical_teams_called_in": sum(r["teams_called_in"] or 0 for r in res),
        "resources": [{k: v for k, v in r.items() if not k.startswith("_") and k != "kind"} for r in res],
    }
    out["summary"] = _summary(out, busiest, horizon_h)
    return out


def _verdict_rules() -> dict:
    from core.capacity.plan import config
    return config()["verdict"]


def _duration(minutes: float) -> str:
    """Minutes as a reader takes them in: "45 min", "2.5 hours", "13 hours"."""
    if round(minutes) < 120:
        return f"{minutes:,.0f} min"
    hours = round(minutes / 60, 1)
    return f"{hours:,.1f} hours" if hours < 10 else f"{hours:,.0f} hours"


def _summary(rep: dict, busiest: dict | None, horizon_h: float) -> str:
    d, w, s = rep["deaths"], rep["waiting"], rep["t1_surgery"]
    parts = [f"{VERDICTS[rep['verdict']]}."]
    if w["share_waited_1h_or_more"]:
        parts.append(f"{w['share_waited_1h_or_more']:.0%} of casualties waited an hour or more for care or "
                     f"transport.")
    if w["still_waiting_at_end"]:
        parts.append(f"{w['still_waiting_at_end']:,} were still waiting when the scenario ended.")
    if busiest and busiest["hours_at_capacity"]:
        parts.append(f"Busiest: {busiest['resource']} at {busiest['facility']}, full for "
                     f"{busiest['hours_at_capacity']:,.0f} of {horizon_h:,.0f} hours.")
    if rep["surgical_teams_called_in"]:
        n = rep["surgical_teams_called_in"]
        parts.append(f"Off-shift surgical teams were called in {n:,} time{'s' if n != 1 else ''} for T1 casualties.")
    if s["delay_p90_min"]:
        parts.append(f"One T1 casualty in ten reached surgery {_duration(s['delay_p90_min'])} or more later than "
                     f"with unlimited care.")
    att = d["attributable_to_capacity"]["total"]
    parts.append(f"Deaths attributable to capacity: {att:+,d} against the same casualties with unlimited care."
                 if att else "No deaths attributable to capacity.")
    return " ".join(parts)


def figures(rep: dict) -> dict[str, tuple[float | None, str]]:
    """The report's figures as one flat mapping name -> (value, unit), unit one of share, count, min, h."""
    d, s, w = rep["deaths"], rep["t1_surgery"], rep["waiting"]
    out = {"Deaths attributable to capacity": (d["attributable_to_capacity"]["total"], "count"),
           "DOW attributable to capacity": (d["attributable_to_capacity"]["DOW"], "count"),
           "KIA attributable to capacity": (d["attributable_to_capacity"]["KIA"], "count"),
           "KIA with the plan": (d["with_plan"]["KIA"], "count"),
           "DOW with the plan": (d["with_plan"]["DOW"], "count"),
           "T1 wait for surgery, median": (s["wait_median_min"], "min"),
           "T1 wait for surgery, 90th percentile": (s["wait_p90_min"], "min"),
           "T1 surgery later than with unlimited care, median": (s["delay_median_min"], "min"),
           "T1 surgery later than with unlimited care, 90th percentile": (s["delay_p90_min"], "min"),
           "T1 surgery later than with unlimited care, longest": (s.get("delay_max_min"), "min"),
           "T1 operated within 2 h of injury": (s["within_2h_of_injury"], "share"),
           "T1 operated within 2 h of injury, unlimited care": (s["within_2h_of_injury_unconstrained"], "share"),
           "Casualties who waited 1 h or more": (w["share_waited_1h_or_more"], "share"),
           "Diversions": (w["diversions"], "count"),
           "Surgical teams called in": (rep["surgical_teams_called_in"], "count"),
           "Still waiting at the end": (w["still_waiting_at_end"], "count")}
    for r in rep["resources"]:
        key = f"{r['resource']} at {r['facility']}"
        if r["capacity"]:
            out[f"Peak occupancy: {key}"] = (r["peak"] / r["capacity"], "share")
            out[f"Hours at capacity: {key}"] = (r["hours_at_capacity"], "h")
        out[f"Longest queue: {key}"] = (r["longest_queue"], "count")
    return out


LOAD_PIECE_ROWS = 500_000  # rows of the load table built at a time


def load_table(sim: Simulation) -> pl.DataFrame:
    """Load of every facility resource and vehicle pool over scenario time (see ``load_pieces``), whole."""
    return pl.concat(list(load_pieces(sim)))


def load_pieces(sim: Simulation):
    """The load table in pieces of whole resources: one row per resource and time bin (time, front, facility,
    role, resource, capacity, mean and peak occupancy, longest queue). Names are Enums gathered from one small
    series (written as plain strings); operating-table capacity per bin follows the surgical shifts and the teams called in."""
    res = resources(sim)
    width = sim.bin_s
    nbins = sim.horizon // width + 1
    start_us = int(sim.scenario.start.timestamp()) * 1_000_000
    times = start_us + np.arange(nbins, dtype=np.int64) * width * 1_000_000
    enums = {key: pl.Enum(list(dict.fromkeys(r[key] for r in res)) or [""])
             for key in ("front", "facility", "role", "resource")}
    step = max(1, LOAD_PIECE_ROWS // nbins)
    for lo in range(0, max(len(res), 1), step):
        part = res[lo:lo + step]
        yield _load_piece(sim, part, nbins, width, times, enums)


def _load_piece(sim: Simulation, res: list[dict], nbins: int, width: int, times: np.ndarray, enums: dict):
    n = len(res)
    ids = np.array([r["_id"] for r in res], dtype=np.int64)
    ts = sim.TS[:nbins, ids].transpose(1, 0, 2)
    capacity = np.array([r["capacity"] if r["capacity"] is not None else 0 for r in res], dtype=np.int64)
    cap = np.repeat(capacity[:, None], nbins, axis=1)
    ot = np.flatnonzero([r["kind"] == des.K_OT for r in res])
    if len(ot):  # operating tables follow the surgical teams on shift (local day and night)
        RS, FA, TH = sim.RS, sim.FA, sim.TH
        rid = ids[ot]
        offset = FA[rid // des.SLOTS, des.FA_OFFSET][:, None]
        hour = ((np.arange(nbins) * width // 3600)[None, :] + offset) % 24
        day = (hour >= TH[des.TH_DAYSTART]) & (hour < TH[des.TH_DAYEND])
        teams = np.where(day, RS[rid, des.RS_DAY][:, None], RS[rid, des.RS_NIGHT][:, None])
        # plus the most off-shift teams called in at work in the bin; an operation that has begun is finished by
        # its team, so a table in use past the end of a shift still has one
        cap[ot] = np.maximum(np.minimum(RS[rid, des.RS_TABLES][:, None], teams + ts[ot, :, 3]), ts[ot, :, 1])
    row = np.repeat(np.arange(n), nbins)

    def labels(key: str) -> pl.Series:
        return pl.Series([r[key] for r in res], dtype=enums[key]).gather(row)

    queue_only = np.array([r["capacity"] is None for r in res], dtype=bool)[row]
    return pl.DataFrame({
        "time": pl.Series(np.tile(times, n)).cast(pl.Datetime("us", "UTC")),
        "front": labels("front"), "facility": labels("facility"), "role": labels("role"),
        "resource": labels("resource"),
        "capacity": pl.Series(cap.reshape(-1).astype(np.int32)).scatter(np.flatnonzero(queue_only), None),
        "occupancy_mean": np.round(ts[:, :, 0].reshape(-1).astype(np.float64) / width, 3),
        "occupancy_peak": ts[:, :, 1].reshape(-1).astype(np.int32),
        "queue_peak": ts[:, :, 2].reshape(-1).astype(np.int32),
    })


def format_report(rep: dict) -> str:
    """The capacity report on one screen (CLI summary)."""
    d, s, w = rep["deaths"], rep["t1_surgery"], rep["waiting"]
    fmt_min = lambda v: "-" if v is None else f"{v:,.0f} min"  # noqa: E731
    share_txt = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    lines = [rep["summary"],
             f"  deaths with the plan: KIA {d['with_plan']['KIA']:,}, DOW {d['with_plan']['DOW']:,}; with unlimited "
             f"care: KIA {d['unconstrained']['KIA']:,}, DOW {d['unconstrained']['DOW']:,}; attributable to capacity "
             f"{d['attributable_to_capacity']['total']:+,d}",
             f"  T1 surgery: {s['operated']:,} operated; wait for a table median {fmt_min(s['wait_median_min'])}, "
             f"90th percentile {fmt_min(s['wait_p90_min'])}; later than with unlimited care: median "
             f"{fmt_min(s['delay_median_min'])}, 90th percentile {fmt_min(s['delay_p90_min'])}, longest "
             f"{fmt_min(s.get('delay_max_min'))}; within 2 h of injury "
             f"{share_txt(s['within_2h_of_injury'])} (with unlimited care "
             f"{share_txt(s['within_2h_of_injury_unconstrained'])})",
             f"  waiting: {w['patients_waited']:,} casualties waited, {w['waited_1h_or_more']:,} for an hour or more; "
             f"{w['diversions']:,} diversions; {w['mass_casualty_patients']:,} arrived in a declared mass-casualty "
             f"situation; off-shift surgical teams called in {rep['surgical_teams_called_in']:,} times",
             f"  {'facility':<38} {'resource':<28} {'capacity':>9} {'peak':>5} {'h full':>7} {'queue':>6} {'use':>5}"]
    for r in rep["resources"]:
        cap = "" if r["capacity"] is None else f"{r['capacity']:,}"
        peak = "" if r["peak"] is None else f"{r['peak']:,}"
        full = "" if r["hours_at_capacity"] is None else f"{r['hours_at_capacity']:,.0f}"
        use = "" if r["utilisation"] is None else f"{r['utilisation']:.0%}"
        lines.append(f"  {r['facility'][:38]:<38} {r['resource'][:28]:<28} {cap:>9} {peak:>5} {full:>7} "
                     f"{r['longest_queue']:>6,} {use:>5}")
    return "\n".join(lines)
