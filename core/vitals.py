"""Vital signs at first assessment and on each arrival at a facility (docs/casualty-model.md, Vital signs).

Values follow the first triage and the primary condition, then move towards the normal (T3) band along the
journey; a patient who dies of wounds has a last set in the expectant (T4) band. Whole block at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from core import reference
from core.schema import CATEGORIES, MECHANISMS, REGIONS, VITAL_CODES

HR, RR, SBP, DBP_RATIO, SPO2, TEMP, GCS = range(7)


@dataclass(frozen=True)
class Measurements:
    """Long-format vital-sign rows of a block: 7 consecutive rows (VITAL_CODES order) per measurement set."""

    idx: np.ndarray      # row-local patient index
    time: np.ndarray     # seconds after scenario start
    fac: np.ndarray      # index into FACILITIES
    code: np.ndarray     # index into VITAL_CODES
    value: np.ndarray
LIMITS = np.array([[0, 250], [0, 80], [0, 300], [0, 200], [0, 100], [25, 43], [3, 15]], dtype=float)


@cache
def _bands() -> np.ndarray:
    return np.array([reference.vitals()["bands"][t] for t in ("T1", "T2", "T3", "T4")], dtype=float)  # (4, 7, 2)


def _draw(rng, band_rows: np.ndarray) -> np.ndarray:
    lo, hi = band_rows[..., 0], band_rows[..., 1]
    return lo + rng.random(lo.shape) * (hi - lo)


def first_set(rng, p, code: pl.Series) -> np.ndarray:
    """(n, 7) values at first medical contact, from the triage band and the condition's modifiers."""
    cfg = reference.vitals()
    n = len(p.triage)
    v = _draw(rng, _bands()[p.triage])
    t1 = p.triage == 0
    brady = t1 & (rng.random(n) < cfg["t1_bradypnoea_p"])
    v[brady, RR] = rng.uniform(*cfg["t1_bradypnoea"], size=brady.sum())
    # SpO2 below 90 only with a thoracic, airway, inhalation or CBRN injury, or when expectant
    low_ok = (np.isin(p.region, [REGIONS.index(r) for r in cfg["low_spo2_regions"]])
              | np.isin(p.mechanism, [MECHANISMS.index(m) for m in cfg["low_spo2_mechanisms"]])
              | (p.triage == 3))
    v[:, SPO2] = np.where(low_ok, v[:, SPO2], np.maximum(v[:, SPO2], rng.uniform(90, 94, n)))
    for name, mod in cfg["modifiers"].items():
        if "codes" in mod:
            hit = code.is_in(mod["codes"]).to_numpy()
        else:
            hit = np.isin(p.category, [CATEGORIES.index(c) for c in mod["categories"]])
        k = int(hit.sum())
        if not k:
            continue
        if "temp" in mod:
            v[hit, TEMP] = rng.uniform(*mod["temp"], size=k)
        if "hr_add" in mod:
            v[hit, HR] += rng.uniform(*mod["hr_add"], size=k)
        if "sbp_add" in mod:
            v[hit, SBP] += rng.uniform(*mod["sbp_add"], size=k)
        if "gcs" in mod:
            v[hit, GCS] = np.minimum(v[hit, GCS], rng.uniform(mod["gcs"][0], mod["gcs"][1] + 0.999, size=k))
        if "hr" in mod:
            v[hit, HR] = rng.uniform(*mod["hr"], size=k)
        if "rr" in mod:
            v[hit, RR] = rng.uniform(*mod["rr"], size=k)
        if mod.get("others_normal"):
            normal = _draw(rng, _bands()[np.full(k, 2)])
            for col in (SBP, DBP_RATIO, SPO2, TEMP, GCS):
                v[hit, col] = normal[:, col]
    # haemorrhagic shock: every injured T1 has a shock index (HR / SBP) above 1
    injured_t1 = t1 & (p.category <= 1)
    v[:, HR] = np.where(injured_t1, np.maximum(v[:, HR], v[:, SBP] * rng.uniform(1.05, 1.4, n)), v[:, HR])
    return v


def measurements(rng, p, s, code: pl.Series) -> Measurements:
    """``p`` is a block's flow.Casualties, ``s`` its flow.Journey."""
    cfg = reference.vitals()
    n = len(p.t0)
    arr, fac, cutoff = s.arr, s.fac, s.cutoff
    # assessment times: the medic at POI a few minutes after injury, then every arrival that happened
    assess = p.t0 + (rng.uniform(*cfg["poi_assessment_min"], size=n) * 60).astype(np.int64)
    dep0 = np.where(s.dep[:, 0] >= 0, s.dep[:, 0], cutoff)
    poi_time = np.minimum(np.minimum(assess, dep0), cutoff)
    poi_ok = ~p.instant & ((assess <= cutoff) | ~s.dies)
    stage_ok = (fac >= 0) & (arr <= cutoff[:, None])
    stage_ok[:, 0] = poi_ok
    times = arr.copy()
    times[:, 0] = poi_time
    # progress towards the normal band after j stages
    base = first_set(rng, p, code)
    target = _draw(rng, _bands()[np.full(n, 2)])
    f = rng.uniform(*cfg["recovery_fraction"], size=n)
    idx, stage = np.nonzero(stage_ok)
    frac = 1 - (1 - f[idx]) ** stage
    vals = base[idx] + frac[:, None] * (target[idx] - base[idx])
    # the last set before death of wounds shows the expectant picture
    last_stage = stage_ok.shape[1] - 1 - np.argmax(stage_ok[:, ::-1], axis=1)
    dying = s.dies[idx] & (stage == last_stage[idx]) & (stage > 0)
    if dying.any():
        vals[dying] = _draw(rng, _bands()[np.full(int(dying.sum()), 3)])
    vals[:, SBP] = np.clip(vals[:, SBP], *LIMITS[SBP])
    dbp = vals[:, SBP] * vals[:, DBP_RATIO]
    out = np.column_stack([vals[:, HR], vals[:, RR], vals[:, SBP], dbp, vals[:, SPO2], vals[:, TEMP], vals[:, GCS]])
    out = np.clip(out, LIMITS[:, 0], LIMITS[:, 1])
    out[:, [HR, RR, SBP, 3, SPO2, GCS]] = np.round(out[:, [HR, RR, SBP, 3, SPO2, GCS]])
    out[:, TEMP] = np.round(out[:, TEMP], 1)
    k = len(VITAL_CODES)
    return Measurements(np.repeat(idx, k), np.repeat(times[idx, stage], k), np.repeat(fac[idx, stage], k),
                        np.tile(np.arange(k), len(idx)), out.reshape(-1))
