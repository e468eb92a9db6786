"""Checks on the SNOMED CT catalogue data files (docs/casualty-model.md, Coded conditions)."""

import csv
import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "core" / "reference_data"

FILES = {
    "conditions.csv": ["code", "display", "semantic_tag", "source_key", "source"],
    "procedures.csv": ["code", "display", "semantic_tag", "source_key", "source"],
    "qualifiers.csv": ["code", "display", "semantic_tag", "kind", "source_key", "source"],
}

# §6.11: codes that may appear only with their verified meaning ...
ALLOWED_ONLY_AS = {
    "125670008": "Foreign body",
    "125605004": "Fracture of bone",
    "284551006": "Laceration of foot",
    "275272006": "Brain damage - traumatic",
    "195662009": "Acute viral pharyngitis",
    "371924009": "Moderate to severe",
    "112149005": "Blood group B",
    "165743006": "Blood group AB",
}
# ... and codes that must not appear at all (wrong or unverified in the older system).
FORBIDDEN = {
    "125596004", "7200002",
    "125689001", "361220002", "19130008", "2055003", "37782003", "55566008",
    "372963008", "302914006", "428794004", "409711008", "87991007", "23924001",
    "45170000", "73249009", "127294003", "39579001",
    # §6.10 "unverified, do not use"
    "264957007", "81121007", "25353009", "74770008", "22640007", "46866001",
    # the design notes printed 23674004 for orotracheal intubation; it fails the SCTID
    # Verhoeff check digit. The real concept is 232674004.
    "23674004",
}

BLOOD = {
    "278147001": "Blood group O Rh(D) positive",
    "278148006": "Blood group O Rh(D) negative",
    "278149003": "Blood group A Rh(D) positive",
    "278152006": "Blood group A Rh(D) negative",
    "278150003": "Blood group B Rh(D) positive",
    "278153001": "Blood group B Rh(D) negative",
    "278151004": "Blood group AB Rh(D) positive",
    "278154007": "Blood group AB Rh(D) negative",
    "58460004": "Blood group O",
    "112144000": "Blood group A",
    "112149005": "Blood group B",
    "165743006": "Blood group AB",
    "165747007": "RhD positive",
    "165746003": "RhD negative",
}
SEVERITY = {
    "255604002": "Mild",
    "6736007": "Moderate severity",  # PT in SNOMED CT Intl 2025-02-01 (FSN "Moderate (severity modifier)")
    "24484000": "Severe",
    "442452003": "Life threatening severity",
}


# Verhoeff dihedral check digit, as used by every SNOMED CT identifier (SCTID).
_D = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
      [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
      [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
_P = [list(range(10)), [1, 5, 7, 6, 2, 8, 3, 0, 9, 4]]
for _i in range(2, 8):
    _P.append([_P[_i - 1][_P[1][_j]] for _j in range(10)])


def verhoeff_ok(code: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(code)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c == 0


def test_verhoeff_self_check():
    assert verhoeff_ok("138875005")  # SNOMED CT root concept
    assert verhoeff_ok("404684003")  # Clinical finding
    assert not verhoeff_ok("138875006")
    assert not verhoeff_ok("23674004")


def read(name):
    with open(DATA / name, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == FILES[name], f"{name}: header {reader.fieldnames}"
        return list(reader)


@pytest.fixture(scope="module", params=sorted(FILES))
def table(request):
    return request.param, read(request.param)


def test_non_empty_fields(table):
    name, rows = table
    assert rows, f"{name} is empty"
    for row in rows:
        for col in ("code", "display", "semantic_tag", "source"):
            assert row[col] and row[col].strip() == row[col], f"{name}: bad {col} in {row}"


def test_codes_are_sctids_and_unique(table):
    name, rows = table
    codes = [r["code"] for r in rows]
    for c in codes:
        assert re.fullmatch(r"[1-9][0-9]{5,17}", c), f"{name}: malformed code {c!r}"
    for c in codes:
        # partition identifier (2nd/3rd digit from the right) must be a concept (00 or 10)
        assert c[-3:-1] in ("00", "10"), f"{name}: {c} is not a concept identifier"
        assert verhoeff_ok(c), f"{name}: {c} fails the SCTID Verhoeff check digit"
    dupes = {c for c in codes if codes.count(c) > 1}
    assert not dupes, f"{name}: duplicate codes {dupes}"


def test_sorted_by_code(table):
    name, rows = table
    codes = [int(r["code"]) for r in rows]
    assert codes == sorted(codes), f"{name} not sorted by code"


def test_no_wrong_codes(table):
    name, rows = table
    for row in rows:
        code = row["code"]
        assert code not in FORBIDDEN, f"{name}: forbidden code {code} ({row['display']})"
        if code in ALLOWED_ONLY_AS:
            assert row["display"] == ALLOWED_ONLY_AS[code], (
                f"{name}: {code} must be {ALLOWED_ONLY_AS[code]!r}, got {row['display']!r}")


def test_blood_groups():
    rows = {r["code"]: r for r in read("qualifiers.csv")}
    for code, display in BLOOD.items():
        assert code in rows, f"blood-group code {code} missing"
        assert rows[code]["display"] == display
        assert rows[code]["semantic_tag"] == "finding"
    assert rows["112149005"]["kind"] == "abo" and rows["165743006"]["kind"] == "abo"
    assert rows["165747007"]["kind"] == rows["165746003"]["kind"] == "rhd"
    assert sum(r["kind"] == "blood_group" for r in rows.values()) == 8


def test_severity_qualifiers():
    rows = {r["code"]: r for r in read("qualifiers.csv")}
    kinds = {"severity", "blood_group", "abo", "rhd"}
    assert {r["kind"] for r in rows.values()} <= kinds
    for code, display in SEVERITY.items():
        assert rows[code]["display"] == display
        assert rows[code]["kind"] == "severity"
        assert rows[code]["semantic_tag"] == "qualifier value"


def test_primary_codes_present():
    """Every code injuries.json names as a candidate condition is in conditions.csv."""
    codes = {r["code"] for r in read("conditions.csv")}
    needed = """127295002 110030002 82271004 283545005 125666000 62564004 125593007 282752000
    2999009 274205003 370247008 90460009 1388867009 262525000 233645004 31892009 426936004
    422916003 33737001 125665001 443183003 128069005 424863004 77493009 262560006 15724005
    1734006 282766005 262595009 397181002 127278005 65966004 403191005 403192003 58150001
    71620000 31978002 262519004 371704001 360002 403190006 43251000
    44465007 444470001 444448004 239720000 30832001 70704007 307731004 279039007 16114001
    62106007 125667009 39848009 1197782006 34095006 386689009 370977006 284549007 283371005
    283385000 284551006 399963005 161891005 283682007
    54150009 195662009 43878008 444814009 10509002 6142004 233604007 840539006 25374005
    62315008 16932000 68566005 128045006 9826008 386661006 27355003
    67195008 73595000 197480006 193462001 35489007 47505003 267036007 21522001 15188001 60862001
    """.split()
    missing = [c for c in needed if c not in codes]
    assert not missing, f"missing condition codes: {missing}"


def test_procedures_present():
    codes = {r["code"] for r in read("procedures.csv")}
    needed = """20655006 26906007 3895009 51241000 735346000 232674004 57485005 79321009 274474001
    18629005 116859006 89666000 387713003 36777000 305351004 225358003 288086009 409063005
    91251008""".split()
    assert set(needed) <= codes
    assert all(r["semantic_tag"] == "procedure" for r in read("procedures.csv"))
