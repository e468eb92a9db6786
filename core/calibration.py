"""Calibration report: each published target of DOMAIN.md §8.7, the value a run produced, pass or warn.

Counts are accumulated batch by batch while a run is written (memory stays flat, any output format), then
turned into ``calibration.json``. Targets that a scenario does not aim at (e.g. the counter-insurgency
mechanism mix in a conventional war) are reported as ``n/a`` with the reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from core.arrivals import largest_remainder
from core.scenario import Scenario
from core.schema import CATEGORIES, Batch

KIA_TIMING = (0, 10, 60, 120)
EXTREMITY = ("upper_extremity", "lower_extremity")
HEAD_NECK = ("head", "face", "neck")
SURGERY = "387713003"


@dataclass
class Calibration:
    """Running counts over the batches of one run."""

    scenario: Scenario
    c: Counter = field(default_factory=Counter)

    def add(self, batch: Batch) -> None:
        p = batch.patients.select(
            "patient_id", pl.col("category").cast(pl.String), pl.col("mechanism").cast(pl.String),
            pl.col("outcome").cast(pl.String), pl.col("sex").cast(pl.String), pl.col("triage").cast(pl.String),
            "injury_time", "outcome_time")
        c = self.c
        for row in p.group_by("category", "outcome").len().iter_rows():
            c[("outcome", row[0], row[1])] += row[2]
        for row in p.filter(pl.col("category") == "BI").group_by("mechanism").len().iter_rows():
            c[("bi_mech", row[0])] += row[1]
        bi = p.filter(pl.col("category") == "BI")
        c["rtd72"] += bi.filter((pl.col("outcome") == "RTD")
                                & (pl.col("outcome_time") - pl.col("injury_time") <= pl.duration(hours=72))).height
        kia = bi.filter(pl.col("outcome") == "KIA").select(
            m=(pl.col("outcome_time") - pl.col("injury_time")).dt.total_seconds() / 60)["m"]
        for limit in KIA_TIMING:
            c[("kia_within", limit)] += int((kia <= limit).sum())
        bn = p.filter(pl.col("category").is_in(["BI", "NBI"]))
        c["bi_nbi"] += bn.height
        c["bi_nbi_female"] += int((bn["sex"] == "female").sum())
        c["female"] += int((p["sex"] == "female").sum())
        c["patients"] += p.height
        for row in p.group_by("category").len().iter_rows():
            c[("category", row[0])] += row[1]

        cond = batch.conditions.select("patient_id", pl.col("body_region").cast(pl.String)).join(
            p.select("patient_id", "category"), on="patient_id").filter(pl.col("category") == "BI")
        cond = cond.filter(~pl.col("body_region").is_in(["systemic", "multiple"]))  # per wound location, as Owens
        c["bi_conditions"] += cond.height
        c["bi_cond_extremity"] += int(cond["body_region"].is_in(EXTREMITY).sum())
        c["bi_cond_head_neck"] += int(cond["body_region"].is_in(HEAD_NECK).sum())

        e = batch.events.select("patient_id", "time", pl.col("facility").cast(pl.String),
                                pl.col("event").cast(pl.String), "detail")
        adm = (e.filter((pl.col("event") == "arrival") & pl.col("facility").is_in(["R2", "R3"]))
               .select("patient_id").unique().join(p.select("patient_id", "category"), on="patient_id"))
        c["r23_admitted"] += adm.height
        c["r23_dnbi"] += int((adm["category"] != "BI").sum())
        t1 = p.filter((pl.col("category") == "BI") & (pl.col("triage") == "T1")).select("patient_id", "injury_time")
        first_mtf = (e.filter((pl.col("event") == "arrival") & (pl.col("facility") != "POI"))
                     .group_by("patient_id").agg(pl.col("time").min().alias("mtf")))
        t1m = t1.join(first_mtf, on="patient_id", how="left")
        c["t1"] += t1m.height
        c["t1_reached"] += int(t1m["mtf"].is_not_null().sum())
        c["t1_mtf_60"] += _count(t1m, pl.col("mtf") - pl.col("injury_time") <= pl.duration(minutes=60))
        r2 = (e.filter((pl.col("event") == "arrival") & (pl.col("facility") == "R2")).select("patient_id").unique()
              .join(t1, on="patient_id"))
        surg = (e.filter((pl.col("event") == "treatment_start") & (pl.col("detail") == SURGERY))
                .group_by("patient_id").agg(pl.col("time").min().alias("dcs")))
        r2s = r2.join(surg, on="patient_id", how="left")
        c["t1_r2"] += r2s.height
        c["t1_r2_dcs_120"] += _count(r2s, pl.col("dcs") - pl.col("injury_time") <= pl.duration(minutes=120))

    # --- the report --------------------------------------------------------------------------------------
    def report(self) -> dict:
        sc, c = self.scenario, self.c
        out = lambda cat, o: c[("outcome", cat, o)]  # noqa: E731
        bi_n = sum(v for k, v in c.items() if isinstance(k, tuple) and k[0] == "outcome" and k[1] == "BI")
        kia, dow = out("BI", "KIA"), out("BI", "DOW")
        wia = bi_n - kia
        serious = kia + wia - c["rtd72"]
        mech_total = sum(v for k, v in c.items() if isinstance(k, tuple) and k[0] == "bi_mech")
        mech = lambda m: c[("bi_mech", m)] / mech_total if mech_total else None  # noqa: E731
        nbi_n = sum(v for k, v in c.items() if isinstance(k, tuple) and k[0] == "outcome" and k[1] == "NBI")
        ratio = lambda a, b: a / b if b else None  # noqa: E731
        posture = sc.evacuation_posture
        types = set(sc.warfare_types) | {t for f in sc.fronts for t in (f.warfare_types or {})}
        low_bi = sc.category_mix["BI"] <= 0.25 and sc.intensity in ("low", "medium")
        realistic = posture == "realistic"
        why_posture = f"the scenario's evacuation posture is {posture}; the published figure is for realistic"
        rows = [
            _row(1, "Explosive share of battle injuries (counter-insurgency)", mech("explosive"), 0.75, 0.80,
                 "Owens 2008", types == {"guerrilla"}, "only for a guerrilla-only scenario"),
            _row(2, "UAV share of battle injuries (drone warfare)", mech("drone"), 0.70, 0.80,
                 "iStories 2025; Ukraine reports", types == {"drone"}, "only for a drone-only scenario"),
            _row(3, "Extremity share of battle wounds (conditions with a body location)", ratio(c["bi_cond_extremity"], c["bi_conditions"]),
                 0.50, 0.58, "Owens 2008", bi_n > 0, "no battle injuries"),
            _row("3b", "Head, face and neck share of battle wounds",
                 ratio(c["bi_cond_head_neck"], c["bi_conditions"]), 0.25, 0.35, "Owens 2008", bi_n > 0,
                 "no battle injuries"),
            _row(4, "Case fatality rate among battle injuries (CFR)", ratio(kia + dow, bi_n), 0.08, 0.10,
                 "Howard 2019", realistic and bi_n > 0, why_posture),
            _row(5, "%KIA: killed before a medical facility / seriously injured", ratio(kia, serious), 0.09, 0.16,
                 "Kotwal 2016", bi_n > 0, "no battle injuries"),
            _row(6, "%DOW: died of wounds / seriously injured who reached care", ratio(dow, wia - c["rtd72"]),
                 0.02, 0.05, "Kotwal 2016", bi_n > 0, "no battle injuries"),
            _row(7, "Share of battle deaths before a medical facility", ratio(kia, kia + dow), 0.70, 0.90,
                 "Eastridge 2012; Webster; Kotwal 2016", realistic and kia + dow > 0, why_posture),
        ]
        for limit, target in zip(KIA_TIMING, (0.57, 0.68, 0.91, 0.99)):
            rows.append(_row(f"8.{limit}", f"KIA dead within {limit} min of injury" if limit else "KIA dead at once",
                             ratio(c[("kia_within", limit)], kia), target - 0.05, min(target + 0.05, 1.0), "Webster",
                             realistic and kia > 0, why_posture))
        admitted = ratio(c["r23_dnbi"], c["r23_admitted"])
        rows.append(_row(9, "DNBI share of patients admitted to Role 2/3", admitted, *((0.60, 0.80) if low_bi else (0.45, 0.55)),
                         "Zouris 2008", c["r23_admitted"] > 0, "nobody admitted to Role 2/3",
                         note=None if low_bi else "high-intensity scenario: the published 75 % is for sustained "
                                                  "low/medium intensity; 45-55 % expected here"))
        rows.append(_row(10, "Case fatality rate among non-battle injuries", ratio(out("NBI", "KIA") + out("NBI", "DOW"), nbi_n),
                         0.015, 0.035, "JAMA Surg 2019 (derived)", nbi_n >= 200, "fewer than 200 non-battle injuries"))
        rows.append(_row(11, "Battle injuries returned to duty within 72 h", ratio(c["rtd72"], bi_n), 0.15, 0.45,
                         "Owens 2008; Kotwal 2016", bi_n > 0, "no battle injuries"))
        rows.append(_row("12a", "T1 battle casualties at a medical facility within 60 min", ratio(c["t1_mtf_60"], c["t1"]),
                         0.90, 1.0, "AJP-4.10(B) 10-1-2", posture == "doctrinal" and c["t1"] > 0,
                         f"the 10-1-2 line is met under doctrinal evacuation; this scenario is {posture}"))
        rows.append(_row("12b", "T1 reaching Role 2 with surgery within 120 min", ratio(c["t1_r2_dcs_120"], c["t1_r2"]),
                         0.80, 1.0, "AJP-4.10(B) 10-1-2", posture == "doctrinal" and c["t1_r2"] > 0,
                         f"the 10-1-2 line is met under doctrinal evacuation; this scenario is {posture}"))
        rows.append(_row(13, "Women among battle and non-battle injuries", ratio(c["bi_nbi_female"], c["bi_nbi"]),
                         0.03, 0.06, "JAMA Surg 2019", c["bi_nbi"] >= 500, "fewer than 500 BI + NBI casualties"))
        rows.append(_row("13b", "Women among all casualties", ratio(c["female"], c["patients"]), 0.0, 0.15,
                         "JAMA Surg 2019; NATO national reports", c["patients"] > 0, "no patients"))
        expected = largest_remainder(sc.patients, [sc.category_mix[k] for k in CATEGORIES])
        got = [c[("category", k)] for k in CATEGORIES]
        exact = c["patients"] == sc.patients and list(map(int, expected)) == got
        rows.append({"id": "14", "metric": "Exact counts: patients and category split", "value": c["patients"],
                     "low": sc.patients, "high": sc.patients, "source": "data contract",
                     "status": "pass" if exact else "warn",
                     "note": f"categories {dict(zip(CATEGORIES, got))}, expected {dict(zip(CATEGORIES, map(int, expected)))}"})
        passed = sum(r["status"] == "pass" for r in rows)
        warned = sum(r["status"] == "warn" for r in rows)
        return {"scenario": sc.name, "patients": c["patients"], "evacuation_posture": posture,
                "summary": {"pass": passed, "warn": warned, "n/a": len(rows) - passed - warned}, "targets": rows}


def _count(df: pl.DataFrame, condition: pl.Expr) -> int:
    return int(df.select(condition.fill_null(False).sum()).item())


def _row(rid, metric, value, low, high, source, applies, why_not, note=None) -> dict:
    if not applies or value is None:
        status, note = "n/a", why_not if not applies else "no data"
    else:
        status = "pass" if low - 1e-9 <= value <= high + 1e-9 else "warn"
    return {"id": str(rid), "metric": metric, "value": None if value is None else round(float(value), 4),
            "low": low, "high": high, "source": source, "status": status, "note": note}


def calibrate(scenario: Scenario, batches) -> dict:
    """The report for a stream of batches (e.g. ``generator.stream(scenario)``)."""
    cal = Calibration(scenario)
    for b in batches:
        cal.add(b)
    return cal.report()


def format_report(report: dict) -> str:
    lines = [f"Calibration of '{report['scenario']}' ({report['patients']:,} patients, "
             f"{report['evacuation_posture']} evacuation): {report['summary']['pass']} pass, "
             f"{report['summary']['warn']} warn, {report['summary']['n/a']} n/a"]
    for r in report["targets"]:
        value = "-" if r["value"] is None else (f"{r['value']:.1%}" if r["value"] <= 1 and r["id"] != "14" else f"{r['value']:,}")
        target = (f"{r['low']:.1%}–{r['high']:.1%}" if r["id"] != "14" else f"{r['low']:,}")
        lines.append(f"  {r['status']:<5} {r['id']:>5} {r['metric']:<62} {value:>9}  target {target:<13} {r['source']}")
        if r["note"] and r["status"] != "pass":
            lines.append(f"{'':14}{r['note']}")
    return "\n".join(lines)
