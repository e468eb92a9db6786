"""Saved scenarios: every save of a name is a new version (1, 2, …) holding the whole definition."""
from __future__ import annotations

import json
import time
import unicodedata
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from core.scenario import Scenario

from .engine import connect, guarded
from .tables import DESCRIPTION_MAX, NAME_MAX, SCENARIOS, row_dict, utcnow


def clean_name(name: Any) -> str:
    """A scenario name: any Unicode (NFC), stripped, 1..100 characters, no control characters."""
    if not isinstance(name, str):
        raise ValueError(f"scenario name must be text, got {type(name).__name__}")
    text = unicodedata.normalize("NFC", name).strip()
    if not text:
        raise ValueError("scenario name is empty: give 1 to 100 characters")
    if len(text) > NAME_MAX:
        raise ValueError(f"scenario name is {len(text)} characters long: at most {NAME_MAX} allowed")
    bad = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn")})
    if bad:
        raise ValueError(f"scenario name contains control or unassigned characters ({', '.join(bad[:5])}): "
                         f"letters, digits, spaces, punctuation and symbols of any script are allowed")
    return text


def clean_description(text: Any) -> str:
    """A description: up to 1000 characters; line breaks and tabs allowed, other control characters not."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(f"scenario description must be text, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) > DESCRIPTION_MAX:
        raise ValueError(f"scenario description is {len(text)} characters long: at most {DESCRIPTION_MAX} allowed")
    bad = sorted({f"U+{ord(c):04X}" for c in text
                  if unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\r\t"})
    if bad:
        raise ValueError(f"scenario description contains control characters ({', '.join(bad[:5])}): "
                         f"text, line breaks and tabs are allowed")
    return text


_SCENARIO_COLS = (SCENARIOS.c.name, SCENARIOS.c.version, SCENARIOS.c.parent_version, SCENARIOS.c.description,
                  SCENARIOS.c.sha256, SCENARIOS.c.created_at)


@guarded
def save_scenario(engine: sa.Engine, name: str, scenario, description: str = "") -> dict:
    """Save ``scenario`` under ``name`` as a new version (latest + 1; the first save is version 1)."""
    name, description = clean_name(name), clean_description(description)
    if isinstance(scenario, dict):
        scenario = Scenario.from_dict(scenario)
    if not isinstance(scenario, Scenario):
        raise ValueError(f"save_scenario needs a Scenario or a scenario dict, got {type(scenario).__name__}")
    definition = scenario.to_dict()
    for attempt in range(5):  # two savers of one name at once: the unique (name, version) index decides
        try:
            with connect(engine, begin=True) as conn:
                latest = conn.execute(sa.select(sa.func.max(SCENARIOS.c.version))
                                      .where(SCENARIOS.c.name == name)).scalar()
                row = {"name": name, "version": (latest or 0) + 1, "parent_version": latest,
                       "description": description, "definition": definition, "sha256": scenario.sha256(),
                       "created_at": utcnow()}
                conn.execute(SCENARIOS.insert().values(**row))
            return {k: v for k, v in row.items() if k != "definition"}
        except sa_exc.IntegrityError:
            if attempt == 4:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


@guarded
def list_scenarios(engine: sa.Engine) -> list[dict]:
    """The latest version of every saved scenario name, by name."""
    latest = (sa.select(SCENARIOS.c.name, sa.func.max(SCENARIOS.c.version).label("v"))
              .group_by(SCENARIOS.c.name).subquery())
    q = (sa.select(*_SCENARIO_COLS)
         .join(latest, sa.and_(SCENARIOS.c.name == latest.c.name, SCENARIOS.c.version == latest.c.v))
         .order_by(SCENARIOS.c.name))
    with connect(engine) as conn:
        return [row_dict(r) for r in conn.execute(q)]


@guarded
def scenario_versions(engine: sa.Engine, name: str) -> list[dict]:
    """Every version of ``name``, oldest first (empty for an unknown name)."""
    name = clean_name(name)
    q = sa.select(*_SCENARIO_COLS).where(SCENARIOS.c.name == name).order_by(SCENARIOS.c.version)
    with connect(engine) as conn:
        return [row_dict(r) for r in conn.execute(q)]


@guarded
def load_scenario(engine: sa.Engine, name: str, version: int | None = None) -> Scenario:
    """The saved scenario (its latest version by default) as a validated core.scenario.Scenario."""
    name = clean_name(name)
    q = sa.select(SCENARIOS.c.definition, SCENARIOS.c.version).where(SCENARIOS.c.name == name)
    q = q.where(SCENARIOS.c.version == int(version)) if version is not None else \
        q.order_by(SCENARIOS.c.version.desc()).limit(1)
    with connect(engine) as conn:
        row = conn.execute(q).first()
    if row is None:
        which = f"version {version} of " if version is not None else ""
        raise LookupError(f"no saved scenario {which}{name!r}")
    definition = row.definition if isinstance(row.definition, dict) else json.loads(row.definition)
    return Scenario.from_dict(definition, base=definition)


@guarded
def delete_scenario(engine: sa.Engine, name: str) -> int:
    """Delete every version of ``name``; returns how many were deleted (0 for an unknown name)."""
    name = clean_name(name)
    with connect(engine, begin=True) as conn:
        return conn.execute(SCENARIOS.delete().where(SCENARIOS.c.name == name)).rowcount
