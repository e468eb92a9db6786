"""The medical plan at work (core.capacity): queueing rules on hand-made casualties whose answer can be computed,
a plan's validation, the runs it produces, and the sanity anchors of docs/capacity.md."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core import generator
from core.capacity import des
from core.capacity.model import N_INPUTS, Simulation
from core.capacity.report import load_table, report
from core.scenario import Scenario, ScenarioError, preset
from core.schema import PATIENTS_WITH_PLAN

MIN = 60
NA = -1
ROOT = Path(__file__).resolve().parents[1]


def facility(count=1, tables=1, resus=10, icu=10, hold=10, day=1, night=1):
    return {"count": count, "operating_tables": tables, "resuscitation_beds": resus, "icu_beds": icu,
            "holding_beds": hold, "surgical_teams_day": day, "surgical_teams_night": night}


def scenario(front=None, r3=None, strategic=None, **extra) -> Scenario:
    plan = {"fronts": {"North": {"r1_teams": 1, "r2_basic": facility(count=0), "r2_enhanced": facility(),
                                 "ground_ambulances": 5, "ambulance_litters": 1, "helicopters": 0,
                                 **(front or {})}},
            "r3": r3 or facility(tables=4, resus=50, icu=50, hold=100, day=4, night=4),
            "strategic_evacuation": strategic or {"interval_h": 0, "seats": 40}}
    return Scenario.from_dict({"name": "hand-made", "patients": 10, "days": 2, "follow_up_h": 48,
                               "start": "2025-06-01T00:00:00Z", "special_events": [], "environment": [],
                               "fronts": [{"name": "North", "casualty_share": 1, "nationality_mix": {"USA": 1}}],
                               "medical_plan": plan, **extra})


def casualty(gid, *, t0=0, poi_dep=None, stages=(2,), dwell=(600,), legs=(30 * MIN,), term=1, tri=0, cat=0,
             surgery=0, resus=0, icu=0, postop=0, r1=10 * MIN, lethal=0, t_kia=None, budget=0, d0=None, dkind=0,
             x_dow=8 * 3600):
    """One row of the simulation's input: stages are the roles of stages 1.. (2 = Role 2), each with its
    intended stay and the leg into it; ``term`` 1 returns to duty at the end of the last stage, 2 reaches Role 4."""
    row = np.full(N_INPUTS, NA, dtype=np.int64)
    row[des.GID], row[des.FRONT], row[des.TRI], row[des.CAT] = gid, 0, tri, cat
    row[des.T0] = t0
    row[des.POIDEP] = t0 + 5 * MIN if poi_dep is None else poi_dep
    row[des.FAC:des.FAC + 4] = NA
    row[des.DWELL:des.DWELL + 4] = 0
    row[des.MODE:des.MODE + 4] = 0
    row[des.LEG:des.LEG + 4] = 0
    row[des.LEGG:des.LEGG + 4] = 0
    for k, (role, stay, leg) in enumerate(zip(stages, dwell, legs)):
        row[des.FAC + k], row[des.DWELL + k], row[des.MODE + k] = role, stay, des.GROUND
        row[des.LEG + k] = row[des.LEGG + k] = leg
    row[des.TERM], row[des.TERMSTAGE] = term, len(stages)
    row[des.LKIND] = lethal
    row[des.TKIA] = t_kia if t_kia is not None else np.iinfo(np.int64).max
    row[des.BUDGET], row[des.XDOW] = budget, x_dow
    row[des.D0] = d0 if d0 is not None else row[des.POIDEP] + legs[0]
    row[des.DKIND], row[des.DR1] = dkind, r1
    row[des.RESUS:des.RESUS + 2] = resus
    row[des.SURG], row[des.SURG + 1] = surgery, 0
    row[des.ICU:des.ICU + 2] = icu
    row[des.POSTOP:des.POSTOP + 2] = postop
    row[des.XLEGG] = row[des.XLEGA] = 60 * MIN
    row[des.ROT] = 0
    return row


def run(sc: Scenario, rows: list[np.ndarray]):
    sim = Simulation(sc)
    sim.add(np.array(rows), "block")
    sim.finish()
    (settled,) = sim.settled()
    return sim, settled


# --- queueing rules with answers computed by hand -------------------------------------------------------------

def test_one_operating_table_serves_by_triage_then_arrival():
    # three casualties reach the Role 2 at 35, 45 and 70 min (5 min at the point of injury, 30 min by road), each
    # needing 60 min of surgery; the T1 who came last is operated before the T2 who waited longer
    rows = [casualty(0, t0=0, tri=1, surgery=60 * MIN), casualty(1, t0=10 * MIN, tri=1, surgery=60 * MIN),
            casualty(2, t0=35 * MIN, tri=0, surgery=60 * MIN)]
    _, s = run(scenario(), rows)
    surgery = s.operated[:, 1]
    assert surgery.tolist() == [35 * MIN, 155 * MIN, 95 * MIN]
    assert s.wait_min.tolist() == [0, 110, 25]
    assert s.t1_surgery_wait_min[2] == 25 and np.isnan(s.t1_surgery_wait_min[0])


def test_a_table_is_kept_for_a_t1_on_its_way():
    # the same, but the T1 leaves the point of injury at 25 min, before the first T2 reaches the Role 2: told it
    # is coming (pre-alert), the Role 2 keeps its one table free for it and operates it on arrival at 55 min
    rows = [casualty(0, t0=0, tri=1, surgery=60 * MIN), casualty(1, t0=10 * MIN, tri=1, surgery=60 * MIN),
            casualty(2, t0=20 * MIN, tri=0, surgery=60 * MIN)]
    _, s = run(scenario(), rows)
    assert s.operated[:, 1].tolist() == [115 * MIN, 175 * MIN, 55 * MIN]
    assert s.t1_surgery_wait_min[2] == 0


def test_a_t1_is_operated_at_once_when_a_table_kept_for_t1_is_free():
    # two tables and teams. T1 casualty 0 is on one from 01:00 to 04:00; the T2 arriving at 01:30 may not take
    # the other (kept for T1) and waits; the T1 arriving at 02:00 takes it at once although the T2 queued first
    sc = scenario(front={"r2_enhanced": facility(tables=2, day=2, night=2)})
    rows = [casualty(0, t0=25 * MIN, surgery=3 * 3600), casualty(1, t0=55 * MIN, surgery=60 * MIN, tri=1),
            casualty(2, t0=85 * MIN, surgery=60 * MIN)]
    _, s = run(sc, rows)
    assert s.operated[:, 1].tolist() == [3600, 4 * 3600, 2 * 3600]
    assert s.wait_min.tolist() == [0, 150, 0]


def test_surgical_teams_on_shift_limit_the_tables():
    # two tables but one team by day and none at night (07-19 local), at the Role 3 too (so no diversion helps):
    # a delayed (T2) casualty at 19:30 waits for 07:00; the team is called in for T1 only
    sc = scenario(front={"r2_enhanced": facility(tables=2, day=1, night=0)}, r3=facility(day=1, night=0))
    t_arrive = 19 * 3600 + 30 * MIN
    _, s = run(sc, [casualty(0, t0=t_arrive - 35 * MIN, surgery=60 * MIN, tri=1)])
    assert s.operated[0, 1] == 31 * 3600  # 07:00 the next day


def test_an_off_shift_team_is_called_in_for_a_t1():
    # the same facility at night. T1 casualty 0 leaves the point of injury at 19:55 for a 30 min road leg: the
    # Role 2 is told (pre-alert), calls its off-shift team in, and the team is at the table at 20:10, before the
    # casualty (20:25). T1 casualty 1 leaves at 21:55 on a 10 min leg: the team called at 21:55 is there at 22:10,
    # 5 min after the casualty. The team went back in between (no T1 waiting or on the way).
    sc = scenario(front={"r2_enhanced": facility(tables=2, day=1, night=0)}, r3=facility(day=1, night=0))
    rows = [casualty(0, t0=19 * 3600 + 50 * MIN, surgery=60 * MIN),
            casualty(1, t0=21 * 3600 + 50 * MIN, legs=(10 * MIN,), surgery=60 * MIN)]
    sim, s = run(sc, rows)
    assert s.operated[:, 1].tolist() == [20 * 3600 + 25 * MIN, 22 * 3600 + 10 * MIN]
    assert s.t1_surgery_wait_min[1] == 5 and s.wait_min.tolist() == [0, 5]
    # the report counts the teams called in, and the load table's tables with a team include them
    rep = report(sim)
    ot = next(r for r in rep["resources"] if r["resource"] == "operating tables" and "Enhanced" in r["facility"])
    assert ot["teams_called_in"] == 2 and rep["surgical_teams_called_in"] == 2
    assert "called in 2 times" in rep["summary"]
    load = load_table(sim).filter(pl.col("resource") == "operating tables", pl.col("facility").cast(pl.String).str.contains("Enh"))
    assert load.filter(pl.col("occupancy_peak") > 0).height >= 2
    assert (load["occupancy_peak"] <= load["capacity"]).all()


def test_the_teams_off_shift_are_the_ones_whose_day_of_surgery_counts():
    # a Role 2 Enhanced with two tables, two teams by day and one by night. Both day teams operate 07:00-19:00,
    # their 12 h. The night team operates T1 casualty 2 from 19:30; T1 casualty 3 (20:00) is not given a day team
    # called in (they have done their day): it waits for the night team at 22:30
    sc = scenario(front={"r2_enhanced": facility(tables=2, day=2, night=1)}, r3=facility(tables=1, day=1, night=0))
    rows = [casualty(0, t0=6 * 3600 + 25 * MIN, surgery=12 * 3600), casualty(1, t0=6 * 3600 + 25 * MIN, surgery=12 * 3600),
            casualty(2, t0=18 * 3600 + 55 * MIN, surgery=3 * 3600), casualty(3, t0=19 * 3600 + 25 * MIN, surgery=60 * MIN)]
    _, s = run(sc, rows)
    assert s.operated[:, 1].tolist() == [7 * 3600, 7 * 3600, 19 * 3600 + 30 * MIN, 22 * 3600 + 30 * MIN]
    assert s.journey.fac[:, 1].tolist() == [2, 2, 2, 2]


def test_a_team_that_has_done_its_day_of_surgery_is_not_called_in():
    # the Role 2's one team operates 07:00-19:00 (12 h, the most a team does in a day). The T1 leaving the point
    # of injury at 19:00 is taken past it to the Role 3 (60 min further), whose off-shift team is called in; with
    # the Role 3's team spent as well, the T1 waits at the Role 2 for the day shift at 07:00
    fresh = scenario(front={"r2_enhanced": facility(tables=2, day=1, night=0)}, r3=facility(day=1, night=0))
    rows = [casualty(0, t0=6 * 3600 + 25 * MIN, surgery=12 * 3600, tri=1),
            casualty(1, t0=18 * 3600 + 55 * MIN, surgery=60 * MIN)]
    _, s = run(fresh, rows)
    assert s.operated[:, 1].tolist() == [7 * 3600, 20 * 3600 + 30 * MIN]
    assert s.journey.fac[1, 1] == 3 and s.diverted[1, 1]
    spent = scenario(front={"r2_enhanced": facility(tables=2, day=1, night=0)}, r3=facility(day=1, night=0))
    rows.append(casualty(2, t0=6 * 3600 + 25 * MIN, surgery=12 * 3600, tri=1, stages=(3,)))
    _, s = run(spent, rows)
    assert s.operated[:, 1].tolist() == [7 * 3600, 31 * 3600, 7 * 3600]
    assert s.journey.fac[1, 1] == 2


def test_a_full_icu_keeps_the_patient_on_the_table():
    # two tables and teams, one ICU bed. Casualty 0 operates 35-95 min, then has the ICU bed until 395 min.
    # Casualty 1 operates 95-155 min and then waits on its table for the bed; casualty 2 takes the other table at
    # 155 min and, done at 185 min, waits on it too: casualty 3 (arrived at 160 min) gets a table only at 395 min,
    # when casualty 1 moves into the ICU
    sc = scenario(front={"r2_enhanced": facility(tables=2, icu=1, day=2, night=2)})
    rows = [casualty(0, t0=0, surgery=60 * MIN, icu=300 * MIN, dwell=(3 * 86400,)),
            casualty(1, t0=60 * MIN, surgery=60 * MIN, icu=300 * MIN, dwell=(3 * 86400,)),
            casualty(2, t0=120 * MIN, surgery=30 * MIN, icu=300 * MIN, dwell=(3 * 86400,)),
            casualty(3, t0=125 * MIN, surgery=30 * MIN, icu=300 * MIN, dwell=(3 * 86400,))]
    sim, s = run(sc, rows)
    ot = s.operated[:, 1]
    assert ot.tolist() == [35 * MIN, 95 * MIN, 155 * MIN, 395 * MIN]
    icu = next(r for r in report(sim)["resources"] if r["resource"] == "ICU beds" and "Enhanced" in r["facility"])
    assert icu["peak"] == 1 and icu["longest_queue"] >= 1


def test_a_vehicle_on_its_return_leg_keeps_the_next_casualty_waiting():
    # one ambulance, one litter, 30 min to the Role 2: it is back 60 min after it left
    sc = scenario(front={"ground_ambulances": 1})
    rows = [casualty(g, t0=g * MIN, stages=(1, 2), dwell=(15 * MIN, 600), legs=(20 * MIN, 30 * MIN), r1=5 * MIN,
                     tri=1) for g in range(2)]
    _, s = run(sc, rows)
    leave_r1 = s.journey.dep[:, 1]
    ready = np.array([0 + 5 * MIN + 20 * MIN + 15 * MIN, 1 * MIN + 5 * MIN + 20 * MIN + 15 * MIN])
    assert leave_r1[0] == ready[0]
    assert leave_r1[1] == ready[0] + 60 * MIN
    assert s.journey.arr[1, 2] == leave_r1[1] + 30 * MIN
    assert s.wait_min[1] == (ready[0] + 60 * MIN - ready[1]) // MIN


def test_the_last_free_helicopter_is_kept_for_a_t1():
    # two helicopters, one litter each. T1 casualty 0 flies at 5 min (20 min there, back at 45 min). T2 casualty 1
    # is ready to fly at 10 min: only one helicopter is free, and it is kept for T1, so casualty 1 goes by road
    # (60 min). T1 casualty 2 takes it at 15 min (back at 55 min). With both back, T2 casualty 3 flies at 60 min.
    sc = scenario(front={"helicopters": 2, "helicopter_litters": 1})
    rows = []
    for g, (t0, tri) in enumerate(((0, 0), (5 * MIN, 1), (10 * MIN, 0), (55 * MIN, 1))):
        row = casualty(g, t0=t0, tri=tri, legs=(20 * MIN,))
        row[des.MODE], row[des.LEGG] = des.AIR, 60 * MIN
        rows.append(row)
    _, s = run(sc, rows)
    assert s.journey.mode[:, 0].tolist() == [des.AIR, des.GROUND, des.AIR, des.AIR]
    assert s.journey.arr[:, 1].tolist() == [25 * MIN, 70 * MIN, 35 * MIN, 80 * MIN]


def test_waiting_past_the_tolerance_for_delay_is_a_death_of_wounds():
    # a casualty on a salvageable course tolerates 45 min of delay to surgery; the table is busy for 120 min
    sc = scenario()
    blocker = casualty(0, t0=0, tri=0, surgery=120 * MIN)
    dying = casualty(1, t0=5 * MIN, tri=0, surgery=60 * MIN, lethal=3, t_kia=10 * 3600, budget=45 * MIN,
                     dkind=1, d0=40 * MIN)
    sim, s = run(sc, [blocker, dying])
    assert s.journey.dies.tolist() == [False, True]
    assert s.journey.t_die[1] == 40 * MIN + 45 * MIN
    assert s.operated[1, 1] == NA
    assert report(sim)["deaths"]["with_plan"]["DOW"] == 1


def test_a_saturated_role2_is_passed_over_for_the_next():
    # two Role 2s; the first (where everyone is sent) has one resuscitation bed, taken for 300 min. Casualties
    # leave the point of injury every 40 min and arrive 30 min later; once more than two wait for that bed (the
    # diversion factor), the next are taken past it to the Role 2 Enhanced
    sc = scenario(front={"r2_basic": facility(count=1, resus=1, tables=1), "r2_enhanced": facility()})
    rows = [casualty(g, t0=g * 40 * MIN, tri=0, resus=300 * MIN) for g in range(6)]
    sim, s = run(sc, rows)
    assert s.diverted[:4, 1].tolist() == [False] * 4
    assert s.diverted[4:, 1].all() and s.diversions[4:].tolist() == [1, 1]
    assert report(sim)["waiting"]["diversions"] == 2


def test_strategic_sorties_fly_on_schedule_and_by_priority():
    # a sortie every 24 h with 1 seat: two casualties ready at Role 3 on day 1 leave at 24 h and 48 h, T1 first
    sc = scenario(strategic={"interval_h": 24, "seats": 1})
    rows = [casualty(g, t0=g * MIN, tri=1 - g, stages=(3, 4), dwell=(3 * 3600, 0), legs=(30 * MIN, 6 * 3600),
                     term=2) for g in range(2)]
    _, s = run(sc, rows)
    assert s.journey.dep[:, 1].tolist() == [48 * 3600, 24 * 3600]
    assert s.journey.terminal.tolist() == [6, 6]  # EVENT evacuated


def test_no_wait_anywhere_keeps_the_intended_times():
    _, s = run(scenario(), [casualty(0, t0=0, tri=2, dwell=(2 * 86400,))])
    assert s.journey.arr[0, 1] == 35 * MIN and s.journey.t_term[0] == 35 * MIN + 2 * 86400
    assert s.wait_min[0] == 0 and not s.mascal[0]


# --- plan validation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("plan, message", [
    ({"fronts": {"North": {"r1_teams": -1}}}, "medical_plan.fronts.North.r1_teams: -1 is not allowed"),
    ({"fronts": {"North": {"ground_ambulances": 10**9}}}, "ground_ambulances: 1000000000 is not allowed"),
    ({"fronts": {"North": {"r2_basic": {"count": 0}, "r2_enhanced": {"count": 0}}}}, "no Role 2 facility"),
    ({"fronts": {"Nowhere": {}}}, "'Nowhere' is not a front of this scenario"),
    ({"fronts": {"North": {"r2_enhanced": {"operating_tables": 0}}}}, "needs at least an operating table"),
    ({"fronts": {"North": {"r2_basic": {"surgical_teams_day": 0, "surgical_teams_night": 0}}}},
     "no surgical team"),
    ({"r3": {"count": 0}}, "medical_plan.r3.count: 0 is not allowed"),
    ({"strategic_evacuation": {"interval_h": -5}}, "strategic_evacuation.interval_h: -5 is not allowed"),
    ({"fronts": {"North": {"beds": 3}}}, "unknown field(s) beds"),
    ("everything", "medical_plan: 'everything' is not allowed"),
])
def test_a_bad_plan_is_refused_with_one_message_per_problem(plan, message):
    base = {"name": "x", "fronts": [{"name": "North", "casualty_share": 1, "nationality_mix": {"USA": 1}}]}
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({**base, "medical_plan": plan})
    assert message in str(err.value)
    assert len(err.value.problems) == 1


def test_a_plan_round_trips_and_unconstrained_means_none():
    sc = preset("brigade_falklands")
    again = Scenario.from_dict(sc.to_dict(), base=sc.to_dict())
    assert again == sc and again.sha256() == sc.sha256()
    plain = Scenario.from_dict({"medical_plan": "unconstrained"})
    assert plain.medical_plan is None and plain.sha256() == Scenario.from_dict({}).sha256()
    assert "medical_plan" not in plain.to_dict()


def test_the_cli_refuses_a_bad_plan_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"medical_plan": {"fronts": {"Atlantis": {}}}}))
    out = subprocess.run([sys.executable, "-m", "core", "validate", str(bad)], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "'Atlantis' is not a front of this scenario" in out.stderr


# --- runs with a plan ------------------------------------------------------------------------------------------

# sha256 of the Parquet tables of `generate --patients 5000 --seed 11`, made by the engine before medical plans
# existed (commit 5e1fa51): a scenario without a plan must keep producing exactly these bytes
BEFORE_PLANS = {
    "default": {"conditions": "1d3bcbb086729089ed11669b82f46f2d27046bb1adeb4633e3df278fc57dbeed",
                "events": "f6ddf8f771a1a641191858a997f8820e358dae1d8dd080000acd187d6593086e",
                "patients": "3e6b4b8a317ceb217da31f325d1951013d882cefaf110de5970c055a1e458a41",
                "vitals": "4112ddc9a2ac833f4e44939537054a2ec32b5592343528dbbbb5d7b09e3bbd39"},
    "mass_casualty": {"conditions": "3499aad0338e274fb186b09abec752ab9cb3749b8e73104a585d9b4bdca881e5",
                      "events": "5d41132ad858b9f1eb3c5938327c1d0588cf7e6513bcbaa5f7b6d3fd96694d7c",
                      "patients": "016b63f81303bd37c638c906bba2a2900f7c52dcc6e45534eb80b86884d0b9c0",
                      "vitals": "2cafed7d3c94d2964984369f7ef0019b4614d53925ad48c10852779ff222bcfe"},
}


@pytest.mark.parametrize("name", sorted(BEFORE_PLANS))
def test_without_a_plan_the_tables_are_byte_for_byte_as_before(tmp_path, name):
    from core.run import generate_run
    sc = Scenario.from_dict({"medical_plan": "unconstrained"}) if name == "default" else preset(name)
    generate_run(sc.with_overrides(patients=5000, seed=11), tmp_path)
    for table, digest in BEFORE_PLANS[name].items():
        assert hashlib.sha256((tmp_path / f"{table}.parquet").read_bytes()).hexdigest() == digest, table


def _plan_run(sc, **kw) -> generator.Batch:
    return generator._concat(list(generator.rechunk(generator.blocks(sc, **kw), 1_000)))


def test_with_a_plan_the_tables_are_the_same_for_any_chunk_size_and_workers():
    sc = preset("brigade_okinawa").with_overrides(patients=40_000, days=20)
    one = generator.generate(sc)
    chunked = generator._concat(list(generator.stream(sc, chunk_size=7_000)))
    two = generator._concat(list(generator.stream(sc, chunk_size=5_000, workers=2)))
    for table in ("patients", "events", "conditions", "vitals"):
        assert getattr(one, table).equals(getattr(chunked, table)), table
        assert getattr(one, table).equals(getattr(two, table)), table
    assert one.patients.schema == pl.Schema(PATIENTS_WITH_PLAN)


def test_a_run_with_a_plan_meets_the_contract_and_writes_its_report(tmp_path):
    from conftest import assert_contract_holds
    from core.run import generate_run
    manifest = generate_run(preset("brigade_okinawa"), tmp_path, fmt="csv")
    assert_contract_holds(tmp_path)
    names = {f["name"] for f in manifest["files"]}
    assert {"capacity.json", "load.csv", "calibration.json"} <= names
    rep = json.loads((tmp_path / "capacity.json").read_text())
    assert rep["verdict"] in ("holds", "strained", "overwhelmed") and rep["summary"]
    assert manifest["capacity"]["verdict"] == rep["verdict"]
    load = pl.read_csv(tmp_path / "load.csv")
    assert {"time", "facility", "resource", "capacity", "occupancy_mean", "occupancy_peak", "queue_peak"} <= set(
        load.columns)
    # never more patients in a resource at once than it ever has (operating tables follow the shifts)
    worst = load.filter(pl.col("capacity").is_not_null()).group_by("facility", "resource").agg(
        pl.col("occupancy_peak").max().alias("peak"), pl.col("capacity").max().alias("capacity"))
    assert (worst["peak"] <= worst["capacity"]).all() and worst["peak"].max() > 0
    p = pl.read_csv(tmp_path / "patients.csv")
    assert {"wait_min", "diversions"} <= set(p.columns) and p["wait_min"].min() >= 0


def test_a_plan_so_small_that_everyone_waits_runs_and_says_so():
    tiny = {"fronts": {"North": {"r1_teams": 1, "r2_basic": {"count": 0},
                                 "r2_enhanced": facility(tables=1, resus=1, icu=1, hold=1, day=1, night=0),
                                 "ground_ambulances": 1, "helicopters": 0}},
            "r3": facility(tables=1, resus=1, icu=1, hold=1), "strategic_evacuation": {"interval_h": 168, "seats": 1}}
    sc = Scenario.from_dict({"name": "tiny", "patients": 20_000, "days": 5, "medical_plan": tiny,
                             "fronts": [{"name": "North", "casualty_share": 1, "nationality_mix": {"USA": 1}}]})
    sim = Simulation(sc)
    batch = generator.generate(sc, simulation=sim)
    rep = report(sim)
    assert batch.patients.height == 20_000
    assert rep["verdict"] == "overwhelmed"
    assert rep["waiting"]["still_waiting_at_end"] > 1000
    assert "were still waiting when the scenario ended" in rep["summary"]


# --- the sanity anchors (docs/capacity.md) ---------------------------------------------------------------------

def _figures(sc, seeds=range(20)):
    out = []
    for seed in seeds:
        s = sc.with_overrides(seed=100 + seed)
        sim = Simulation(s)
        for _ in generator.blocks(s, simulation=sim):
            pass
        out.append(report(sim))
    return out


def _mean(reports, get):
    return float(np.mean([get(r) for r in reports]))


def _dcs_within_2h(scenarios) -> float:
    """Calibration target 12b pooled over runs: T1 battle casualties operated at Role 2 within 2 h of injury."""
    from core.calibration import calibrate
    rows = [next(t for t in calibrate(s, generator.stream(s))["targets"] if t["id"] == "12b") for s in scenarios]
    return sum(t["value"] * t["n"] for t in rows) / sum(t["n"] for t in rows)


def test_falklands_rates_are_handled_by_the_brigade_laydown():
    sc = preset("brigade_falklands")
    reps = _figures(sc, range(5))
    assert _mean(reps, lambda r: r["deaths"]["attributable_to_capacity"]["total"]) <= 1
    assert _mean(reps, lambda r: r["waiting"]["share_waited_1h_or_more"]) < 0.1
    for r in reps:  # no resource full for long
        assert max(x["hours_at_capacity"] or 0 for x in r["resources"]) < 0.15 * 888
    # 10-1-2: at least 80 % of T1 battle casualties operated at Role 2 within 2 h of injury, over 20 runs (about
    # 1,100 such casualties; 0.84 with unlimited care)
    seeds = [sc.with_overrides(seed=100 + i) for i in range(20)]
    free = [Scenario.from_dict({**s.to_dict(), "medical_plan": "unconstrained"}) for s in seeds]
    with_plan, unlimited = _dcs_within_2h(seeds), _dcs_within_2h(free)
    assert with_plan >= 0.80 and with_plan >= unlimited - 0.05


def test_okinawa_rates_build_operating_queues_and_cost_lives():
    falk, oki = _figures(preset("brigade_falklands")), _figures(preset("brigade_okinawa"))
    # one T1 in ten reaches surgery well over an hour later than with unlimited care (waiting, or taken past a
    # busy facility), the unluckiest many hours later; at Falklands rates minutes (20 runs: about 90 and 16 min)
    delay = lambda r: r["t1_surgery"]["delay_p90_min"]  # noqa: E731
    assert _mean(oki, delay) >= 75 and _mean(oki, delay) > 3 * _mean(falk, delay)
    assert _mean(oki, lambda r: r["t1_surgery"]["delay_max_min"]) >= 4 * 60
    r2_ot_queue = lambda r: max(x["longest_queue"] for x in r["resources"]  # noqa: E731
                                if x["resource"] == "operating tables" and x["role"] == "R2")
    assert _mean(oki, r2_ot_queue) >= 3
    assert _mean(oki, lambda r: r["deaths"]["attributable_to_capacity"]["DOW"]) >= 2
    assert _mean(oki, lambda r: r["deaths"]["with_plan"]["DOW"]) > _mean(oki, lambda r: r["deaths"]["unconstrained"]["DOW"])


def test_a_mascal_of_60_builds_operating_queues():
    base = preset("brigade_falklands")
    event = [{"type": "mass_casualty", "day": 10, "hour": 14, "size": 60, "front": "Brigade"}]
    with_event = Scenario.from_dict({**base.to_dict(), "special_events": event},
                                    base=base.to_dict()).with_overrides(patients=base.patients + 60)
    reps = _figures(with_event)
    ot_queue = lambda r: max(x["longest_queue"] for x in r["resources"] if x["resource"] == "operating tables")  # noqa
    assert _mean(reps, ot_queue) >= 3
    assert _mean(reps, lambda r: r["deaths"]["with_plan"]["DOW"] - r["deaths"]["unconstrained"]["DOW"]) > 0
    assert _mean(reps, lambda r: r["waiting"]["mass_casualty_patients"]) > 10


def _scaled_plan(sc, **front):
    d = sc.to_dict()
    d["medical_plan"]["fronts"]["Brigade"].update(front)
    return Scenario.from_dict(d, base=d)


def test_doubling_operating_tables_and_teams_lowers_waits_and_attributable_deaths():
    base = preset("brigade_okinawa")
    doubled = _scaled_plan(base, r2_basic=facility(count=2, tables=2, resus=2, icu=2, hold=5, day=2, night=0),
                           r2_enhanced=facility(count=1, tables=4, resus=4, icu=4, hold=30, day=4, night=2))
    a, b = _figures(base), _figures(doubled)
    assert _mean(b, lambda r: r["t1_surgery"]["delay_p90_min"]) < _mean(a, lambda r: r["t1_surgery"]["delay_p90_min"])
    att = lambda r: r["deaths"]["attributable_to_capacity"]["total"]  # noqa: E731
    assert _mean(b, att) < _mean(a, att)


def test_no_helicopters_raises_transit_times_and_kia():
    base = preset("brigade_okinawa")
    grounded = _scaled_plan(base, helicopters=0)
    a, b = _figures(base, range(4)), _figures(grounded, range(4))
    assert _mean(b, lambda r: r["deaths"]["with_plan"]["KIA"]) > _mean(a, lambda r: r["deaths"]["with_plan"]["KIA"])


def test_replications_give_a_mean_and_an_interval_that_holds_it():
    from core.replicate import replicate, summarise, t_quantile
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.776, abs=2e-3)
    assert t_quantile(0.975, 49) == pytest.approx(2.010, abs=1e-3)
    s = summarise([1.0, 2.0, 3.0, None])
    assert s["n"] == 3 and s["mean"] == 2.0
    assert s["ci95"] == pytest.approx([2 - 4.303 / 3 ** 0.5, 2 + 4.303 / 3 ** 0.5], abs=1e-3)
    rep = replicate(preset("brigade_falklands"), runs=4, workers=2)
    f = rep["figures"]["Deaths attributable to capacity"]
    assert f["n"] == 4 and f["ci95"][0] <= f["mean"] <= f["ci95"][1]
    again = replicate(preset("brigade_falklands"), runs=4, workers=1)
    assert again["figures"] == rep["figures"]
    assert any("Case fatality" in name for name in rep["figures"])
    assert {f["unit"] for f in rep["figures"].values()} <= {"share", "count", "min", "h"}
    # an interval never says a share is below 0 % or above 100 %, or a queue or time below zero; only the deaths
    # attributable to capacity can be negative
    for name, f in rep["figures"].items():
        if f["mean"] is not None and "attributable" not in name.lower():
            assert f["ci95"][0] >= 0 and f["range95"][0] >= 0, name
            assert f["unit"] != "share" or f["ci95"][1] <= 1, name
    from core.replicate import format_replications
    import re
    assert not re.search(r"(?<![\d.])-0(\.0+)?(%| min| h|\s|$)", format_replications(rep))  # no "-0", "-0.0 %"


def test_blocks_waiting_for_a_long_stay_wait_on_disk_and_are_cleaned_up(tmp_path, monkeypatch):
    import threading
    from core.capacity import model
    from core.run import generate_run
    written = []
    write = model._Spilled.write
    monkeypatch.setattr(model._Spilled, "write",
                        classmethod(lambda cls, *a: written.append(write(*a)) or written[-1]))
    sc = Scenario.from_dict({"patients": 100_000, "days": 30, "seed": 5, "medical_plan": "brigade"})
    manifest = generate_run(sc, tmp_path / "run")
    assert manifest["status"] == "completed"
    assert written, "no block ever waited on disk: the test does not test it"
    assert not list((tmp_path / "run").glob(".capacity-spill-*"))
    in_memory = generator.generate(sc)
    assert pl.read_parquet(tmp_path / "run" / "events.parquet").equals(
        in_memory.events.with_columns(pl.col(pl.Enum).cast(pl.String)))
    # a run cancelled while blocks wait on disk leaves none behind
    cancel = threading.Event()
    written.clear()

    def progress(p):
        if written:
            cancel.set()

    stopped = generate_run(sc, tmp_path / "cancelled", on_progress=progress, cancel=cancel)
    assert stopped["status"] == "cancelled" and written
    assert not list((tmp_path / "cancelled").glob(".capacity-spill-*"))


def test_a_killed_runs_blocks_on_disk_are_removed_by_the_next_run(tmp_path):
    from core.run import generate_run
    left = tmp_path / ".capacity-spill-4242-16384.pkl"
    left.write_bytes(b"x" * 1000)
    manifest = generate_run(preset("brigade_falklands"), tmp_path)
    assert manifest["status"] == "completed" and not left.exists()
    assert manifest["cleaned_up"]


def test_the_summary_gives_long_delays_in_hours():
    from core.capacity.report import _duration
    assert [_duration(m) for m in (45, 119.4, 150, 599, 791)] == ["45 min", "119 min", "2.5 hours", "10 hours",
                                                                  "13 hours"]
