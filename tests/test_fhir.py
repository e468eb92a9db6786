"""FHIR R4 output: every bundle validates (fhir.resources R4B models + the rules they skip), says what the contract
tables say, is an IPS document with the ``ips`` profile, and is reproducible from the seed."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from operator import attrgetter
from pathlib import Path

import polars as pl
import pytest
from fhir.resources.R4B.bundle import Bundle

from core import generator, reference
from core.fhir import BundleBuilder
from core.fhir import codes
from core.fhir.rules import bundle_problems
from core.run import generate_run
from core.scenario import load_scenario, preset
from core.schema import Batch
from core.sinks import create_sink, decrypt_file

from conftest import REPO, assert_contract_holds

SCENARIOS = ["default", *reference.presets()]


def one_batch(name: str = "default", patients: int = 1500, seed: int = 11) -> Batch:
    scenario = (load_scenario(name) if name == "default" else preset(name)).with_overrides(patients=patients,
                                                                                            seed=seed)
    batches = list(generator.stream(scenario, chunk_size=patients))
    return Batch(*(pl.concat([getattr(b, t) for b in batches]) for t in ("patients", "events", "conditions",
                                                                            "vitals")))


def validate_all(lines: list[str]) -> list[str]:
    """Every problem of every bundle: pydantic errors of the R4B models, then the rules they do not check."""
    problems = []
    for i, line in enumerate(lines):
        try:
            Bundle.model_validate_json(line)
        except Exception as exc:  # pydantic ValidationError: keep the first lines of the message
            problems.append(f"bundle {i}: {str(exc)[:400]}")
        problems += [f"bundle {i}: {p}" for p in bundle_problems(json.loads(line))]
    return problems


@pytest.fixture(scope="module")
def batch() -> Batch:
    return one_batch()


@pytest.fixture(scope="module")
def collection(batch) -> list[dict]:
    return [json.loads(line) for line in BundleBuilder(11).render(batch)]


@pytest.fixture(scope="module")
def ips(batch) -> list[dict]:
    return [json.loads(line) for line in BundleBuilder(11, "ips").render(batch)]


def resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


# --- validity ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["collection", "ips"])
def test_sample_of_every_scenario_validates(profile):
    for name in SCENARIOS:
        lines = BundleBuilder(3, profile).render(one_batch(name, patients=150, seed=3))
        assert len(lines) == 150
        assert validate_all(lines) == [], name


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_every_bundle_of_a_5000_patient_run_validates(tmp_path, name):
    scenario = (load_scenario(name) if name == "default" else preset(name)).with_overrides(patients=5000, seed=29)
    generate_run(scenario, tmp_path, fmt="fhir", fhir_profile="ips" if name != "default" else None)
    lines = (tmp_path / "fhir" / "Bundle.ndjson").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5000
    with ProcessPoolExecutor(2) as pool:  # validating 5,000 bundles takes ~25 s on one core
        problems = [p for part in pool.map(validate_all, [lines[i::2] for i in range(2)]) for p in part]
    assert problems == []


@pytest.mark.parametrize("defect, needle", [
    (lambda b: b["entry"][1].__setitem__("fullUrl", b["entry"][0]["fullUrl"]), "appears twice"),
    (lambda b: resources(b, "Condition")[0]["subject"].__setitem__("reference", "urn:uuid:" + "0" * 8 + "-0000-8000-8000-" + "0" * 12),
     "does not resolve"),
    (lambda b: resources(b, "Patient")[0].__setitem__("gender", "m"), "Patient.gender 'm'"),
    (lambda b: resources(b, "Patient")[0].__setitem__("name", []), "empty array"),
    (lambda b: resources(b, "Patient")[0].__setitem__("active", None), "null"),
    (lambda b: resources(b, "Encounter")[0].__setitem__("status", "done"), "Encounter.status 'done'"),
    (lambda b: resources(b, "Observation")[0].__setitem__("status", "ok"), "Observation.status 'ok'"),
    (lambda b: resources(b, "Condition")[0]["clinicalStatus"]["coding"][0].__setitem__("code", "alive"),
     "Condition.clinicalStatus 'alive'"),
    (lambda b: resources(b, "Observation")[0].__setitem__("effectiveDateTime", "2025-06-01T10:00:00"),
     "without a time zone"),
])
def test_rules_catch_what_the_models_let_through(collection, defect, needle):
    bundle = json.loads(json.dumps(collection[0]))
    assert bundle_problems(bundle) == []
    defect(bundle)
    assert any(needle in p for p in bundle_problems(bundle)), bundle_problems(bundle)


# --- round trip: the FHIR says what the tables say ----------------------------------------------------
def test_patient_round_trip(batch, collection):
    rows = batch.patients.to_dicts()
    assert len(collection) == len(rows)
    for bundle, row in zip(collection, rows):
        patient, = resources(bundle, "Patient")
        ident, = patient["identifier"]
        assert ident["value"] == row["service_number"]
        assert ident["system"] == codes.service_number_system(row["nationality"])
        assert ident["type"]["coding"][0]["code"] == "MI"
        assert patient["name"][0]["family"] == row["family_name"]
        assert patient["name"][0]["given"] == [row["given_name"]]
        assert patient["gender"] == row["sex"]
        assert patient["birthDate"] == row["birth_date"].isoformat()
        ext, = patient["extension"]
        assert ext["url"] == "http://hl7.org/fhir/StructureDefinition/patient-nationality"
        assert ext["extension"][0]["url"] == "code"
        assert ext["extension"][0]["valueCodeableConcept"]["coding"][0] == {"system": "urn:iso:std:iso:3166",
                                                                            "code": row["nationality"]}
        if row["outcome"] in ("KIA", "DOW"):
            assert patient["deceasedDateTime"] == row["outcome_time"].isoformat()
        else:
            assert "deceasedDateTime" not in patient


def test_conditions_round_trip(batch, collection):
    want = defaultdict(list)
    for row in batch.conditions.to_dicts():
        want[row["patient_id"]].append(row)
    sites = codes.terminology()["body_sites"]
    severities = codes.terminology()["severity"]
    for bundle, row in zip(collection, batch.patients.to_dicts()):
        got = resources(bundle, "Condition")
        rows = want[row["patient_id"]]
        assert len(got) == len(rows) >= 1
        for cond, crow in zip(got, rows):
            assert cond["code"]["coding"][0] == {"system": codes.SNOMED, "code": crow["code"], "display": crow["display"]}
            assert cond["severity"]["coding"][0]["code"] == severities[crow["severity"]]
            assert cond["onsetDateTime"] == row["injury_time"].isoformat()
            if sites[crow["body_region"]] is None:
                assert "bodySite" not in cond
            else:
                assert cond["bodySite"][0]["coding"][0]["code"] == sites[crow["body_region"]][0]
        assert got[0]["code"]["coding"][0]["code"] == row["condition_code"]  # rank 1 is the primary


def test_vital_signs_round_trip(batch, collection):
    want = Counter((r["patient_id"], r["time"].isoformat(), r["code"], r["value"], r["unit"])
                   for r in batch.vitals.to_dicts())
    got = Counter()
    for bundle, row in zip(collection, batch.patients.to_dicts()):
        for obs in resources(bundle, "Observation"):
            code = obs["code"].get("coding", [{}])[0].get("code")
            if code == "85354-9":  # blood pressure panel
                assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
                for comp in obs["component"]:
                    q = comp["valueQuantity"]
                    got[(row["patient_id"], obs["effectiveDateTime"], comp["code"]["coding"][0]["code"], q["value"],
                         q["code"])] += 1
            elif code in codes.terminology()["vital_signs"]:
                q = obs["valueQuantity"]
                assert q["system"] == codes.UCUM and q["unit"] == q["code"]
                assert obs["category"][0]["coding"][0]["code"] == codes.vital_category(code)
                got[(row["patient_id"], obs["effectiveDateTime"], code, q["value"], q["code"])] += 1
    assert got == want


def test_triage_and_blood_group_round_trip(batch, collection):
    for bundle, row in zip(collection, batch.patients.to_dicts()):
        values = [o["valueCodeableConcept"] for o in resources(bundle, "Observation") if "valueCodeableConcept" in o]
        triage = [v for v in values if v["coding"][0]["system"] == codes.triage_system()]
        assert [t["coding"][0]["code"] for t in triage] == [row["triage"]]
        assert [v["text"] for v in values if v["coding"][0]["system"] == codes.SNOMED] == [row["blood_group"]]


def test_encounters_follow_the_events(batch, collection):
    events = defaultdict(list)
    for e in batch.events.to_dicts():
        events[e["patient_id"]].append(e)
    for bundle, row in zip(collection, batch.patients.to_dicts()):
        stays = []  # consecutive events at one facility
        for e in events[row["patient_id"]]:
            if not stays or stays[-1][0] != e["facility"]:
                stays.append((e["facility"], []))
            stays[-1][1].append(e)
        encounters = resources(bundle, "Encounter")
        locations = {e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Location"}
        assert len(encounters) == len(stays)
        for i, (enc, (fac, evs)) in enumerate(zip(encounters, stays)):
            assert enc["period"]["start"] == evs[0]["time"].isoformat()
            assert locations[enc["location"][0]["location"]["reference"]]["name"].startswith(
                codes.facility(fac)["name"])
            ended = evs[-1]["event"] in ("departure", "death", "rtd")
            assert enc["status"] == ("finished" if ended else "in-progress")
            assert ("end" in enc["period"]) == ended
            if i:  # linked in order: the previous facility is the origin
                assert enc["hospitalization"]["origin"]["reference"] == encounters[i - 1]["location"][0]["location"]["reference"]
        treatments = [(e["detail"], e["time"].isoformat()) for e in events[row["patient_id"]]
                      if e["event"] == "treatment_start"]
        assert [(p["code"]["coding"][0]["code"], p["performedDateTime"]) for p in resources(bundle, "Procedure")] == treatments


# --- IPS document ---------------------------------------------------------------------------------------
def test_ips_document_structure(ips, batch):
    wanted = {v[0] for k, v in codes.terminology()["ips"].items() if k != "document"}
    for bundle in ips:
        assert bundle["type"] == "document" and bundle["identifier"]["value"].startswith("urn:uuid:")
        assert "timestamp" in bundle
        comp = bundle["entry"][0]["resource"]
        assert comp["resourceType"] == "Composition"
        assert comp["type"]["coding"][0]["code"] == "60591-5"
        by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        assert by_url[comp["subject"]["reference"]]["resourceType"] == "Patient"
        assert by_url[comp["author"][0]["reference"]]["resourceType"] == "Device"
        sections = {s["code"].get("coding", [{}])[0].get("code"): s for s in comp["section"]}
        assert wanted <= set(sections)  # medications, allergies, problems (required), procedures, vital signs
        for s in comp["section"]:
            assert s["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
            assert ("entry" in s) != ("emptyReason" in s)
        for code in ("10160-0", "48765-2"):  # no medication or allergy data in a casualty record
            assert sections[code]["emptyReason"]["coding"][0]["code"] == "unavailable"
        problems = [by_url[r["reference"]] for r in sections["11450-4"]["entry"]]
        assert problems and {p["resourceType"] for p in problems} == {"Condition"}
        assert len(problems) == len(resources(bundle, "Condition"))
        procs = sections["47519-4"]
        assert len(procs.get("entry", [])) == len(resources(bundle, "Procedure"))
        if not procs.get("entry"):
            assert procs["emptyReason"]["coding"][0]["code"] == "nilknown"


def test_ips_narrative_is_the_handover(ips, batch):
    from core.handover import handover_texts
    texts = handover_texts(batch.patients, batch.events, batch.conditions, batch.vitals)["handover"].to_list()
    for bundle, text in zip(ips[:50], texts):
        div = bundle["entry"][0]["resource"]["text"]["div"]
        assert text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in div


# --- reproducible ---------------------------------------------------------------------------------------
def test_same_seed_same_bytes_for_any_chunking(batch):
    whole = BundleBuilder(11).render_text(batch)
    ids = batch.patients["patient_id"]
    cut = int(ids[len(ids) // 3])

    def part(lo, hi):
        return Batch(*(f.filter(pl.col("patient_id").is_between(lo, hi)) for f in
                       (batch.patients, batch.events, batch.conditions, batch.vitals)))

    pieces = BundleBuilder(11).render_text(part(1, cut)) + BundleBuilder(11).render_text(part(cut + 1, 10**9))
    assert pieces == whole
    other = BundleBuilder(12).render(batch)[0]
    assert json.loads(other)["entry"][0]["fullUrl"] != json.loads(whole.split("\n")[0])["entry"][0]["fullUrl"]


def test_generator_transform_runs_once_per_block_in_order():
    """The generic worker hook: each BLOCK's result comes once, with the batch holding the block's last patient,
    and the tables are those of a plain stream, for any chunk size and worker count."""
    scenario = load_scenario("default").with_overrides(patients=generator.BLOCK + 5000, seed=4)
    plain = list(generator.stream(scenario, chunk_size=7000))
    for chunk, workers in ((7000, 1), (7000, 2), (40_000, 2)):
        got = list(generator.stream(scenario, chunk_size=chunk, workers=workers, transform=attrgetter("last_id")))
        assert [extra for _, extras in got for extra in extras] == [generator.BLOCK, scenario.patients]
        for batch, extras in got:
            assert all(last <= batch.last_id for last in extras)
        merged = Batch(*(pl.concat([getattr(b, t) for b, _ in got]) for t in ("patients", "events", "conditions",
                                                                                 "vitals")))
        assert merged.patients.equals(pl.concat([b.patients for b in plain]))
        assert merged.vitals.equals(pl.concat([b.vitals for b in plain]))


@pytest.fixture(scope="module")
def run_40k(tmp_path_factory) -> tuple:
    scenario = load_scenario("default").with_overrides(patients=2 * generator.BLOCK + 7000, seed=5)
    out = tmp_path_factory.mktemp("fhir-w1")
    manifest = generate_run(scenario, out, fmt="fhir", workers=1)  # rendered in this process, on a thread
    assert manifest["workers"] == 1
    return scenario, out, manifest


@pytest.mark.parametrize("workers, chunk_size", [(2, generator.BLOCK), (2, 5000), (3, 50_000)])
def test_worker_rendered_bundles_are_the_same_bytes(tmp_path, run_40k, workers, chunk_size):
    """With workers the bundles are rendered in the worker processes (spill files): same file, nothing left over."""
    scenario, ref_dir, ref = run_40k
    manifest = generate_run(scenario, tmp_path, fmt="fhir", workers=workers, chunk_size=chunk_size)
    files = {f["name"]: f for f in manifest["files"]}
    want = {f["name"]: f for f in ref["files"]}
    assert files["fhir/Bundle.ndjson"]["sha256"] == want["fhir/Bundle.ndjson"]["sha256"]
    assert files["fhir/Bundle.ndjson"]["rows"] == scenario.patients
    assert [p.name for p in (tmp_path / "fhir").iterdir()] == ["Bundle.ndjson"]  # no spill file left
    for table in ("patients", "events", "conditions", "vitals"):
        assert pl.read_parquet(tmp_path / f"{table}.parquet").equals(pl.read_parquet(ref_dir / f"{table}.parquet"))


def test_cancelled_worker_run_leaves_no_spill_files(tmp_path):
    cancel = threading.Event()
    scenario = load_scenario("default").with_overrides(patients=3 * generator.BLOCK, seed=6)
    manifest = generate_run(scenario, tmp_path / "run", fmt="fhir", workers=2, chunk_size=4000, cancel=cancel,
                            on_progress=lambda _: cancel.set())
    assert manifest["status"] == "cancelled"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["manifest.json"]


def test_a_missing_spill_file_fails_the_run(tmp_path, batch):
    """The sink refuses to close with fewer bundles than patients (a block result that never arrived)."""
    sink = create_sink("fhir", tmp_path, seed=11).open()
    renderer = sink.block_transform()
    spill = renderer(batch)
    sink.write(batch, [])  # the tables, but not the bundles
    with pytest.raises(RuntimeError, match="bundles written for"):
        sink.close()
    assert Path(spill[0]).exists()
    sink.abort()  # removes the sink's spill files with everything else it wrote
    assert not Path(spill[0]).exists() and list(tmp_path.iterdir()) == []


def test_no_codeable_concept_repeats_its_display_as_text(collection):
    """Lean output: a CodeableConcept's text is left out where its only coding's display says the same."""
    def walk(node):
        if isinstance(node, dict):
            if "coding" in node and "text" in node:
                assert [c.get("display") for c in node["coding"]][:1] != [node["text"]], node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    for bundle in collection[:200]:
        walk(bundle)


# --- the sink and the CLI -------------------------------------------------------------------------------
def test_fhir_run_writes_tables_and_bundles(tmp_path):
    scenario = load_scenario("default").with_overrides(patients=700, seed=5)
    manifest = generate_run(scenario, tmp_path, fmt="fhir", chunk_size=300)
    names = {f["name"]: f for f in manifest["files"]}
    assert {"patients.parquet", "events.parquet", "conditions.parquet", "vitals.parquet", "fhir/Bundle.ndjson"} <= set(names)
    assert names["fhir/Bundle.ndjson"]["rows"] == 700 and manifest["fhir_profile"] == "collection"
    assert manifest["workers"] == 1  # rendered in this process, on threads
    lines = (tmp_path / "fhir" / "Bundle.ndjson").read_bytes().splitlines()
    assert len(lines) == 700 and names["fhir/Bundle.ndjson"]["bytes"] == (tmp_path / "fhir" / "Bundle.ndjson").stat().st_size
    assert_contract_holds(tmp_path)
    patients = pl.read_parquet(tmp_path / "patients.parquet")
    firsts = [resources(json.loads(line), "Patient")[0]["identifier"][0]["value"] for line in lines]
    assert firsts == patients["service_number"].to_list()


def test_fhir_bundle_file_gzip_and_encryption(tmp_path, batch):
    with create_sink("fhir", tmp_path, compress=True, password="pw", seed=11) as sink:
        sink.write(batch)
    enc = tmp_path / "fhir" / "Bundle.ndjson.gz.enc"
    assert enc.exists() and "fhir/Bundle.ndjson.gz.enc" in [f["name"] for f in sink.files]
    plain = gzip.decompress(decrypt_file(enc, tmp_path / "b.gz", "pw").read_bytes())
    assert plain == BundleBuilder(11).render_text(batch).encode()


def test_failed_fhir_run_leaves_nothing(tmp_path, batch):
    with pytest.raises(RuntimeError):
        with create_sink("fhir", tmp_path / "run", seed=1) as sink:
            sink.write(batch)
            raise RuntimeError("stop")
    assert not (tmp_path / "run" / "fhir").exists()
    assert [p.name for p in (tmp_path / "run").iterdir()] == []


def test_profile_needs_the_fhir_format():
    result = subprocess.run([sys.executable, "-m", "core", "generate", "--patients", "10", "--format", "csv",
                             "--fhir-profile", "ips", "--out", "/nonexistent/never"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert "--fhir-profile" in result.stderr and "--format fhir" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="unknown FHIR profile"):
        BundleBuilder(1, "document")


def test_fhir_package_imports_no_sink_and_no_cycle():
    """core.fhir renders text and the FHIR sink writes it: no import of core.sinks from core/fhir (at the top or
    inside a function), and the modules of core/fhir import one another one way."""
    import ast
    folder = REPO / "core" / "fhir"
    imports: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = "core.fhir." * (node.level > 0) + (node.module or "")
                found |= {base.rstrip(".")} | {f"{base}.{alias.name}".replace("..", ".") for alias in node.names}
        imports[path.stem] = found
    assert not any(name.startswith("core.sinks") for found in imports.values() for name in found)
    local = {stem: {name.rsplit(".", 1)[-1] for name in found if name.startswith("core.fhir.")} & set(imports) - {stem}
             for stem, found in imports.items()}
    done: list[str] = []
    while len(done) < len(local):  # peel modules whose imports are all peeled: a cycle would stop this
        ready = [m for m in local if m not in done and local[m] <= set(done)]
        assert ready, f"an import cycle among or under {sorted(set(local) - set(done))}"
        done += ready
