"""What happened to each casualty: mechanism, body region, polytrauma, severity, coded conditions, triage,
and whether the injury is on a lethal trajectory (docs/casualty-model.md: Injuries, Coded conditions, Triage, Mortality).

One direction only: category -> mechanism -> polytrauma -> region -> severity -> conditions -> triage;
nothing drawn later overwrites an earlier column. Everything is drawn for the whole block at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from core import reference
from core.demographics import draw_rows
from core.schema import (BI, BI_MECHANISMS, BSI, CATEGORIES, DIS, MECHANISM as MECH, MECHANISMS, NBI,
                         NBI_MECHANISMS, REGION as REG, REGIONS, SEVERITIES, TRIAGES, WARFARE_TYPES)

NONE = MECH["none"]
MULTIPLE, SYSTEMIC = REG["multiple"], REG["systemic"]
EXTREMITIES = (REG["upper_extremity"], REG["lower_extremity"])


@dataclass(frozen=True)
class Injuries:
    """What happened to each patient of a block (numpy columns of vocabulary codes, patient order)."""

    mechanism: np.ndarray        # index into MECHANISMS
    body_region: np.ndarray      # index into REGIONS (primary condition)
    polytrauma: np.ndarray       # bool
    severity: np.ndarray         # index into SEVERITIES
    triage: np.ndarray           # index into TRIAGES
    condition_code: pl.Series    # SNOMED CT code of the primary condition
    lethal: np.ndarray           # bool: on a lethal trajectory (drawn once, at injury)
    instant: np.ndarray          # bool: dead at the scene


@dataclass(frozen=True)
class Conditions:
    """The conditions table of a block: one row per coded condition, primary first per patient."""

    idx: np.ndarray              # row-local patient index
    code: pl.Series
    body_region: np.ndarray
    severity: np.ndarray


@dataclass(frozen=True)
class Tables:
    bi_mech: np.ndarray          # (warfare, BI mechanism index in MECHANISMS space) probabilities
    nbi_mech: np.ndarray         # (len(MECHANISMS),)
    region_poly: np.ndarray      # (mechanism, region) for polytrauma patients
    region_single: np.ndarray    # (mechanism, region) otherwise
    region_secondary: np.ndarray  # (mechanism, region) for secondary injuries
    repeat_region: np.ndarray    # (mechanism,) secondary injuries may share the primary region
    poly: np.ndarray             # (mechanism, 4): P(poly), mean if poly, mean otherwise, max
    severity: np.ndarray         # (category, 4)
    codes: pl.Series             # flat candidate codes
    cand_off: np.ndarray         # (category-group, mechanism, region, severity) -> offset into codes
    cand_len: np.ndarray
    dis_codes: list[str]
    dis_region: np.ndarray
    dis_w: np.ndarray            # (2, n): all severities / severe and critical
    bsi_codes: list[str]
    bsi_w: np.ndarray
    como: dict                   # category -> (codes, regions, weights)
    triage: np.ndarray           # (mascal, severity, 4)
    lethal: np.ndarray           # (category, severity)


@cache
def tables() -> Tables:
    inj, fl = reference.injuries(), reference.flow()
    nm = len(MECHANISMS)
    cols = inj["bi_mechanism"]["_columns"]
    bi_mech = np.zeros((len(WARFARE_TYPES), nm))
    for w, name in enumerate(WARFARE_TYPES):
        for j, mech in enumerate(cols):
            bi_mech[w, MECH[mech]] = inj["bi_mechanism"][name][j]
    bi_mech /= bi_mech.sum(axis=1, keepdims=True)
    nbi_mech = np.zeros(nm)
    for mech, share in inj["nbi_mechanism"].items():
        nbi_mech[MECH[mech]] = share
    nbi_mech /= nbi_mech.sum()

    reg_rows = inj["region_by_mechanism"]
    region = np.zeros((nm, len(REGIONS)))
    for mech, row in reg_rows.items():
        if not mech.startswith("_"):
            region[MECH[mech]] = row
    region[NONE, SYSTEMIC] = 1.0  # DIS/BSI regions come from the condition, see below
    poly = np.zeros((nm, 4))
    for mech, row in inj["polytrauma"].items():
        if not mech.startswith("_"):
            poly[MECH[mech]] = row
    # P(multiple | poly) carries the whole 'multiple' share; single injuries never get 'multiple'
    p_poly = np.maximum(poly[:, 0], 1e-12)
    mult = region[:, MULTIPLE] / np.maximum(region.sum(axis=1), 1e-12)
    others = region.copy()
    others[:, MULTIPLE] = 0
    others /= np.maximum(others.sum(axis=1, keepdims=True), 1e-12)
    m_poly = np.minimum(mult / p_poly, 1.0)
    region_poly = others * (1 - m_poly)[:, None]
    region_poly[:, MULTIPLE] = m_poly
    secondary = others.copy()
    secondary[:, SYSTEMIC] = 0
    repeat_region = np.zeros(nm, dtype=bool)   # may a secondary injury hit the primary region again?
    for mech, row in inj["secondary_region_by_mechanism"].items():
        if not mech.startswith("_"):
            secondary[MECH[mech]] = row
            repeat_region[MECH[mech]] = True
    sec_ok = secondary.sum(axis=1) > 0
    secondary[sec_ok] /= secondary[sec_ok].sum(axis=1, keepdims=True)

    sev = np.array([inj["severity"][c] for c in CATEGORIES], dtype=float)
    sev /= sev.sum(axis=1, keepdims=True)

    # candidate primary codes per (mechanism, region, severity): codes whose severity range fits, else the
    # region's generic code; NBI crush/burn use their own NBI lists
    code_sev = inj["code_severity"]
    groups, gmap, override = inj["codes_by_group"], inj["mechanism_group"], inj["nbi_group_override"]
    flat: list[str] = []
    off = np.zeros((2, nm, len(REGIONS), 4), dtype=np.int64)
    length = np.zeros_like(off)
    for battle in (0, 1):
        for mech, mi in MECH.items():
            if mech == "none":
                continue
            group = gmap[mech] if battle else override.get(mech, gmap[mech])
            for region_name, ri in REG.items():
                listed = groups.get(group, {}).get(region_name, [])
                for s in range(4):
                    fits = [c for c in listed if code_sev[c][0] <= s <= code_sev[c][1]]
                    fits = fits or [inj["generic_by_region"][region_name]]
                    off[battle, mi, ri, s], length[battle, mi, ri, s] = len(flat), len(fits)
                    flat.extend(fits)

    dis = {k: v for k, v in inj["disease"].items() if not k.startswith("_")}
    dis_codes = list(dis)
    dis_w = np.array([[dis[c][1] for c in dis_codes],
                      [dis[c][1] if c in inj["disease_severe_codes"] else 0 for c in dis_codes]], dtype=float)
    bsi_codes = list(inj["bsi"])
    como = {}
    for cat, table in inj["comorbidity"].items():
        codes = list(table)
        como[CATEGORIES.index(cat)] = (codes, np.array([REG[table[c][0]] for c in codes]),
                                       np.array([table[c][1] for c in codes], dtype=float))
    tri = np.array([[inj["triage"][k][s] for s in SEVERITIES] for k in ("normal", "mascal")], dtype=float)
    lethal = np.array([fl["mortality"]["lethal"][c] for c in CATEGORIES], dtype=float)
    return Tables(bi_mech, nbi_mech, region_poly, others, secondary, repeat_region, poly, sev, pl.Series(flat, dtype=pl.String),
                  off, length, dis_codes, np.array([REG[dis[c][0]] for c in dis_codes]), dis_w, bsi_codes,
                  np.array([inj["bsi"][c] for c in bsi_codes], dtype=float), como, tri, lethal)


def _pick_codes(rng, t: Tables, battle, mech, region, sev) -> pl.Series:
    off, length = t.cand_off[battle, mech, region, sev], t.cand_len[battle, mech, region, sev]
    return t.codes.gather(off + (rng.random(len(off)) * length).astype(np.int64))


def draw(rng: np.random.Generator, scenario, category: np.ndarray, warfare: np.ndarray, front: np.ndarray,
         day: np.ndarray, mascal: np.ndarray, env: dict) -> tuple[Injuries, Conditions]:
    """Patient injury columns and the conditions table columns (with row-local patient index ``idx``)."""
    t = tables()
    n = len(category)
    is_bi, is_nbi = category == BI, category == NBI
    is_dis, is_bsi = category == DIS, category == BSI

    # mechanism: battle by warfare type, non-battle by the base mix shifted by the environment (§3.7)
    mech = np.full(n, NONE, dtype=np.int64)
    mech[is_bi] = draw_rows(rng, t.bi_mech, warfare[is_bi])
    nbi_idx = np.flatnonzero(is_nbi)
    mech[nbi_idx] = draw_rows(rng, t.nbi_mech[None, :], np.zeros(len(nbi_idx), dtype=np.int64))
    u = rng.random(len(nbi_idx))
    for key, share in env.items():
        if key.startswith("shift_"):
            hit = u < share[front[nbi_idx], day[nbi_idx]]
            mech[nbi_idx[hit]] = MECH[key[6:]]
            u = np.where(hit, 2.0, u)  # one shift per patient at most

    # polytrauma, then the primary region
    p = t.poly[mech]
    polytrauma = rng.random(n) < p[:, 0]
    region = np.where(polytrauma, draw_rows(rng, t.region_poly, mech), draw_rows(rng, t.region_single, mech))

    # severity by category; polytrauma moves battle injuries one step up with p 0.5
    sev = draw_rows(rng, t.severity, category)
    step = is_bi & polytrauma & (rng.random(n) < reference.injuries()["severity"]["polytrauma_step_up_p"])
    sev = np.minimum(sev + step, 3)

    # primary condition
    code = pl.Series(np.full(n, "", dtype=object), dtype=pl.String)
    inj_idx = np.flatnonzero(is_bi | is_nbi)
    picked = _pick_codes(rng, t, is_bi[inj_idx].astype(np.int64), mech[inj_idx], region[inj_idx], sev[inj_idx])
    codes = [(inj_idx, picked)]
    dis_idx = np.flatnonzero(is_dis)
    dsel = draw_rows(rng, t.dis_w, (sev[dis_idx] >= 2).astype(np.int64))
    region[dis_idx] = t.dis_region[dsel]
    codes.append((dis_idx, pl.Series(t.dis_codes, dtype=pl.String).gather(dsel)))
    bsi_idx = np.flatnonzero(is_bsi)
    bsel = draw_rows(rng, t.bsi_w[None, :], np.zeros(len(bsi_idx), dtype=np.int64))
    region[bsi_idx] = SYSTEMIC
    codes.append((bsi_idx, pl.Series(t.bsi_codes, dtype=pl.String).gather(bsel)))
    code = _scatter(n, codes)

    # triage from severity (MASCAL table in mass-casualty incidents), category rules, scenario overrides
    tri = draw_rows(rng, t.triage.reshape(8, 4), mascal.astype(np.int64) * 4 + sev)
    tri = np.where((is_dis | is_bsi) & (tri == 3), 0, tri)
    tri = np.where(is_bsi & ((sev >= 2) | (tri == 0)), 1, tri)  # battle stress is never immediate (T1)
    for key, shares in scenario.triage_override.items():
        hit = (category == CATEGORIES.index(key)) if key in CATEGORIES else (mech == MECH[key])
        k = np.flatnonzero(hit)
        row = np.array([[shares[x] for x in TRIAGES]])
        tri[k] = draw_rows(rng, row, np.zeros(len(k), dtype=np.int64))

    # lethal trajectory (drawn once, at injury) and instant death (dead at the scene: T4)
    mort = reference.flow()["mortality"]
    quality = np.where(sev >= 2, scenario.care_quality, 1.0)
    lethal = rng.random(n) < np.minimum(t.lethal[category, sev] * quality, 1.0)
    instant = lethal & (rng.random(n) < mort["instant_share"]) & (is_bi | is_nbi)
    tri = np.where(instant, 3, tri)

    cond = _conditions(rng, t, category, mech, region, sev, polytrauma, warfare, code)
    return Injuries(mech, region, polytrauma, sev, tri, code, lethal, instant), cond


def _scatter(n: int, parts: list[tuple[np.ndarray, pl.Series]]) -> pl.Series:
    """Put each part's values at its row positions: one gather from the concatenation."""
    idx = np.concatenate([p[0] for p in parts])
    values = pl.concat([p[1] for p in parts])
    order = np.empty(n, dtype=np.int64)
    order[idx] = np.arange(n)
    return values.gather(order)


def _conditions(rng, t: Tables, category, mech, region, sev, polytrauma, warfare, primary: pl.Series) -> Conditions:
    inj = reference.injuries()
    sec = inj["secondary"]
    n = len(category)
    p = t.poly[mech]
    mean = np.where(polytrauma, p[:, 1], p[:, 2])
    count = rng.poisson(mean) + polytrauma
    count = np.minimum(count, p[:, 3].astype(np.int64))
    injured = (category == BI) | (category == NBI)
    count = np.where(injured & (t.region_secondary[mech].sum(axis=1) == 0), 0, count)  # e.g. heat: no second region

    rows_idx = [np.arange(n)]
    rows_code = [primary]
    rows_region = [region]
    rows_sev = [sev]

    # secondary injuries: a region other than the primary one, severity up to the primary's
    k_inj = np.where(injured, count, 0)
    sidx = np.repeat(np.arange(n), k_inj)
    if len(sidx):
        probs = t.region_secondary[mech[sidx]].copy()
        other = ~t.repeat_region[mech[sidx]]
        probs[np.flatnonzero(other), region[sidx[other]]] = 0
        empty = probs.sum(axis=1) == 0
        probs[empty] = t.region_secondary[mech[sidx[empty]]]
        u = rng.random(len(sidx))
        cum = np.cumsum(probs, axis=1)
        cum /= cum[:, -1:]
        sreg = (u[:, None] >= cum).sum(axis=1)
        ssev = np.floor(rng.random(len(sidx)) * (sev[sidx] + 1)).astype(np.int64)
        rows_idx.append(sidx)
        rows_code.append(_pick_codes(rng, t, (category[sidx] == BI).astype(np.int64), mech[sidx], sreg, ssev))
        rows_region.append(sreg)
        rows_sev.append(ssev)

    # comorbidities of disease and battle stress
    for cat, (codes, regions, weights) in t.como.items():
        cidx = np.repeat(np.arange(n), np.where(category == cat, count, 0))
        if len(cidx):
            sel = rng.choice(len(codes), size=len(cidx), p=weights / weights.sum())
            rows_idx.append(cidx)
            rows_code.append(pl.Series(codes, dtype=pl.String).gather(sel))
            rows_region.append(regions[sel])
            rows_sev.append(np.zeros(len(cidx), dtype=np.int64))

    def add(mask: np.ndarray, code: str | pl.Series, reg: int, s: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            rows_idx.append(idx)
            rows_code.append(code if isinstance(code, pl.Series) else pl.Series([code] * len(idx), dtype=pl.String))
            rows_region.append(np.full(len(idx), reg))
            rows_sev.append(s[idx] if len(s) == n else s)

    blast = (mech == MECH["explosive"]) | (mech == MECH["drone"])
    add(blast & (rng.random(n) < sec["blast_acoustic"]["p"]), sec["blast_acoustic"]["code"], REG["face"],
        np.zeros(n, dtype=np.int64))
    burn = mech == MECH["burn"]
    depth = np.array([sec["burn_depth"][s] for s in SEVERITIES])
    bidx = np.flatnonzero(burn)
    if len(bidx):
        rows_idx.append(bidx)
        rows_code.append(pl.Series(depth[sev[bidx]], dtype=pl.String))
        rows_region.append(region[bidx])
        rows_sev.append(sev[bidx])
    shock_regions = np.isin(region, [REG[r] for r in sec["shock"]["regions"]])
    add(injured & (sev == 3) & shock_regions & (rng.random(n) < sec["shock"]["p_critical"]),
        sec["shock"]["code"], SYSTEMIC, sev)
    add(injured & (sev >= 2) & (region == REG["thorax"]) & (primary != sec["tension_pneumothorax"]["code"]).to_numpy()
        & (rng.random(n) < sec["tension_pneumothorax"]["p"]), sec["tension_pneumothorax"]["code"], REG["thorax"], sev)
    naval = (category == BI) & (warfare == WARFARE_TYPES.index("naval")) & (rng.random(n) < sec["naval_immersion"]["p"])
    nidx = np.flatnonzero(naval)
    if len(nidx):
        pick = rng.integers(0, 2, len(nidx))
        add(naval, pl.Series(np.array(sec["naval_immersion"]["codes"])[pick], dtype=pl.String), SYSTEMIC, sev)
    add((mech == MECH["heat"]) & (rng.random(n) < sec["heat_dehydration"]["p"]), sec["heat_dehydration"]["code"],
        SYSTEMIC, np.zeros(n, dtype=np.int64))

    idx = np.concatenate(rows_idx)
    frame = pl.DataFrame({
        "idx": idx,
        "code": pl.concat(rows_code),
        "body_region": np.concatenate(rows_region).astype(np.int64),
        "severity": np.concatenate(rows_sev).astype(np.int64),
        "primary": np.concatenate([np.ones(n, dtype=bool), np.zeros(len(idx) - n, dtype=bool)]),
    })
    # one row per (patient, code, region); primary first, secondaries in drawing order
    frame = (frame.with_row_index("order")
             .unique(subset=["idx", "code", "body_region"], keep="first", maintain_order=True)
             .sort(["idx", "primary", "order"], descending=[False, True, False]))
    return Conditions(frame["idx"].to_numpy(), frame["code"], frame["body_region"].to_numpy(),
                      frame["severity"].to_numpy())


__all__ = ["draw", "tables", "Injuries", "Conditions", "BI_MECHANISMS", "NBI_MECHANISMS"]
