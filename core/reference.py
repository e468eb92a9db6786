"""Reference data from ``core/reference_data``: loaded once per process, read-only afterwards.

Every table lives in a data file (JSON or CSV) with its source; this module only parses, normalises and
indexes them. Nothing here is written at run time.
"""
from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

DATA = Path(__file__).parent / "reference_data"


def _json(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@cache
def nations_file() -> dict:
    return _json("nations.json")


@cache
def nato_codes() -> frozenset[str]:
    return frozenset(nations_file()["nations"])


@cache
def partner_codes() -> frozenset[str]:
    return frozenset(nations_file()["partners"])


def nation(code: str) -> dict:
    data = nations_file()
    return data["nations"].get(code) or data["partners"][code]


@cache
def arrivals() -> dict:
    return _json("arrivals.json")


@cache
def injuries() -> dict:
    return _json("injuries.json")


@cache
def flow() -> dict:
    return _json("flow.json")


@cache
def capacity() -> dict:
    return _json("capacity.json")


@cache
def vitals() -> dict:
    return _json("vitals.json")


@cache
def calibration_targets() -> MappingProxyType:
    """Published calibration targets by id: metric, low, high (proportions) and source."""
    return MappingProxyType(_json("calibration.json")["targets"])


@cache
def _presets_file() -> dict:
    return _json("presets.json")


def default_scenario() -> dict:
    return json.loads(json.dumps(_presets_file()["default"]))  # a fresh copy: callers may change it


def presets() -> MappingProxyType:
    return MappingProxyType(_presets_file()["presets"])


@cache
def conditions() -> dict[str, dict[str, str]]:
    """SNOMED CT condition catalogue: code -> row (display, semantic_tag, source...)."""
    return {row["code"]: row for row in _csv("conditions.csv")}


@cache
def procedures() -> dict[str, dict[str, str]]:
    return {row["code"]: row for row in _csv("procedures.csv")}


def display(code: str) -> str:
    return conditions()[code]["display"]


@cache
def name_pools(nation_code: str) -> dict:
    """Name pools of one nation (built from Faker's locale data by tools/build_name_pools.py)."""
    return _json(f"names/{nation_code}.json")
