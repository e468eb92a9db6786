"""When and where casualties happen: a conditional Cox process with incident clusters and exact totals.

docs/casualty-model.md, Arrivals. The plan (exact budgets per category, front, warfare type and day) is small and computed once;
each day's casualties are then drawn from a generator keyed by (seed, day) only, sorted by injury time, and
handed out in patient-id order. Memory is bounded by one day's skeleton (a few bytes per patient).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from core import reference
from core.scenario import Scenario
from core.schema import BI, BSI, CATEGORIES, DIS, NBI, WARFARE_TYPES

DAY_S = 86_400
# event_id stream labels: warfare types for battle incidents, then DNBI streams, then special events
STREAM_LABELS = ("CONV", "ARTY", "URBN", "GUER", "DRON", "NAVL", "CBRN", "PKO", "NBI", "DIS", "BSI",
                 "MASCAL", "OFFENSIVE", "AMBUSH")
SPECIAL_LABEL = {"mass_casualty": 11, "major_offensive": 12, "ambush": 13}
NO_SPECIAL = -1


@dataclass
class Skeleton:
    """Columns of the arrival process for a run of consecutive patients (patient-id order)."""

    time_s: np.ndarray      # int64 seconds after scenario start
    category: np.ndarray    # uint8 index into CATEGORIES
    front: np.ndarray       # uint8 index into scenario.fronts
    warfare: np.ndarray     # uint8 index into WARFARE_TYPES
    stream: np.ndarray      # uint8 index into STREAM_LABELS (event_id)
    day: np.ndarray         # int16, 0-based day of the incident
    incident: np.ndarray    # int32 incident number within (front, stream, day)
    mascal: np.ndarray      # bool
    special: np.ndarray     # int8 index of the special event, or -1

    def __len__(self) -> int:
        return len(self.time_s)

    def slice(self, a: int, b: int) -> "Skeleton":
        return Skeleton(*(getattr(self, f)[a:b] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list["Skeleton"]) -> "Skeleton":
        return Skeleton(*(np.concatenate([getattr(p, f) for p in parts]) for f in Skeleton.__dataclass_fields__))


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (exact, deterministic)."""
    w = np.asarray(weights, dtype=float)
    if total == 0 or w.sum() <= 0:
        return np.zeros(len(w), dtype=np.int64)
    raw = total * w / w.sum()
    base = np.floor(raw).astype(np.int64)
    short = total - int(base.sum())
    if short:
        order = np.argsort(-(raw - base), kind="stable")
        base[order[:short]] += 1
    return base


def hour_profile(spec: dict) -> np.ndarray:
    """24 factors from {"default": x, "ranges": [[first, last, factor], ...]} (inclusive, wrapping)."""
    prof = np.full(24, float(spec["default"]))
    for first, last, factor in spec["ranges"]:
        hours = range(first, last + 1) if first <= last else [*range(first, 24), *range(0, last + 1)]
        prof[list(hours)] = factor
    return prof


def tempo_curve(tempo: str | tuple[float, ...], days: int) -> np.ndarray:
    """Daily tempo factors: anchors spread evenly over normalised time, linear in between."""
    anchors = np.asarray(reference.arrivals()["tempo"][tempo] if isinstance(tempo, str) else tempo, dtype=float)
    k = len(anchors)
    pos = (np.arange(k) + 0.5) / k
    return np.interp((np.arange(days) + 0.5) / days, pos, anchors)


@dataclass
class _Special:
    index: int
    kind: str
    front: int
    day: int
    hour: int
    size: int
    warfare_p: np.ndarray          # probabilities over WARFARE_TYPES


@dataclass
class ArrivalPlan:
    """Exact budgets per stream and day, and everything a day's draw needs."""

    scenario: Scenario
    counts: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)  # (cat, front, warfare|-1) -> per day
    specials: list[_Special] = field(default_factory=list)
    dnbi_type_p: np.ndarray | None = None      # (front, cat, warfare) probabilities for DNBI patients
    env: dict[str, np.ndarray] = field(default_factory=dict)  # per (front, day) environment effects
    warnings: list[str] = field(default_factory=list)

    @property
    def category_counts(self) -> np.ndarray:
        out = np.zeros(4, dtype=np.int64)
        for (c, _, _), per_day in self.counts.items():
            out[c] += per_day.sum()
        for s in self.specials:
            out[BI] += s.size
        return out


def type_weights(sc: Scenario) -> np.ndarray:
    """(front, warfare type) weights: the front's own types when it has them, else the scenario's."""
    w = np.zeros((len(sc.fronts), len(WARFARE_TYPES)))
    for f, front in enumerate(sc.fronts):
        types = front.warfare_types or sc.warfare_types
        for name, share in types.items():
            w[f, WARFARE_TYPES.index(name)] = share
        w[f] /= w[f].sum()
    return w


def tilt_category_mix(sc: Scenario, tw: np.ndarray) -> np.ndarray:
    """p[w, c] per warfare type, tilted by the type's injury modifiers, still meeting the run's mix (§5.7)."""
    tilt = reference.arrivals()["category_tilt"]
    m = np.array([[tilt[w][0], tilt[w][2], tilt[w][1], tilt[w][0]] for w in WARFARE_TYPES])  # BI NBI DIS BSI
    target = np.array([sc.category_mix[c] for c in CATEGORIES])
    share_w = np.array([f.casualty_share for f in sc.fronts]) @ tw
    x = np.where(target > 0, 1.0, 0.0)
    for _ in range(200):
        p = m * x
        p /= np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
        got = share_w @ p
        if np.allclose(got, target, atol=1e-10):
            break
        x = np.where(got > 0, x * target / np.maximum(got, 1e-300), 0.0)
    return p


def environment_effects(sc: Scenario) -> dict[str, np.ndarray]:
    """Per (front, day): visibility, mobility, casualty and disease factors, evacuation delay, NBI shifts."""
    table = reference.arrivals()["environment"]
    nf, nd = len(sc.fronts), sc.days
    eff = {"visibility": np.ones((nf, nd)), "mobility": np.ones((nf, nd)), "casualty": np.ones((nf, nd)),
           "disease": np.ones((nf, nd)), "evac_delay_min": np.zeros((nf, nd)),
           "night_ops": np.zeros((nf, nd), dtype=bool)}
    shifts: dict[str, np.ndarray] = {}
    names = [f.name for f in sc.fronts]
    for env in sc.environment:
        row = table[env.condition]
        fmask = np.ones(nf, dtype=bool) if env.fronts == "all" else np.isin(names, env.fronts)
        dmask = np.ones(nd, dtype=bool)
        if env.days != "all":
            dmask[:] = False
            dmask[env.days[0] - 1:env.days[1]] = True
        mask = fmask[:, None] & dmask[None, :]
        eff["visibility"] = np.where(mask, np.minimum(eff["visibility"], row["visibility"]), eff["visibility"])
        eff["mobility"] = np.where(mask, eff["mobility"] * row["mobility"], eff["mobility"])
        eff["casualty"] = np.where(mask, eff["casualty"] * row["casualty"], eff["casualty"])
        eff["disease"] = np.where(mask, eff["disease"] * row["disease"], eff["disease"])
        if env.condition == "night_operations":
            eff["night_ops"] |= mask  # its delay applies only at night: see flow
        else:
            eff["evac_delay_min"] = np.where(mask, eff["evac_delay_min"] + row["evac_delay_min"],
                                             eff["evac_delay_min"])
        if row["nbi_shift"]:
            mech, share = row["nbi_shift"]
            shifts[mech] = np.maximum(shifts.get(mech, np.zeros((nf, nd))), np.where(mask, share, 0.0))
    eff.update({f"shift_{m}": v for m, v in shifts.items()})
    return eff


def make_plan(sc: Scenario) -> ArrivalPlan:
    cfg = reference.arrivals()
    rng = np.random.default_rng([sc.seed, 0])
    plan = ArrivalPlan(scenario=sc)
    nf, nd = len(sc.fronts), sc.days
    front_share = np.array([f.casualty_share for f in sc.fronts])
    tw = type_weights(sc)
    p_wc = tilt_category_mix(sc, tw)
    plan.env = env = environment_effects(sc)
    cat_n = largest_remainder(sc.patients, np.array([sc.category_mix[c] for c in CATEGORIES]))

    # battle budget per (front, type); DNBI budget per front; DNBI patients' warfare type probabilities
    bi_fw = front_share[:, None] * tw * p_wc[None, :, BI]
    bi_front = largest_remainder(int(cat_n[BI]), bi_fw.sum(axis=1))
    dnbi_fcw = front_share[:, None, None] * tw[:, None, :] * p_wc.T[None, :, :]   # (front, cat, type)
    plan.dnbi_type_p = dnbi_fcw / np.maximum(dnbi_fcw.sum(axis=2, keepdims=True), 1e-300)

    sigma = cfg["intensity"][sc.intensity]["sigma"]
    z = rng.standard_normal((nf, nd))
    noise = np.exp(sigma * z - sigma**2 / 2)
    tempo = tempo_curve(sc.tempo, nd)
    dnbi_tempo = tempo_curve(sc.dnbi_tempo or "sustained", nd)

    # special events: carved out of the front's battle budget first
    bi_left = bi_front.copy()
    for i, ev in enumerate(sc.special_events):
        spec = cfg["special_events"][ev.type]
        f = [x.name for x in sc.fronts].index(ev.front) if ev.front else int(np.argmax(front_share))
        if ev.day is not None:
            day = ev.day - 1
        elif "day" in spec:
            day = min(spec["day"], nd) - 1
        else:
            day = int(rng.integers(0, nd))
        if ev.hour is not None:
            hour = ev.hour
        elif "hour_windows" in spec:
            lo, hi = spec["hour_windows"][int(rng.integers(0, len(spec["hour_windows"])))]
            hour = int(rng.integers(lo, hi + 1))
        else:
            hour = int(rng.integers(spec["hours"][0], spec["hours"][1] + 1))
        if ev.size is not None:
            size = ev.size
        elif ev.size_share is not None:
            size = int(round(ev.size_share * sc.patients))
        elif ev.type == "major_offensive":
            size = int(round(spec["day_bi_share"] * bi_front[f] * tempo[day] / tempo.sum()))
        else:
            lo, hi = spec["size"]
            size = int(rng.integers(lo, hi + 1))
            if "max_day_share" in spec:
                size = min(size, int(spec["max_day_share"] * bi_front[f] * tempo[day] / tempo.sum()))
        if size > bi_left[f]:
            plan.warnings.append(f"special_events[{i}] ({ev.type}) asked for {size} patients; front "
                                 f"'{sc.fronts[f].name}' has {bi_left[f]} battle casualties left, so it has {bi_left[f]}")
            size = int(bi_left[f])
        bi_left[f] -= size
        if size <= 0:
            continue
        wp = np.zeros(len(WARFARE_TYPES))
        if ev.warfare_type:
            wp[WARFARE_TYPES.index(ev.warfare_type)] = 1
        elif "warfare_mix" in spec:
            for name, share in spec["warfare_mix"].items():
                wp[WARFARE_TYPES.index(name)] = share
        else:
            wp[int(np.argmax(bi_fw[f]))] = 1
        plan.specials.append(_Special(index=i, kind=ev.type, front=f, day=day, hour=hour, size=size,
                                      warfare_p=wp / wp.sum()))

    # regular streams: budgets split over days by the Cox weights (multinomial keeps totals exact)
    night_bi = 1.0  # the night-time BI boost moves casualties within a day, not between days
    bi_day_w = tempo[None, :] * env["casualty"] * noise * night_bi
    for f in range(nf):
        per_type = largest_remainder(int(bi_left[f]), bi_fw[f])
        for w in np.flatnonzero(per_type):
            plan.counts[(BI, f, int(w))] = rng.multinomial(per_type[w], bi_day_w[f] / bi_day_w[f].sum())
    dnbi_front = {c: largest_remainder(int(cat_n[c]), dnbi_fcw[:, c, :].sum(axis=1)) for c in (NBI, DIS, BSI)}
    lag = cfg["bsi_lag_weights"]
    for f in range(nf):
        z2 = rng.standard_normal((2, nd))
        quiet = np.exp(sigma / 2 * z2 - (sigma / 2) ** 2 / 2)
        bi_norm = bi_day_w[f] / bi_day_w[f].mean()
        bsi_w = sum(lag[k] * np.concatenate([np.zeros(min(k, nd)), bi_norm[:max(nd - k, 0)]])
                    for k in range(3)) + cfg["bsi_floor"]
        day_w = {NBI: dnbi_tempo * env["casualty"][f] * quiet[0],
                 DIS: dnbi_tempo * env["disease"][f] * quiet[1],
                 BSI: bsi_w}
        for c in (NBI, DIS, BSI):
            if dnbi_front[c][f]:
                plan.counts[(c, f, -1)] = rng.multinomial(dnbi_front[c][f], day_w[c] / day_w[c].sum())
    return plan


class _DayDraw:
    """Draws one day's casualties of every stream (generator keyed by seed and day only)."""

    def __init__(self, plan: ArrivalPlan, day: int):
        self.plan, self.sc, self.day = plan, plan.scenario, day
        self.cfg = reference.arrivals()
        self.rng = np.random.default_rng([self.sc.seed, 1, day])
        self.base = np.asarray(self.cfg["hour_baseline"], dtype=float)
        self.parts: list[Skeleton] = []

    def hour_weights(self, front: int, profile: np.ndarray, replace_baseline: bool = False,
                     battle: bool = False) -> np.ndarray:
        """Weights of the 24 UTC hours of this day for a local-time profile."""
        w = profile if replace_baseline else self.base * profile
        if battle and self.plan.env["night_ops"][front, self.day]:
            night = self.cfg["environment"]["night_operations"]
            w = w * hour_profile({"default": 1.0, "ranges": [[*night["night_bi_hours"], night["night_bi_factor"]]]})
        offset = self.sc.fronts[front].utc_offset_h
        return np.roll(w, -offset)  # local hour h happens at UTC hour h - offset

    def times(self, n: int, hour_w: np.ndarray) -> np.ndarray:
        hours = self.rng.choice(24, size=n, p=hour_w / hour_w.sum())
        return self.day * DAY_S + hours * 3600 + self.rng.integers(0, 3600, size=n)

    def add(self, time_s, cat, front, warfare, stream, incident, mascal, special=NO_SPECIAL) -> None:
        n = len(time_s)
        full = lambda v, dt: np.full(n, v, dtype=dt) if np.isscalar(v) else np.asarray(v, dtype=dt)  # noqa: E731
        self.parts.append(Skeleton(
            time_s=np.asarray(time_s, dtype=np.int64), category=full(cat, np.uint8), front=full(front, np.uint8),
            warfare=full(warfare, np.uint8), stream=full(stream, np.uint8), day=full(self.day, np.int16),
            incident=full(incident, np.int32), mascal=full(mascal, bool), special=full(special, np.int8)))

    def incidents(self, n: int, wspec: dict) -> np.ndarray:
        """Incident sizes summing exactly to n (the last one truncated)."""
        q = min(wspec["cluster_p"] * self.cfg["intensity"][self.sc.intensity]["cluster_factor"],
                self.cfg["cluster_p_cap"])
        g = self.cfg["singleton_group"]
        lo, hi = wspec["cluster_size"]
        sizes = np.where(self.rng.random(n) < q, self.rng.integers(lo, hi + 1, size=n),
                         1 + self.rng.binomial(g["n"], g["p"], size=n))
        if "large_cluster" in wspec:
            big = wspec["large_cluster"]
            llo, lhi = big["size"]
            use = (sizes > 1) & (self.rng.random(n) < big["p"])
            sizes = np.where(use, self.rng.integers(llo, lhi + 1, size=n), sizes)
        cum = np.cumsum(sizes)
        k = int(np.searchsorted(cum, n)) + 1
        sizes = sizes[:k].copy()
        sizes[-1] -= int(cum[k - 1]) - n
        return sizes

    def battle(self, front: int, w: int, n: int) -> None:
        name = WARFARE_TYPES[w]
        wspec = self.cfg["warfare"][name]
        prof = hour_profile(wspec["hours"])
        if "surge" in wspec:
            s = wspec["surge"]
            k = int(self.rng.integers(s["windows"][0], s["windows"][1] + 1))
            for start in self.rng.choice(s["starts"], size=k, replace=False):
                prof[[(start + j) % 24 for j in range(s["length_h"])]] = s["factor"]
        sizes = self.incidents(n, wspec)
        starts = self.times(len(sizes), self.hour_weights(front, prof, wspec.get("replace_baseline", False), True))
        lo, hi = wspec["spread_min"]
        t = np.repeat(starts, sizes) + (self.rng.uniform(lo, hi, size=n) * 60).astype(np.int64)
        self.add(t, BI, front, w, w, np.repeat(np.arange(len(sizes)), sizes),
                 np.repeat(sizes >= self.sc.mascal_threshold, sizes))

    def special(self, s: _Special) -> None:
        spec = self.cfg["special_events"][s.kind]
        offset = self.sc.fronts[s.front].utc_offset_h
        start = self.day * DAY_S + ((s.hour - offset) % 24) * 3600 + int(self.rng.integers(0, 3600))
        t = start + (self.rng.uniform(0, spec["duration_min"], size=s.size) * 60).astype(np.int64)
        warfare = self.rng.choice(len(WARFARE_TYPES), size=s.size, p=s.warfare_p)
        self.add(t, BI, s.front, warfare, SPECIAL_LABEL[s.kind], 0, True, s.index)

    def dnbi(self, front: int, cat: int, n: int) -> None:
        name = CATEGORIES[cat]
        prof = hour_profile(self.cfg["dnbi_hours"][name])
        warfare = self.rng.choice(len(WARFARE_TYPES), size=n, p=self.plan.dnbi_type_p[front, cat])
        incident = np.arange(n, dtype=np.int32)
        mascal = np.zeros(n, dtype=bool)
        t = self.times(n, self.hour_weights(front, prof))
        if cat == DIS:
            ob = self.cfg["outbreak"]
            if n >= ob["size"][0] and self.rng.random() < ob["p_per_front_day"] * self.plan.env["disease"][front, self.day]:
                size = min(n, int(self.rng.integers(ob["size"][0], ob["size"][1] + 1)))
                t[:size] = t[0] + (self.rng.uniform(*ob["spread_min"], size=size) * 60).astype(np.int64)
                incident[:size] = 0
                incident[size:] = np.arange(1, n - size + 1)
        self.add(t, cat, front, warfare, 8 + cat - 1, incident, mascal)

    def draw(self) -> Skeleton:
        for (cat, front, w), per_day in self.plan.counts.items():
            n = int(per_day[self.day])
            if n == 0:
                continue
            if cat == BI:
                self.battle(front, w, n)
            else:
                self.dnbi(front, cat, n)
        for s in self.plan.specials:
            if s.day == self.day:
                self.special(s)
        if not self.parts:
            return _empty()
        sk = Skeleton.concat(self.parts)
        # an incident's spread may not run past the window: reflect it back inside (clipping would pile
        # casualties up on the last second)
        end = self.sc.days * DAY_S - 1
        over = sk.time_s > end
        sk.time_s[over] = np.maximum(2 * end - sk.time_s[over], self.day * DAY_S)
        return _take(sk, np.argsort(sk.time_s, kind="stable"))


def _empty() -> Skeleton:
    return Skeleton(np.zeros(0, np.int64), *(np.zeros(0, dt) for dt in
                                             (np.uint8, np.uint8, np.uint8, np.uint8, np.int16, np.int32, bool, np.int8)))


def _take(sk: Skeleton, order: np.ndarray) -> Skeleton:
    return Skeleton(*(getattr(sk, f)[order] for f in Skeleton.__dataclass_fields__))


def days(plan: ArrivalPlan) -> Iterator[Skeleton]:
    """Each day's casualties, sorted by injury time: concatenated, they are patients 1..N in order."""
    for d in range(plan.scenario.days):
        yield _DayDraw(plan, d).draw()


def blocks(plan: ArrivalPlan, block_size: int) -> Iterator[Skeleton]:
    """The skeleton cut into consecutive blocks of ``block_size`` patients (the last may be shorter)."""
    buf, pos = _empty(), 0
    for sk in days(plan):
        buf, pos = Skeleton.concat([buf.slice(pos, len(buf)), sk]), 0
        while len(buf) - pos >= block_size:
            yield buf.slice(pos, pos + block_size)
            pos += block_size
    if pos < len(buf):
        yield buf.slice(pos, len(buf))
