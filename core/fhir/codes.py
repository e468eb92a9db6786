"""Code maps for the FHIR output, read once from ``core/reference_data/fhir_terminology.json`` and the SNOMED CT catalogues.

Everything here is a pre-rendered JSON fragment keyed by a contract value (a LOINC code, a body region, a
triage category...), so the bundle builder only splices them together with polars string expressions.
"""
from __future__ import annotations

import hashlib
import json
from functools import cache

from core import reference

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ISO3166 = "urn:iso:std:iso:3166"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
NATIONALITY_URL = "http://hl7.org/fhir/StructureDefinition/patient-nationality"
DEVICE_NAME = "Medical Patients Generator"

# the contract's vital-sign codes that become one blood-pressure panel instead of two observations
BP_SYSTOLIC, BP_DIASTOLIC = "8480-6", "8462-4"


def dumps(obj) -> str:
    """Compact JSON text (no spaces, UTF-8 kept) as every fragment and bundle line is written."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@cache
def terminology() -> dict:
    return json.loads((reference.DATA / "fhir_terminology.json").read_text(encoding="utf-8"))


def base() -> str:
    return terminology()["project_base"]


def service_number_system(nation: str) -> str:
    return terminology()["service_number_system"].format(base=base(), nation=nation)


def triage_system() -> str:
    return terminology()["triage_system"].format(base=base())


def coding(system: str, code: str, display: str | None = None) -> dict:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict:
    return {"coding": [coding(system, code, display)], **({"text": text} if text else {})}


def snomed(code: str, display: str | None = None) -> dict:
    return concept(SNOMED, code, display, display)


@cache
def procedure_displays() -> dict[str, str]:
    return {code: row["display"] for code, row in reference.procedures().items()}


@cache
def severity_concepts() -> dict[str, str]:
    """Contract severity -> JSON of the SNOMED CT qualifier concept (Condition.severity)."""
    qualifiers = {row["code"]: row["display"] for row in reference._csv("qualifiers.csv")}
    return {sev: dumps(concept(SNOMED, code, qualifiers[code])) for sev, code in terminology()["severity"].items()}


@cache
def blood_group_concepts() -> dict[str, str]:
    """Contract blood group (``O+``...) -> JSON of the SNOMED CT finding (core/reference_data/conditions.csv, blood groups)."""
    rows = [r for r in reference._csv("qualifiers.csv") if r["kind"] == "blood_group"]
    out = {}
    for row in rows:  # "Blood group AB Rh(D) positive" -> "AB+"
        parts = row["display"].split()
        key = parts[2] + ("+" if parts[-1] == "positive" else "-")
        out[key] = dumps(concept(SNOMED, row["code"], row["display"], key))
    return out


@cache
def body_site_members() -> dict[str, str]:
    """Body region -> ``"bodySite":[…],`` member text (empty for ``systemic``: no single site)."""
    out = {}
    for region, site in terminology()["body_sites"].items():
        out[region] = "" if site is None else f'"bodySite":[{dumps(concept(SNOMED, site[0], site[1]))}],'
    return out


@cache
def vital_members() -> dict[str, str]:
    """LOINC code -> ``"category":[…],"code":{…},`` member text of a single-value observation."""
    t = terminology()
    out = {}
    for code, spec in t["vital_signs"].items():
        codings = [coding(LOINC, code, spec["display"])] + [coding(LOINC, c, d) for c, d in spec.get("also", [])]
        category = concept(f"{TERMINOLOGY}/observation-category", spec["category"],
                           t["observation_categories"][spec["category"]])
        out[code] = f'"category":[{dumps(category)}],"code":{dumps({"coding": codings, "text": spec["display"]})},'
    return out


def vital_category(code: str) -> str:
    return terminology()["vital_signs"][code]["category"]


@cache
def triage_values() -> dict[str, str]:
    """T1..T4 -> JSON of the valueCodeableConcept: the project's NATO code (+ the LOINC colour answer if one fits)."""
    out = {}
    for cat, spec in terminology()["triage"].items():
        codings = [coding(triage_system(), cat, spec["display"])]
        if spec["loinc"]:
            codings.append(coding(LOINC, *spec["loinc"]))
        out[cat] = dumps({"coding": codings, "text": f"{cat} {spec['display']}"})
    return out


def facility(fac: str) -> dict:
    return terminology()["facilities"][fac]


def uuid_prefix(seed: int, kind: str) -> str:
    """``urn:uuid:`` + the first 19 characters of the UUIDs of one resource kind in a run (RFC 9562 version 8).

    Layout ``RRRRRRRR-RRRR-8KRR-8III-PPPPPPPPPPPP``: R from sha256(seed), K the resource kind (one hex digit),
    III the resource's index within its patient and P the patient id (both zero-padded decimals).
    """
    h = hashlib.sha256(f"medical-patients-generator/fhir/{seed}".encode()).hexdigest()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-8{kind}{h[12:14]}-8"


def shared_uuid(seed: int, *key: str) -> str:
    """A run-wide resource (a facility's Location or Organization, the authoring Device): sha256-derived, version 8."""
    h = hashlib.sha256("/".join(("medical-patients-generator/fhir", str(seed), *key)).encode()).hexdigest()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-8{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"
