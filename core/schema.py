"""The four contract tables (docs/data-contract.md, v1): column names, polars dtypes and the Batch that carries them.

Categorical columns are held as ``pl.Enum`` in memory (cheap to build from integer codes and to write as
dictionary pages); sinks write them as plain strings, which is what the contract promises consumers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

CONTRACT_VERSION = 1

UTC_TIME = pl.Datetime("us", "UTC")

FACILITIES = ("POI", "R1", "R2", "R3", "R4")
CATEGORIES = ("BI", "NBI", "DIS", "BSI")
BI_MECHANISMS = ("explosive", "gunshot", "drone", "burn", "blunt", "crush", "cbrn")
NBI_MECHANISMS = ("fall", "vehicle", "sports_training", "crush", "burn", "heat", "cold", "other_nbi")
# one vocabulary for the column: BI first, then the NBI-only ones, then `none` for DIS/BSI
MECHANISMS = BI_MECHANISMS + tuple(m for m in NBI_MECHANISMS if m not in BI_MECHANISMS) + ("none",)
REGIONS = ("head", "face", "neck", "thorax", "abdomen", "pelvis", "spine", "upper_extremity",
           "lower_extremity", "multiple", "systemic")
SEVERITIES = ("mild", "moderate", "severe", "critical")
TRIAGES = ("T1", "T2", "T3", "T4")
OUTCOMES = ("RTD", "KIA", "DOW", "ROLE4", "IN_CARE")
EVENTS = ("injury", "arrival", "treatment_start", "departure", "death", "rtd", "evacuated")
TERMINAL_EVENTS = ("death", "rtd", "evacuated")
RANKS = tuple(f"OR-{i}" for i in range(1, 10)) + tuple(f"OF-{i}" for i in range(1, 7))
BLOOD_GROUPS = ("O+", "O-", "A+", "A-", "B+", "B-", "AB+", "AB-")
SEXES = ("male", "female")
WARFARE_TYPES = ("conventional", "artillery", "urban", "guerrilla", "drone", "naval", "cbrn", "peacekeeping")
DEATH_TYPES = ("battle", "non_battle")

# integer codes of the vocabularies above, as the engine's numpy columns hold them (position in the tuple)
BI, NBI, DIS, BSI = (CATEGORIES.index(c) for c in ("BI", "NBI", "DIS", "BSI"))
POI, R1, R2, R3, R4 = (FACILITIES.index(f) for f in ("POI", "R1", "R2", "R3", "R4"))
T1, T2, T3, T4 = (TRIAGES.index(t) for t in ("T1", "T2", "T3", "T4"))
EVENT = {e: i for i, e in enumerate(EVENTS)}
MECHANISM = {m: i for i, m in enumerate(MECHANISMS)}
REGION = {r: i for i, r in enumerate(REGIONS)}

# LOINC code -> (LOINC short name, UCUM unit, LOINC long common name); order is the order of a measurement set.
# The contract's `name` column is the short name; FHIR displays use the long common name.
VITAL_SIGNS = {
    "8867-4": ("Heart rate", "/min", "Heart rate"),
    "9279-1": ("Resp rate", "/min", "Respiratory rate"),
    "8480-6": ("BP sys", "mm[Hg]", "Systolic blood pressure"),
    "8462-4": ("BP dias", "mm[Hg]", "Diastolic blood pressure"),
    "59408-5": ("SaO2 % BldA PulseOx", "%", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    "8310-5": ("Body temperature", "Cel", "Body temperature"),
    "9269-2": ("GCS total", "{score}", "Glasgow coma score total"),
}
VITAL_CODES = tuple(VITAL_SIGNS)
VITAL_NAMES = tuple(v[0] for v in VITAL_SIGNS.values())
VITAL_UNITS = ("/min", "mm[Hg]", "%", "Cel", "{score}")


def enum(values) -> pl.Enum:
    return pl.Enum(list(values))


PATIENTS = {
    "patient_id": pl.Int64,
    "service_number": pl.String,
    "given_name": pl.String,
    "family_name": pl.String,
    "sex": enum(SEXES),
    "birth_date": pl.Date,
    "age": pl.Int16,
    "nationality": pl.String,
    "rank": enum(RANKS),
    "blood_group": enum(BLOOD_GROUPS),
    "front": pl.String,
    "category": enum(CATEGORIES),
    "mechanism": enum(MECHANISMS),
    "body_region": enum(REGIONS),
    "polytrauma": pl.Boolean,
    "condition_code": pl.String,
    "condition_display": pl.String,
    "severity": enum(SEVERITIES),
    "triage": enum(TRIAGES),
    "injury_time": UTC_TIME,
    "event_id": pl.String,
    "mass_casualty": pl.Boolean,
    "warfare_type": enum(WARFARE_TYPES),
    "outcome": enum(OUTCOMES),
    "outcome_time": UTC_TIME,
    "last_facility": enum(FACILITIES),
    # extra columns allowed by the contract (docs/data-contract.md)
    "death_type": enum(DEATH_TYPES),
}

# extra patient columns of a run with a medical plan (core.capacity)
CAPACITY_COLUMNS = {
    "wait_min": pl.Int32,    # minutes waited for Role 1 teams, beds, operating tables and vehicles
    "diversions": pl.Int8,   # times taken past a saturated facility
}
PATIENTS_WITH_PLAN = {**PATIENTS, **CAPACITY_COLUMNS}

EVENTS_SCHEMA = {
    "patient_id": pl.Int64,
    "seq": pl.Int16,
    "time": UTC_TIME,
    "facility": enum(FACILITIES),
    "event": enum(EVENTS),
    "detail": pl.String,
}

CONDITIONS = {
    "patient_id": pl.Int64,
    "rank": pl.Int8,
    "code": pl.String,
    "display": pl.String,
    "body_region": enum(REGIONS),
    "severity": enum(SEVERITIES),
}

VITALS = {
    "patient_id": pl.Int64,
    "time": UTC_TIME,
    "facility": enum(FACILITIES),
    "code": enum(VITAL_CODES),
    "name": enum(VITAL_NAMES),
    "value": pl.Float64,
    "unit": enum(VITAL_UNITS),
}

TABLES = {"patients": PATIENTS, "events": EVENTS_SCHEMA, "conditions": CONDITIONS, "vitals": VITALS}


@dataclass(frozen=True)
class Batch:
    """Patients ``first_id``..``last_id`` (inclusive) with all their rows in the other three tables."""

    patients: pl.DataFrame
    events: pl.DataFrame
    conditions: pl.DataFrame
    vitals: pl.DataFrame

    def tables(self) -> dict[str, pl.DataFrame]:
        return {"patients": self.patients, "events": self.events,
                "conditions": self.conditions, "vitals": self.vitals}

    @property
    def size(self) -> int:
        return self.patients.height

    @property
    def first_id(self) -> int:
        return int(self.patients["patient_id"][0])

    @property
    def last_id(self) -> int:
        return int(self.patients["patient_id"][-1])


# a measurement set: the 7 vital signs taken of one patient at one time and facility (VITAL_CODES order)
VITAL_SET_COLUMNS = ("heart_rate", "resp_rate", "bp_sys", "bp_dias", "spo2", "temperature", "gcs")


def measurement_sets(vitals: pl.DataFrame) -> pl.DataFrame | None:
    """The long vitals rows as one row per measurement set (patient_id, time, facility and the 7 values in
    VITAL_SET_COLUMNS), or None when the rows are not whole sets: the generator writes each set as 7 consecutive
    rows of one patient, time and facility in VITAL_CODES order, with every value present. Checked on whole arrays
    (cheap), because whoever uses the sets (the database's ``vital_sets``) must give back exactly these rows."""
    k = len(VITAL_CODES)
    n = vitals.height
    if n % k or vitals["value"].null_count():
        return None
    if n:
        if not (vitals["code"].to_physical().to_numpy().reshape(-1, k) == np.arange(k)).all():
            return None
        for col in ("patient_id", "time", "facility"):
            if vitals[col].null_count():
                return None
            same = vitals[col].to_physical().to_numpy().reshape(-1, k)
            if not (same == same[:, :1]).all():
                return None
    values = vitals["value"].to_numpy().reshape(-1, k)
    return vitals.select("patient_id", "time", "facility").gather_every(k).with_columns(
        pl.Series(name, values[:, i]) for i, name in enumerate(VITAL_SET_COLUMNS))


def empty_batch() -> Batch:
    return Batch(*(pl.DataFrame(schema=s) for s in TABLES.values()))
