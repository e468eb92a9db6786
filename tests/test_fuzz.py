"""Hostile scenario input: a seeded fuzzer and the cases it (and a tester) found.

The rule: what ``validate`` accepts, ``generate`` runs, with every time inside the scenario's window; what it
rejects, it rejects with a ScenarioError whose message is one line of bounded length. Never another exception.
"""
from __future__ import annotations

import copy
import json
import math
import random
from datetime import timedelta

import polars as pl
import pytest

from core import generator
from core.__main__ import main
from core.scenario import (MAX_PROBLEM_LEN, MAX_SHOWN_PROBLEMS, ScenarioError, load_scenario, parse_json, preset)

SEED = 13
CASES = 300
FUZZ_PATIENTS = 300  # accepted scenarios are generated this small: the rule is about the input, not the size
MESSAGE_CAP = (MAX_SHOWN_PROBLEMS + 1) * (MAX_PROBLEM_LEN + 2)
DEEP = "__nested__"  # replaced in the JSON text by brackets nested hundreds of levels deep

NUMBERS = [0, 1, -1, 2, 0.5, 1e-300, 1e-9, 1e6, 1e308, -1e308, 10**30, 10**400, 2**63, 2**63 - 1, 23, 180, 181,
           float("nan"), float("inf"), 1.5, 100_000_000, 100_000_001]
TEXTS = ["", " ", "x" * 3000, "\ud800", "a\x00b", "line\nbreak", "**bold** ![t](http://example.invalid/t.png)",
         "<script>alert(1)</script>", "../../etc/passwd", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
         "0001-01-01T00:00:00+14:00", "2025-02-30T00:00:00Z", "2025-06-01T00:00:00-12:00", "1900-01-01T00:00:00Z",
         "2200-12-31T23:59:59Z", "all", "rain", "storm", "T1", "BI", "GBR", "RUS", "brigade", "unconstrained",
         "surge", "declining", "mass_casualty", "ambush", "Kraków Ø"]
ANYTHING = [None, True, False, [], {}, [1, 2], [1e308, 1.0, 2.0], [0, 0], ["all"], {"x": 1}, *NUMBERS[:6],
            *TEXTS[:6]]


def bases() -> list[dict]:
    """Complete, valid scenarios to mutate: with environment, special events and a medical plan among them."""
    out = [load_scenario("default").to_dict()]
    out += [preset(k).to_dict() for k in ("urban_assault", "mass_casualty", "arctic_operation", "brigade_okinawa")]
    with_everything = copy.deepcopy(out[0])
    with_everything.update(tempo=[1.0, 3.0, 0.5], dnbi_tempo="surge", triage_override={"BI": {"T1": 0.5, "T2": 0.5}},
                           environment=[{"condition": "rain", "fronts": "all", "days": [1, 2]}, "fog"],
                           special_events=[{"type": "ambush", "day": 2, "hour": 4, "size": 30}],
                           medical_plan="brigade")
    return out + [with_everything]


def leaves(node, path=()):
    """(path, value) of every value in a JSON document, containers included."""
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from leaves(value, (*path, key))


def at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def mutate(rng: random.Random, doc: dict) -> dict:
    """One to three mutations: a number or a text nudged to an edge, any value replaced, a key removed or added,
    a list grown, a value nested deep."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        spots = [(p, v) for p, v in leaves(doc) if p]
        numbers = [p for p, v in spots if isinstance(v, (int, float)) and not isinstance(v, bool)]
        texts = [p for p, v in spots if isinstance(v, str)]
        lists = [p for p, v in spots if isinstance(v, list) and v]
        dicts = [()] + [p for p, v in spots if isinstance(v, dict)]
        roll = rng.random()
        if roll < 0.35 and numbers:
            path = rng.choice(numbers)
            old = at(doc, path)
            nearby = [old * 2, old / 2, old + 1, max(old - 1, 0), round(old * 0.9, 3)]
            at(doc, path[:-1])[path[-1]] = rng.choice(nearby if rng.random() < 0.5 else NUMBERS)
        elif roll < 0.55 and texts:
            path = rng.choice(texts)
            at(doc, path[:-1])[path[-1]] = rng.choice(TEXTS)
        elif roll < 0.70:
            path, _ = rng.choice(spots)
            at(doc, path[:-1])[path[-1]] = rng.choice(ANYTHING)
        elif roll < 0.80:
            parent = at(doc, rng.choice(dicts))
            if parent and rng.random() < 0.5:
                del parent[rng.choice(list(parent))]
            else:
                parent[rng.choice(["unknown", "condition", "front", "\ud800", "x" * 400])] = rng.choice(ANYTHING)
        elif roll < 0.95 and lists:
            items = at(doc, rng.choice(lists))
            items.extend(copy.deepcopy(items[:1]) * rng.choice([1, 40, 600]))
        else:
            path, _ = rng.choice(spots)
            at(doc, path[:-1])[path[-1]] = DEEP
    return doc


def as_text(doc: dict, rng: random.Random) -> str:
    depth = rng.choice([40, 990, 1500])
    return json.dumps(doc, allow_nan=True).replace(json.dumps(DEEP), "[" * depth + "]" * depth)


def assert_bounded(exc: ScenarioError) -> None:
    text = str(exc)
    assert exc.problems and text and "\n" not in text and len(text) <= MESSAGE_CAP, text[:500]
    text.encode("utf-8")  # printable anywhere: no lone surrogate


def assert_runs_in_its_window(scenario) -> None:
    small = scenario.with_overrides(patients=min(scenario.patients, FUZZ_PATIENTS))
    batch = generator.generate(small)
    assert batch.patients.height == small.patients
    start, horizon = small.start, small.horizon + timedelta(days=1)
    for frame, column in ((batch.patients, "injury_time"), (batch.patients, "outcome_time"),
                          (batch.events, "time"), (batch.vitals, "time")):
        times = frame[column].drop_nulls()
        if times.len():
            assert start <= times.min() and times.max() <= horizon, (column, times.min(), times.max())
    births = batch.patients["birth_date"]
    assert births.min().year >= 1800 and births.max() <= small.start.date()


def test_what_validate_accepts_generate_runs_and_what_it_rejects_it_rejects_in_one_bounded_line():
    rng = random.Random(SEED)
    docs = bases()
    accepted = rejected = 0
    for case in range(CASES):
        text = as_text(mutate(rng, rng.choice(docs)), rng)
        try:
            scenario = parse_json(text)
        except ScenarioError as exc:
            assert_bounded(exc)
            rejected += 1
            continue
        try:
            assert_runs_in_its_window(scenario)
            again = parse_json(scenario.canonical_json())  # a validated scenario validates to itself
            assert again.sha256() == scenario.sha256()
        except Exception as exc:  # the case, to reproduce it
            raise AssertionError(f"case {case}: accepted but does not run: {type(exc).__name__}: {exc}\n"
                                 f"{text[:3000]}") from exc
        accepted += 1
    # the fuzzer reaches both sides of the rule often enough to mean something
    assert accepted >= CASES // 5 and rejected >= CASES // 5, (accepted, rejected)


# --- the cases a tester found, each through `python -m core validate` --------------------------------------------

def _with(**changes) -> dict:
    doc = load_scenario("default").to_dict()
    doc.update(changes)
    return doc


def _fronts_with(**changes) -> dict:
    doc = load_scenario("default").to_dict()
    doc["fronts"][0].update(changes)
    return doc


KNOWN = {
    "nested 990 levels": "[" * 990 + "]" * 990,
    "nested 990 levels inside a field": json.dumps(_with(name="__x__")).replace('"__x__"', "[" * 990 + "]" * 990),
    "an integer of 4,301 digits": json.dumps(_with(patients="__x__")).replace('"__x__"', "9" * 4301),
    "an integer too large for a float": json.dumps(_fronts_with(casualty_share=10**400)),
    "start before year 1 in UTC": json.dumps(_with(start="0001-01-01T00:00:00+14:00")),
    "start in year 1": json.dumps(_with(start="0001-01-01T00:00:00Z")),
    "start at the end of year 9999": json.dumps(_with(start="9999-12-31T23:59:59Z")),
    "a lone surrogate in the name": json.dumps(_with(name="Op \ud800")),
    "a tempo whose sum overflows": json.dumps(_with(tempo=[1e308, 1.0, 2.0])),
    "50,000 environment entries": json.dumps(_with(environment=["rain"] * 50_000)),
    "a front share of 1e-300": json.dumps(_with(fronts=[
        {"name": "A", "casualty_share": 1e-300, "nationality_mix": {"GBR": 1}},
        {"name": "B", "casualty_share": 1.0, "nationality_mix": {"USA": 1}}])),
    "200,000 unknown nation codes": json.dumps(_fronts_with(nationality_mix={f"Q{i:05d}": 1 for i in range(200_000)})),
    "an unknown key in an environment entry": json.dumps(_with(environment=[{"condition": "rain", "wind": 9}])),
    "an unknown key in a medical plan": json.dumps(_with(medical_plan={"fronts": {}, "r4": {}})),
    "a medical plan count too large for a float": json.dumps(_with(medical_plan={"r3": {"icu_beds": 10**400}})),
}


@pytest.mark.parametrize("name", KNOWN)
def test_known_hostile_scenarios_are_refused_in_one_bounded_line(name, tmp_path, capsys):
    path = tmp_path / "scenario.json"
    path.write_text(KNOWN[name], encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and len(err) <= MESSAGE_CAP + 200, err[:500]


def test_the_refusals_name_the_field_and_what_is_allowed():
    def problem(text: str) -> str:
        with pytest.raises(ScenarioError) as info:
            parse_json(text)
        return str(info.value)

    assert "start" in problem(KNOWN["start at the end of year 9999"]) and "2200-12-31" in problem(
        KNOWN["start at the end of year 9999"])
    assert "lone surrogate" in problem(KNOWN["a lone surrogate in the name"])
    assert "tempo" in problem(KNOWN["a tempo whose sum overflows"])
    assert "at most 200" in problem(KNOWN["50,000 environment entries"])
    assert "too small" in problem(KNOWN["a front share of 1e-300"])
    assert "'wind'" in problem(KNOWN["an unknown key in an environment entry"])
    assert "199,995 more" in problem(KNOWN["200,000 unknown nation codes"])
    assert "4,301 digits" in problem(KNOWN["an integer of 4,301 digits"]) or "digits" in problem(
        KNOWN["an integer of 4,301 digits"])
    assert "levels deep" in problem(KNOWN["nested 990 levels"]) and "levels deep" in problem(
        KNOWN["nested 990 levels inside a field"])


def test_the_earliest_and_latest_start_run_inside_their_window():
    for start in ("1900-01-01T00:00:00Z", "2200-12-31T23:59:59Z"):
        scenario = parse_json(json.dumps(_with(start=start, days=180, follow_up_h=1440)))
        assert_runs_in_its_window(scenario.with_overrides(patients=2_000))


def test_a_scenario_file_that_is_a_fifo_or_a_device_is_refused_without_reading_it(tmp_path, capsys):
    import os
    fifo = tmp_path / "scenario.fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        assert main(["validate", path]) == 2  # returns at once: nothing is read (a FIFO would wait for a writer)
        err = capsys.readouterr().err
        assert "not a regular file" in err and err.count("\n") == 1


def test_a_huge_scenario_file_is_refused_by_its_size(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(17 << 20)  # sparse: 17 MB of zero bytes
    with pytest.raises(ScenarioError, match="larger than 16 MB"):
        load_scenario(path)


def test_plain_numbers_and_times_still_validate_as_before():
    doc = _with(start="2025-06-01T06:30:00+02:00", patients=10**3, tempo=[1, 1e6])
    scenario = parse_json(json.dumps(doc))
    assert scenario.start.isoformat() == "2025-06-01T04:30:00+00:00" and scenario.tempo == (1.0, 1e6)
    assert math.isclose(sum(f.casualty_share for f in scenario.fronts), 1.0)
    assert isinstance(pl.Series([scenario.start]).dtype, pl.Datetime)
