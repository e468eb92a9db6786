"""Bundle rules the FHIR R4 models (fhir.resources) do not check: used by the tests on every build.

``bundle_problems(bundle)`` returns a list of one-line problems (empty when the bundle is fine):
unique ``urn:uuid`` full URLs, every reference resolving inside the bundle, no nulls and no empty arrays, objects
or strings, codes inside their required value sets, date-times with a time zone, and the document rules of an
IPS bundle (identifier, timestamp, Composition first).
"""
from __future__ import annotations

import re

UUID_URL = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
TIME_KEYS = {"effectiveDateTime", "performedDateTime", "onsetDateTime", "deceasedDateTime", "start", "end",
             "timestamp", "date"}

# required bindings (FHIR R4 value sets) of the elements this output fills
REQUIRED = {
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                         "history", "searchset", "collection"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Encounter", "status"): {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                              "entered-in-error", "unknown"},
    ("Condition", "clinicalStatus"): {"active", "recurrence", "relapse", "inactive", "remission", "resolved"},
    ("Condition", "verificationStatus"): {"unconfirmed", "provisional", "differential", "confirmed", "refuted",
                                          "entered-in-error"},
    ("Observation", "status"): {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                "entered-in-error", "unknown"},
    ("Procedure", "status"): {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                              "entered-in-error", "unknown"},
    ("Composition", "status"): {"preliminary", "final", "amended", "entered-in-error"},
    ("Location", "status"): {"active", "suspended", "inactive"},
    ("Location", "mode"): {"instance", "kind"},
}
CODE_SYSTEMS = {("Condition", "clinicalStatus"): "http://terminology.hl7.org/CodeSystem/condition-clinical",
                ("Condition", "verificationStatus"): "http://terminology.hl7.org/CodeSystem/condition-ver-status"}
ENCOUNTER_LOCATION_STATUS = {"planned", "active", "reserved", "completed"}


def _walk(node, path: str, problems: list[str], references: list[tuple[str, str]]) -> None:
    if node is None:
        problems.append(f"{path}: null")
    elif isinstance(node, dict):
        if not node:
            problems.append(f"{path}: empty object")
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                references.append((path, value))
            if key in TIME_KEYS and isinstance(value, str) and "T" in value and not DATE_TIME.match(value):
                problems.append(f"{path}.{key}: date-time {value!r} without a time zone")
            if key in TIME_KEYS and isinstance(value, str) and key != "date" and not DATE_TIME.match(value):
                problems.append(f"{path}.{key}: {value!r} is not a date-time with a time zone")
            _walk(value, f"{path}.{key}", problems, references)
    elif isinstance(node, list):
        if not node:
            problems.append(f"{path}: empty array")
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]", problems, references)
    elif isinstance(node, str) and not node.strip():
        problems.append(f"{path}: empty string")


def _codes(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [c.get("code") for c in value.get("coding", [])]
    return []


def bundle_problems(bundle: dict) -> list[str]:
    problems: list[str] = []
    references: list[tuple[str, str]] = []
    _walk(bundle, "Bundle", problems, references)
    if bundle.get("type") not in REQUIRED[("Bundle", "type")]:
        problems.append(f"Bundle.type {bundle.get('type')!r} not in the bundle-type value set")
    urls = [e.get("fullUrl") for e in bundle.get("entry", [])]
    seen: set[str] = set()
    for url in urls:
        if not isinstance(url, str) or not UUID_URL.match(url):
            problems.append(f"fullUrl {url!r} is not a urn:uuid")
        elif url in seen:
            problems.append(f"fullUrl {url} appears twice")
        seen.add(url)
    for path, target in references:
        if target not in seen:
            problems.append(f"{path}.reference {target} does not resolve inside the bundle")
    for i, e in enumerate(bundle.get("entry", [])):
        resource = e.get("resource", {})
        rtype = resource.get("resourceType")
        for (rt, element), allowed in REQUIRED.items():
            if rt != rtype or element not in resource:
                continue
            system = CODE_SYSTEMS.get((rt, element))
            if system and isinstance(resource[element], dict):
                if any(c.get("system") != system for c in resource[element].get("coding", [])):
                    problems.append(f"entry[{i}] {rt}.{element}: coding system is not {system}")
            for code in _codes(resource[element]):
                if code not in allowed:
                    problems.append(f"entry[{i}] {rt}.{element} {code!r} not in its required value set")
        if rtype == "Encounter":
            for loc in resource.get("location", []):
                if loc.get("status") not in ENCOUNTER_LOCATION_STATUS:
                    problems.append(f"entry[{i}] Encounter.location.status {loc.get('status')!r} not allowed")
    if bundle.get("type") == "document":
        if "identifier" not in bundle or "timestamp" not in bundle:
            problems.append("document Bundle needs identifier and timestamp (bdl-9, bdl-10)")
        entries = bundle.get("entry", [])
        if not entries or entries[0].get("resource", {}).get("resourceType") != "Composition":
            problems.append("document Bundle must start with a Composition (bdl-11)")
    return problems
