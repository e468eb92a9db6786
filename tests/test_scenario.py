"""Scenario loading and validation (core/scenario.py, docs/casualty-model.md#the-scenario): presets, hashing, one-line errors."""
from __future__ import annotations

import copy
import hashlib
import json
import re

import pytest

from core import reference
from core.scenario import Scenario, ScenarioError, load_scenario

PRESET_IDS = ("nato_article_5", "peacekeeping", "urban_assault", "cbrn_incident", "training_exercise",
              "mass_casualty", "arctic_operation", "maritime_operation", "brigade_falklands", "brigade_okinawa")

# the presets (docs/casualty-model.md, the scenario; docs/capacity.md): patients, days, the warfare type that
# dominates, intensity; the two brigades take their patients from their force size (3,750 troops, 30 days)
PRESET_TABLE = {
    "nato_article_5": (2500, 8, "conventional", "high"),
    "peacekeeping": (500, 30, "peacekeeping", "low"),
    "urban_assault": (3000, 5, "urban", "extreme"),
    "cbrn_incident": (1500, 3, "cbrn", "extreme"),
    "training_exercise": (100, 2, "conventional", "low"),
    "mass_casualty": (800, 1, "conventional", "extreme"),
    "arctic_operation": (1200, 14, "conventional", "high"),
    "maritime_operation": (1800, 6, "naval", "high"),
    "brigade_falklands": (429, 30, "conventional", "high"),
    "brigade_okinawa": (727, 30, "conventional", "extreme"),
}


def default_dict() -> dict:
    return copy.deepcopy(reference.default_scenario())


def error_of(data: dict) -> str:
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data)
    message = str(info.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    return message


# --- loading ----------------------------------------------------------------------------------------------

def test_default_scenario_loads_with_documented_defaults():
    s = load_scenario()
    assert load_scenario("default") == s
    assert s.patients == 1000 and s.days == 8 and s.seed == 7 and s.follow_up_h == 168
    assert s.start.isoformat() == "2025-06-01T00:00:00+00:00"
    assert s.category_mix == pytest.approx({"BI": 0.35, "NBI": 0.20, "DIS": 0.33, "BSI": 0.12})
    assert [f.name for f in s.fronts] == ["Poland", "Estonia", "Finland"]
    assert sum(f.casualty_share for f in s.fronts) == pytest.approx(1.0)
    for f in s.fronts:  # nationality mixes are normalised to fractions
        assert sum(f.nationality_mix.values()) == pytest.approx(1.0)
    assert s.horizon > s.end > s.start


def test_presets_are_the_documented_ids():
    assert tuple(reference.presets()) == PRESET_IDS


@pytest.mark.parametrize("preset_id", PRESET_IDS)
def test_every_preset_loads_with_its_documented_parameters(preset_id):
    s = load_scenario(preset_id)
    patients, days, warfare, intensity = PRESET_TABLE[preset_id]
    assert (s.patients, s.days, s.intensity) == (patients, days, intensity)
    assert max(s.warfare_types, key=s.warfare_types.get) == warfare
    assert sum(s.category_mix.values()) == pytest.approx(1.0)
    assert s.category_mix["BSI"] > 0  # every preset carves out battle stress
    # only the presets with AUS / NZL fronts need partner nations
    partners = set(s.nations()) & reference.partner_codes()
    assert s.allow_partners == bool(partners) == (preset_id in ("urban_assault", "maritime_operation"))


def test_preset_specific_fields_reach_the_scenario():
    mascal = load_scenario("mass_casualty")
    assert mascal.special_events[0].type == "mass_casualty"
    assert mascal.special_events[0].size_share == pytest.approx(0.4)
    assert mascal.triage_override["BI"]["T1"] == pytest.approx(0.5)
    assert load_scenario("cbrn_incident").triage_override["cbrn"]["T1"] == pytest.approx(0.5)
    arctic = load_scenario("arctic_operation")
    assert {e.condition for e in arctic.environment} >= {"extreme_cold", "mountainous_terrain"}
    assert "urban_debris" in {e.condition for e in load_scenario("urban_assault").environment}


def test_a_scenario_file_loads(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"name": "Small", "patients": 50, "days": 2}), encoding="utf-8")
    s = load_scenario(path)
    assert (s.name, s.patients, s.days) == ("Small", 50, 2)
    assert s.fronts == load_scenario().fronts  # everything else from the defaults


def test_unknown_scenario_name_is_an_error_listing_the_presets():
    with pytest.raises(ScenarioError) as info:
        load_scenario("nosuch")
    assert "nosuch" in str(info.value) and "nato_article_5" in str(info.value)


def test_a_file_with_a_json_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "patients": 50,\n  "days": 2,,\n}\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    assert "line 3" in message and "column" in message
    assert "broken.json" in message


# --- canonical JSON and hash --------------------------------------------------------------------------------

def test_canonical_json_is_stable_and_sorted():
    a, b = load_scenario(), load_scenario()
    assert a.canonical_json() == b.canonical_json()
    assert a.sha256() == b.sha256()
    assert re.fullmatch(r"[0-9a-f]{64}", a.sha256())
    assert a.sha256() == hashlib.sha256(a.canonical_json().encode("utf-8")).hexdigest()
    assert a.with_overrides(seed=a.seed + 1).sha256() != a.sha256()
    parsed = json.loads(a.canonical_json())
    assert list(parsed) == sorted(parsed)
    # canonical = sorted keys, compact separators, UTF-8 kept as is
    assert a.canonical_json() == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert parsed == json.loads(json.dumps(a.to_dict()))


@pytest.mark.parametrize("preset_id", ("default", "nato_article_5", "arctic_operation", "urban_assault", "mass_casualty"))
def test_round_trip_through_to_dict_keeps_the_hash(preset_id):
    s = load_scenario(preset_id)
    again = Scenario.from_dict(s.to_dict())
    assert again.canonical_json() == s.canonical_json()
    assert again.sha256() == s.sha256()


@pytest.mark.parametrize("preset_id", ("peacekeeping", "cbrn_incident", "training_exercise", "maritime_operation"))
def test_round_trip_through_to_dict_keeps_the_hash_for_exact_shares(preset_id):
    """Presets whose shares survive re-normalisation exactly: the round trip must be an identity."""
    s = load_scenario(preset_id)
    again = Scenario.from_dict(s.to_dict())
    assert again == s
    assert again.sha256() == s.sha256()


def test_with_overrides_without_changes_keeps_the_hash():
    s = load_scenario()
    assert s.with_overrides().sha256() == s.sha256()


def test_stored_scenario_rehashes_to_its_sha256():
    """What a manifest stores (to_dict) hashes, as canonical JSON, to the scenario's sha256."""
    s = load_scenario("urban_assault")
    stored = json.loads(json.dumps(s.to_dict()))
    text = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == s.sha256()


@pytest.mark.parametrize("change", [
    {"seed": 8}, {"patients": 1001}, {"days": 9}, {"intensity": "low"}, {"evacuation_posture": "contested"},
    {"name": "Another name"}, {"category_mix": {"BI": 0.4, "NBI": 0.2, "DIS": 0.28, "BSI": 0.12}},
])
def test_hash_changes_when_a_field_changes(change):
    base = load_scenario()
    data = default_dict()
    data.update(change)
    other = Scenario.from_dict(data)
    assert other.sha256() != base.sha256()
    assert other.canonical_json() != base.canonical_json()


def test_hash_changes_when_a_nested_field_changes():
    data = default_dict()
    data["fronts"][2]["nationality_mix"] = {"FIN": 40, "USA": 60}
    assert Scenario.from_dict(data).sha256() != load_scenario().sha256()


# --- validation errors: one line, the field, the bad value, what is allowed -----------------------------------

def test_category_mix_not_summing_to_one():
    data = default_dict()
    data["category_mix"] = {"BI": 0.3, "NBI": 0.2, "DIS": 0.3, "BSI": 0.1}
    message = error_of(data)
    assert "category_mix" in message and "0.9" in message and "sum to 1" in message


def test_category_mix_in_percent_says_fractions():
    data = default_dict()
    data["category_mix"] = {"BI": 35, "NBI": 20, "DIS": 33, "BSI": 12}
    message = error_of(data)
    assert "category_mix" in message and "100" in message
    assert "fraction" in message.lower()


def test_unknown_nation_code():
    data = default_dict()
    data["fronts"][0]["nationality_mix"] = {"XXX": 50, "POL": 50}
    message = error_of(data)
    assert "fronts[0].nationality_mix" in message and "XXX" in message
    assert "NATO" in message


def test_partner_nation_needs_allow_partners():
    data = default_dict()
    data["fronts"][0]["nationality_mix"] = {"AUS": 50, "POL": 50}
    message = error_of(data)
    assert "fronts[0].nationality_mix" in message and "AUS" in message and "allow_partners" in message
    data["allow_partners"] = True
    s = Scenario.from_dict(data)
    assert s.allow_partners and "AUS" in s.nations()


@pytest.mark.parametrize("days", [0, 181, -1, 2.5, "8"])
def test_days_out_of_range(days):
    data = default_dict()
    data["days"] = days
    message = error_of(data)
    assert message.startswith("days:") and "1 to 180" in message


@pytest.mark.parametrize("patients", [0, -5, 100_000_001, True])
def test_patients_out_of_range(patients):
    data = default_dict()
    data["patients"] = patients
    message = error_of(data)
    assert message.startswith("patients:") and "100,000,000" in message


def test_patients_zero_names_the_value():
    data = default_dict()
    data["patients"] = 0
    assert "patients: 0 " in error_of(data)


@pytest.mark.parametrize("types", [{}, {"conventional": 0, "drone": 0}, None, []])
def test_warfare_types_empty_or_all_zero(types):
    data = default_dict()
    data["warfare_types"] = types
    message = error_of(data)
    assert "warfare_types" in message and "positive" in message


def test_unknown_warfare_type():
    data = default_dict()
    data["warfare_types"] = {"conventional": 1, "laser": 1}
    message = error_of(data)
    assert "warfare_types" in message and "laser" in message and "artillery" in message


def test_duplicate_front_names():
    data = default_dict()
    data["fronts"][1]["name"] = "Poland"
    message = error_of(data)
    assert "fronts[1].name" in message and "Poland" in message and "unique" in message


def test_unknown_environment_condition():
    data = default_dict()
    data["environment"] = [{"condition": "blizzard"}]
    message = error_of(data)
    assert "environment[0].condition" in message and "blizzard" in message and "extreme_cold" in message


def test_special_event_on_a_front_that_does_not_exist():
    data = default_dict()
    data["special_events"] = [{"type": "mass_casualty", "front": "Mars"}]
    message = error_of(data)
    assert "special_events[0].front" in message and "Mars" in message
    assert all(name in message for name in ("Poland", "Estonia", "Finland"))


def test_unknown_top_level_field():
    data = default_dict()
    data["colour"] = "red"
    message = error_of(data)
    assert "colour" in message and "patients" in message  # names the field and what is allowed


@pytest.mark.parametrize("where, mutate", [
    ("category_mix.BI", lambda d: d.update(category_mix={"BI": -0.1, "NBI": 0.3, "DIS": 0.6, "BSI": 0.2})),
    ("fronts[0].nationality_mix.POL", lambda d: d["fronts"][0].update(nationality_mix={"POL": -1, "LTU": 2})),
    ("fronts[0].casualty_share", lambda d: d["fronts"][0].update(casualty_share=-0.5)),
    ("warfare_types.drone", lambda d: d.update(warfare_types={"conventional": 1, "drone": -1})),
])
def test_negative_share(where, mutate):
    data = default_dict()
    mutate(data)
    message = error_of(data)
    assert message.startswith(where + ":")
    assert "-" in message  # the bad value
    assert "at least 0" in message or "more than 0" in message  # what is allowed


def test_several_problems_are_reported_together_on_one_line():
    data = default_dict()
    data.update(days=0, patients=0, intensity="apocalyptic")
    message = error_of(data)
    assert "days" in message and "patients" in message and "apocalyptic" in message


def test_not_an_object():
    with pytest.raises(ScenarioError):
        Scenario.from_dict([1, 2, 3])


# --- with_overrides ------------------------------------------------------------------------------------------

def test_with_overrides_changes_fields_and_keeps_the_rest():
    s = load_scenario("arctic_operation")
    t = s.with_overrides(patients=5000, seed=99, days=3)
    assert (t.patients, t.seed, t.days) == (5000, 99, 3)
    assert (t.name, t.intensity, [f.name for f in t.fronts]) == (s.name, s.intensity, [f.name for f in s.fronts])
    assert (s.patients, s.seed, s.days) == (1200, 7, 14)  # the original is unchanged (frozen)


def test_with_overrides_none_means_unchanged():
    s = load_scenario()
    t = s.with_overrides(patients=None, seed=None, days=None)
    assert (t.patients, t.seed, t.days) == (s.patients, s.seed, s.days)


@pytest.mark.parametrize("change, field", [({"patients": 0}, "patients"), ({"days": 500}, "days"),
                                           ({"seed": -1}, "seed"), ({"days": 0}, "days")])
def test_with_overrides_validates(change, field):
    with pytest.raises(ScenarioError) as info:
        load_scenario().with_overrides(**change)
    assert str(info.value).startswith(field + ":")


def test_with_overrides_checks_dependent_fields():
    data = default_dict()
    data["special_events"] = [{"type": "mass_casualty", "day": 8}]
    s = Scenario.from_dict(data)
    with pytest.raises(ScenarioError) as info:
        s.with_overrides(days=3)  # the event's day 8 no longer fits
    assert "special_events[0].day" in str(info.value)


# --- force-size mode (docs/casualty-model.md#force-size-mode) ---------------------------------------------------------------------------

def _with_forces(sizes, **overrides):
    data = load_scenario("default").to_dict()
    for front, size in zip(data["fronts"], sizes):
        front["force_size"] = size
    data.update(overrides)
    return Scenario.from_dict(data)


def test_force_size_mode_gives_published_daily_rates():
    sc = _with_forces([20_000, 8_000, 2_000], days=10, intensity="high")
    derived = sc.from_force_size()
    # high intensity: 1.77 WIA + 2.04 DNBI per 1,000 troops per day (FORECAS) -> 3.81 / 1,000 / day
    assert derived.patients == round(30 * 3.81 * 10)
    assert derived.implied_rate() == pytest.approx(3.81, abs=0.01)
    assert 0.2 <= derived.implied_rate() / 10 <= 0.8  # 0.2-0.8 % per day: Ukraine .. Okinawa
    assert derived.category_mix["BI"] == pytest.approx(1.77 / 3.81, abs=1e-6)
    # the non-battle categories keep their proportions to each other
    mix = sc.category_mix
    assert derived.category_mix["DIS"] / derived.category_mix["NBI"] == pytest.approx(mix["DIS"] / mix["NBI"])
    assert [f.casualty_share for f in derived.fronts] == pytest.approx([2 / 3, 8 / 30, 2 / 30])


def test_force_size_mode_scales_battle_casualties_with_intensity():
    low = _with_forces([10_000] * 3, intensity="low").from_force_size()
    extreme = _with_forces([10_000] * 3, intensity="extreme").from_force_size()
    assert extreme.patients > low.patients
    assert extreme.category_mix["BI"] > low.category_mix["BI"]


def test_force_size_mode_needs_every_front_sized():
    sc = _with_forces([10_000, None, 500])
    assert sc.force_size is None and sc.implied_rate() is None
    with pytest.raises(ScenarioError, match=r"fronts\[1\] 'Estonia'"):
        sc.from_force_size()
