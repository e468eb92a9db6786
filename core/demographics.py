"""Who the casualties are: nationality, sex, rank, age, birth date, blood group, name, service number.

docs/casualty-model.md, Demographics. Column-wise: every draw is one numpy call over the block; names come from per-nation pools
(core/reference_data/names, built from Faker's locale data) gathered by index in one polars call.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from core import reference
from core.schema import BLOOD_GROUPS, CATEGORIES, RANKS

SN_DIGITS = 10**8  # service numbers: nation prefix + 8 digits + Luhn check digit; unique for N <= 10^8


def draw_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per element of ``rows`` from the probability row ``probs[rows]``."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(rows))
    return (u[:, None] >= cum[rows]).sum(axis=1)


@dataclass(frozen=True)
class NameTable:
    """All name pools of the scenario's nations in two flat polars Series, indexed by (nation, pool, sex)."""

    given: pl.Series
    family: pl.Series
    pool_p: np.ndarray          # (nation, pool) weights, rows sum to 1
    given_off: np.ndarray       # (nation, pool, sex) start in ``given``
    given_len: np.ndarray
    family_off: np.ndarray
    family_len: np.ndarray


@cache
def name_table(nations: tuple[str, ...]) -> NameTable:
    pools = [reference.name_pools(n)["pools"] for n in nations]
    width = max(len(p) for p in pools)
    shape = (len(nations), width, 2)
    pool_p = np.zeros(shape[:2])
    offs = {k: np.zeros(shape, dtype=np.int64) for k in ("go", "gl", "fo", "fl")}
    given: list[str] = []
    family: list[str] = []
    for i, nation_pools in enumerate(pools):
        for j, pool in enumerate(nation_pools):
            pool_p[i, j] = pool["weight"]
            for s, sex in enumerate(("male", "female")):
                offs["go"][i, j, s], offs["gl"][i, j, s] = len(given), len(pool[f"{sex}_given"])
                given.extend(pool[f"{sex}_given"])
                offs["fo"][i, j, s], offs["fl"][i, j, s] = len(family), len(pool[f"{sex}_family"])
                family.extend(pool[f"{sex}_family"])
    pool_p /= pool_p.sum(axis=1, keepdims=True)
    return NameTable(pl.Series(given, dtype=pl.String), pl.Series(family, dtype=pl.String), pool_p,
                     offs["go"], offs["gl"], offs["fo"], offs["fl"])


@cache
def _static_tables() -> dict:
    data = reference.nations_file()
    ranks = data["ranks"]
    rank_p = np.array([[ranks[r][0] for r in RANKS], [ranks[r][1] for r in RANKS]], dtype=float)
    ages = np.array([[ranks[r][2], ranks[r][3]] for r in RANKS], dtype=float)
    bg = data["blood_groups"]
    order = [bg["_columns"].index(g) for g in BLOOD_GROUPS]  # file order -> contract order
    rows = {k: np.array(v, dtype=float)[order] for k, v in bg.items() if not k.startswith("_")}
    rr = np.array([data["female_relative_risk"][c] for c in CATEGORIES])
    return {"rank_p": rank_p / rank_p.sum(axis=1, keepdims=True), "ages": ages, "blood": rows, "rr": rr}


def _feistel(x: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of 0..10^8-1 (four Feistel rounds on two 4-digit halves)."""
    left, right = x // 10_000, x % 10_000
    for k in keys:
        mixed = ((right.astype(np.uint64) ^ np.uint64(k)) * np.uint64(2654435761)) >> np.uint64(7)
        left, right = right, (left + (mixed % np.uint64(10_000)).astype(np.int64)) % 10_000
    return left * 10_000 + right


def _luhn(num: np.ndarray, digits: int) -> np.ndarray:
    total = np.zeros(len(num), dtype=np.int64)
    for pos in range(digits):  # pos 0 is the rightmost digit, doubled first (check digit goes to its right)
        d = (num // 10**pos) % 10
        if pos % 2 == 0:
            d = d * 2
            d = np.where(d > 9, d - 9, d)
        total += d
    return (10 - total % 10) % 10


def service_numbers(seed: int, patient_id: np.ndarray, nationality: pl.Series) -> pl.Series:
    """Unique, nation-prefixed, synthetic (never a civilian ID format): e.g. POL48291037-5."""
    keys = np.random.default_rng([seed, 9]).integers(1, 2**32, size=4)
    digits = _feistel((patient_id - 1) % SN_DIGITS, keys)
    check = _luhn(digits, 8)
    frame = pl.DataFrame({"n": nationality, "d": digits, "c": check})
    return frame.select(pl.format("{}{}-{}", "n", pl.col("d").cast(pl.String).str.zfill(8), "c")).to_series()


@dataclass(frozen=True)
class Demographics:
    """Who each patient of a block is (columns in patient order; codes index the schema vocabularies)."""

    service_number: pl.Series
    given_name: pl.Series
    family_name: pl.Series
    sex: np.ndarray            # index into SEXES
    birth_date: np.ndarray     # datetime64[D]
    age: np.ndarray            # int16, whole years at injury
    nationality: pl.Series     # ISO 3166-1 alpha-3
    rank: np.ndarray           # index into RANKS
    blood_group: np.ndarray    # index into BLOOD_GROUPS


def draw(rng: np.random.Generator, scenario, nations: tuple[str, ...], patient_id: np.ndarray,
         front: np.ndarray, category: np.ndarray, injury_s: np.ndarray) -> "Demographics":
    """Demographic columns for one block. ``nations`` is the scenario's sorted nation list."""
    n = len(patient_id)
    t = _static_tables()
    # nationality from the front's mix
    mix = np.array([[f.nationality_mix.get(c, 0.0) for c in nations] for f in scenario.fronts])
    nat = draw_rows(rng, mix, front)
    # sex: the nation's female share x the category's relative risk
    fem_pct = np.array([reference.nation(c)["female_pct"] for c in nations]) / 100
    female = rng.random(n) < fem_pct[nat] * t["rr"][category]
    # rank by battle / non-battle mix, then age from the rank's triangular range
    rank = draw_rows(rng, t["rank_p"], (category != 0).astype(np.int64))
    lo, hi = t["ages"][rank, 0], t["ages"][rank, 1]
    age = np.clip(np.floor(rng.triangular(lo, lo + 0.3 * (hi - lo), hi + 0.999)), 18, 65).astype(np.int64)
    # birth date: a day of the year before the last birthday, so the age at injury is exact
    injury_day = (np.datetime64(scenario.start.date(), "D") + (injury_s // 86_400)).astype("datetime64[D]")
    birth = injury_day - np.round((age + rng.uniform(0.01, 0.99, n)) * 365.2425).astype("timedelta64[D]")
    age = _exact_age(birth, injury_day)
    # blood group by the nation's population frequencies
    blood_rows = np.array([t["blood"][reference.nation(c)["blood_row"]] for c in nations])
    blood = draw_rows(rng, blood_rows, nat)
    # names: pool (language) by weight, then given and family name of the patient's sex
    names = name_table(nations)
    pool = draw_rows(rng, names.pool_p, nat)
    sex = female.astype(np.int64)
    gi = names.given_off[nat, pool, sex] + (rng.random(n) * names.given_len[nat, pool, sex]).astype(np.int64)
    fi = names.family_off[nat, pool, sex] + (rng.random(n) * names.family_len[nat, pool, sex]).astype(np.int64)
    nationality = pl.Series(nations, dtype=pl.String).gather(nat)
    return Demographics(service_numbers(scenario.seed, patient_id, nationality), names.given.gather(gi),
                        names.family.gather(fi), sex, birth, age.astype(np.int16), nationality, rank, blood)


def _exact_age(birth: np.ndarray, on: np.ndarray) -> np.ndarray:
    def ymd(d):
        y = d.astype("datetime64[Y]")
        m = d.astype("datetime64[M]")
        return y.astype(np.int64), (m - y.astype("datetime64[M]")).astype(np.int64), (d - m.astype("datetime64[D]")).astype(np.int64)
    by, bm, bd = ymd(birth)
    oy, om, od = ymd(on)
    before_birthday = (om < bm) | ((om == bm) & (od < bd))
    return oy - by - before_birthday
