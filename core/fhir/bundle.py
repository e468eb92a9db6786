"""One FHIR R4 Bundle per patient, as one line of compact JSON, built for a whole batch with polars expressions.

Each resource type is one polars frame whose ``entry`` column holds ``,{"fullUrl":…,"resource":{…}}`` text,
assembled from pre-rendered fragments (``codes.py``) and the batch's columns; the entries are concatenated per
patient (``group_by`` + ``str.join``) and spliced into the Bundle. No per-patient or per-resource Python runs.

Per patient (collection): Patient, then per role of care used a Location (and an Organization for R1-R4), one
Encounter per facility stay in order, a Condition per ``conditions`` row, an Observation per vital sign (blood
pressure as the standard 85354-9 panel with systolic and diastolic components), the triage category and the
blood group, and a Procedure per treatment. ``profile="ips"`` makes it an IPS document: a Composition first,
the authoring Device, and ``identifier`` + ``timestamp`` on the Bundle.

Full URLs are ``urn:uuid:`` version-8 UUIDs derived from the run seed, the resource kind, the patient id and
the resource's index (``codes.uuid_prefix``), so the same seed gives byte-identical bundles.
"""
from __future__ import annotations

import polars as pl

import core
from core.schema import Batch

from . import codes
from .codes import dumps

PROFILES = ("collection", "ips")
TIME = "%Y-%m-%dT%H:%M:%S%.f%:z"  # RFC 3339 with the +00:00 offset, as the text formats write times
KINDS = {"patient": "0", "encounter": "1", "condition": "2", "observation": "3", "procedure": "4",
         "triage": "5", "blood": "6", "composition": "7", "bundle": "9"}
TERMINAL = ("departure", "death", "rtd")  # the stay ended with this event; any other last event: still there


# --- expression helpers ---------------------------------------------------------------------------------
def lit(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String)


def cat(*parts) -> pl.Expr:
    return pl.concat_str([lit(p) if isinstance(p, str) else p for p in parts])


def js(col: str | pl.Expr) -> pl.Expr:
    """A JSON string literal (quotes included, fully escaped) of a string column."""
    expr = pl.col(col) if isinstance(col, str) else col
    return pl.struct(expr.cast(pl.String).alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")


def time(col: str | pl.Expr) -> pl.Expr:
    expr = pl.col(col) if isinstance(col, str) else col
    return cat('"', expr.dt.to_string(TIME), '"')


def uuid(seed: int, kind: str, index: pl.Expr, pid: pl.Expr = pl.col("patient_id")) -> pl.Expr:
    """``urn:uuid:…`` of the ``index``-th resource of ``kind`` of a patient (indexes below 1000)."""
    return cat(codes.uuid_prefix(seed, KINDS[kind]), index.cast(pl.String).str.zfill(3), "-",
               pid.cast(pl.String).str.zfill(12))


def ref(expr: pl.Expr) -> pl.Expr:
    return cat('{"reference":"', expr, '"}')


def member(name: str, value: pl.Expr) -> pl.Expr:
    return cat(f'"{name}":', value)


def obj(*members) -> pl.Expr:
    """A JSON object of the members that are not null (an optional member is ``pl.when(...).then(...)``)."""
    return cat("{", pl.concat_str([lit(m) if isinstance(m, str) else m for m in members],
                                  separator=",", ignore_nulls=True), "}")


def entry(url: pl.Expr, resource: pl.Expr) -> pl.Expr:
    return cat(',{"fullUrl":"', url, '","resource":', resource, "}")


def mapped(col: str | pl.Expr, mapping: dict[str, str], default: pl.Expr | None = None) -> pl.Expr:
    expr = pl.col(col) if isinstance(col, str) else col
    return expr.cast(pl.String).replace_strict(mapping, default=default, return_dtype=pl.String)


def per_patient(frame: pl.DataFrame, column: str, name: str) -> pl.DataFrame:
    """``column`` text of every row joined per patient (rows keep their order)."""
    return frame.group_by("patient_id", maintain_order=True).agg(pl.col(column).str.join("").alias(name))


# --- the builder ----------------------------------------------------------------------------------------
class BundleBuilder:
    """Renders batches into NDJSON bundle lines for one run (``seed`` fixes every UUID)."""

    def __init__(self, seed: int, profile: str = "collection"):
        if profile not in PROFILES:
            raise ValueError(f"unknown FHIR profile {profile!r}; allowed: {', '.join(PROFILES)}")
        self.seed, self.profile = seed, profile
        self._sites: dict[tuple[str, str], tuple[str, str | None, str, str]] = {}
        self.device_url = codes.shared_uuid(seed, "device")

    # shared Location / Organization per (front, facility): same UUID in every bundle of the run
    def _site(self, front: str, fac: str) -> tuple[str, str | None, str, str]:
        key = (front, fac)
        if key not in self._sites:
            spec = codes.facility(fac)
            loc_url = codes.shared_uuid(self.seed, "location", front, fac)
            org_url = codes.shared_uuid(self.seed, "organization", front, fac) if spec["organization"] else None
            name = f"{spec['name']}, {front}"
            loc = {"resourceType": "Location", "status": "active", "name": name,
                   "mode": "kind" if fac == "POI" else "instance",
                   "description": f"{fac} ({spec['name']}) serving the {front} front"}
            if org_url:
                loc["managingOrganization"] = {"reference": org_url}
            entries = f',{{"fullUrl":"{loc_url}","resource":{dumps(loc)}}}'
            if org_url:
                org = {"resourceType": "Organization", "active": True, "name": name,
                       "type": [codes.concept(f"{codes.TERMINOLOGY}/organization-type", "prov", "Healthcare Provider")]}
                entries = f',{{"fullUrl":"{org_url}","resource":{dumps(org)}}}' + entries
            self._sites[key] = (loc_url, org_url, entries, name)
        return self._sites[key]

    def render(self, batch: Batch) -> pl.Series:
        """One JSON line (without the line break) per patient of ``batch``, in patient order."""
        seed = self.seed
        patients = batch.patients.with_columns(p_url=uuid(seed, "patient", lit("0")))
        p_ref = ref(pl.col("p_url"))
        front_of = patients.select("patient_id", "front", "p_url")

        # stays: runs of consecutive events at one facility
        ev = batch.events.with_columns(pl.col("facility").cast(pl.String), pl.col("event").cast(pl.String))
        new_stay = ((pl.col("facility") != pl.col("facility").shift(1)) |
                    (pl.col("patient_id") != pl.col("patient_id").shift(1))).fill_null(True)
        ev = ev.with_columns(stay=(new_stay.cast(pl.Int32).cum_sum() - 1))
        ev = ev.with_columns(stay=pl.col("stay") - pl.col("stay").min().over("patient_id"))
        stays = (ev.group_by("patient_id", "stay", maintain_order=True)
                 .agg(facility=pl.col("facility").first(), start=pl.col("time").first(), end=pl.col("time").last(),
                      last_event=pl.col("event").last())
                 .join(front_of, on="patient_id", how="left", maintain_order="left")
                 .with_columns(prev=pl.col("facility").shift(1).over("patient_id"),
                               next=pl.col("facility").shift(-1).over("patient_id")))
        sites = {}
        for front, fac in stays.select("front", "facility").unique().iter_rows():
            sites[f"{front}|{fac}"] = self._site(front, fac)
        site_key = pl.concat_str([pl.col("front"), pl.col("facility")], separator="|")
        loc_url_of = {k: v[0] for k, v in sites.items()}
        org_url_of = {k: v[1] for k, v in sites.items() if v[1]}
        stays = stays.with_columns(
            e_url=uuid(seed, "encounter", pl.col("stay")),
            loc_url=mapped(site_key, loc_url_of),
            org_url=mapped(site_key, org_url_of, default=pl.lit(None, pl.String)),
            prev_url=mapped(pl.concat_str([pl.col("front"), pl.col("prev")], separator="|"), loc_url_of,
                            default=pl.lit(None, pl.String)),
            next_url=mapped(pl.concat_str([pl.col("front"), pl.col("next")], separator="|"), loc_url_of,
                            default=pl.lit(None, pl.String)),
            finished=pl.col("last_event").is_in(TERMINAL))
        stay_of = (stays.group_by("patient_id", "facility").agg(pl.col("stay").min(), pl.col("e_url").first()))
        first_stay = stays.filter(pl.col("stay") == 0).select("patient_id", poi_url=pl.col("e_url"))

        # Location / Organization entries: each facility used, once per bundle
        used = stays.unique(["patient_id", "facility"], keep="first", maintain_order=True)
        site_entries = per_patient(used.with_columns(text=mapped(site_key, {k: v[2] for k, v in sites.items()})),
                                   "text", "sites")

        # Encounters, linked in order through hospitalization.origin / destination
        classes = {fac: dumps({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": spec["class"][0],
                               "display": spec["class"][1]})
                   for fac, spec in codes.terminology()["facilities"].items()}
        dispositions = {ev_: dumps({"coding": [codes.coding(f"{codes.TERMINOLOGY}/discharge-disposition", c, d)],
                                    "text": text})
                        for ev_, (c, d, text) in codes.terminology()["discharge"].items()}
        period = obj(member("start", time("start")), pl.when(pl.col("finished")).then(member("end", time("end"))))
        hosp = obj(pl.when(pl.col("prev_url").is_not_null()).then(member("origin", ref(pl.col("prev_url")))),
                   pl.when(pl.col("next_url").is_not_null() & (pl.col("last_event") == "departure"))
                   .then(member("destination", ref(pl.col("next_url")))),
                   pl.when(pl.col("finished")).then(member("dischargeDisposition", mapped("last_event", dispositions))))
        encounter = obj('"resourceType":"Encounter"',
                        cat('"status":"', pl.when(pl.col("finished")).then(lit("finished")).otherwise(lit("in-progress")),
                            '"'),
                        member("class", mapped("facility", classes)),
                        member("subject", p_ref),
                        member("period", period),
                        pl.when(hosp != "{}").then(member("hospitalization", hosp)),
                        cat('"location":[{"location":', ref(pl.col("loc_url")), ',"status":"',
                            pl.when(pl.col("finished")).then(lit("completed")).otherwise(lit("active")),
                            '","period":', period, "}]"),
                        pl.when(pl.col("org_url").is_not_null()).then(member("serviceProvider", ref(pl.col("org_url")))))
        enc_entries = per_patient(stays.with_columns(text=entry(pl.col("e_url"), encounter)), "text", "encounters")

        # Conditions
        cond = (batch.conditions.join(patients.select("patient_id", "p_url", "injury_time"), on="patient_id",
                                      how="left", maintain_order="left")
                .join(first_stay, on="patient_id", how="left", maintain_order="left")
                .with_columns(c_url=uuid(seed, "condition", pl.int_range(pl.len()).over("patient_id"))))
        condition = obj('"resourceType":"Condition"',
                        '"clinicalStatus":' + dumps(codes.concept(f"{codes.TERMINOLOGY}/condition-clinical", "active", "Active")),
                        '"verificationStatus":' + dumps(codes.concept(f"{codes.TERMINOLOGY}/condition-ver-status",
                                                                       "confirmed", "Confirmed")),
                        '"category":[' + dumps(codes.concept(f"{codes.TERMINOLOGY}/condition-category",
                                                             "encounter-diagnosis", "Encounter Diagnosis")) + "]",
                        member("severity", mapped("severity", codes.severity_concepts())),
                        cat('"code":{"coding":[{"system":"', codes.SNOMED, '","code":', js("code"), ',"display":',
                            js("display"), '}],"text":', js("display"), "}"),
                        # bodySite member text ends with a comma; subject always follows it
                        cat(mapped("body_region", codes.body_site_members()), member("subject", p_ref)),
                        pl.when(pl.col("poi_url").is_not_null()).then(member("encounter", ref(pl.col("poi_url")))),
                        member("onsetDateTime", time("injury_time")))
        cond_entries = per_patient(cond.with_columns(text=entry(pl.col("c_url"), condition)), "text", "conditions")

        # Observations: vital signs (blood pressure as one panel), triage, blood group
        vit = (batch.vitals.with_columns(pl.col("code").cast(pl.String), pl.col("facility").cast(pl.String),
                                         pl.col("unit").cast(pl.String),
                                         idx=pl.int_range(pl.len()).over("patient_id"))
               .join(stay_of.select("patient_id", "facility", "e_url"), on=["patient_id", "facility"], how="left",
                     maintain_order="left")
               .join(patients.select("patient_id", "p_url"), on="patient_id", how="left", maintain_order="left"))
        value = lambda v, unit: cat('{"value":', v.cast(pl.String), ',"unit":"', unit, '","system":"', codes.UCUM,
                                    '","code":"', unit, '"}')
        enc_member = pl.when(pl.col("e_url").is_not_null()).then(member("encounter", ref(pl.col("e_url"))))
        single = vit.filter(~pl.col("code").is_in([codes.BP_SYSTOLIC, codes.BP_DIASTOLIC]))
        observation = obj(cat('"resourceType":"Observation","status":"final",', mapped("code", codes.vital_members()),
                              member("subject", p_ref)),
                          enc_member,
                          member("effectiveDateTime", time("time")),
                          member("valueQuantity", value(pl.col("value"), pl.col("unit"))))
        single = single.with_columns(o_url=uuid(seed, "observation", pl.col("idx")))
        single = single.with_columns(text=entry(pl.col("o_url"), observation))
        bp_spec = codes.terminology()["blood_pressure"]
        bp = (vit.filter(pl.col("code").is_in([codes.BP_SYSTOLIC, codes.BP_DIASTOLIC]))
              .group_by("patient_id", "time", "facility", maintain_order=True)
              .agg(idx=pl.col("idx").min(), e_url=pl.col("e_url").first(), p_url=pl.col("p_url").first(),
                   sys=pl.col("value").filter(pl.col("code") == codes.BP_SYSTOLIC).first(),
                   dia=pl.col("value").filter(pl.col("code") == codes.BP_DIASTOLIC).first()))
        vs_category = dumps(codes.concept(f"{codes.TERMINOLOGY}/observation-category", "vital-signs", "Vital Signs"))

        def component(col: str, loinc: list) -> pl.Expr:
            return pl.when(pl.col(col).is_not_null()).then(cat(
                '{"code":', dumps(codes.concept(codes.LOINC, loinc[0], loinc[1], loinc[1])),
                ',"valueQuantity":', value(pl.col(col), lit(bp_spec["unit"])), "}"))

        panel = obj('"resourceType":"Observation","status":"final","category":[' + vs_category + '],"code":'
                    + dumps(codes.concept(codes.LOINC, bp_spec["panel"][0], bp_spec["panel"][1], "Blood pressure")),
                    member("subject", p_ref), enc_member, member("effectiveDateTime", time("time")),
                    cat('"component":[', pl.concat_str([component("sys", bp_spec["systolic"]),
                                                        component("dia", bp_spec["diastolic"])],
                                                       separator=",", ignore_nulls=True), "]"))
        bp = bp.with_columns(o_url=uuid(seed, "observation", pl.col("idx")))
        bp = bp.with_columns(text=entry(pl.col("o_url"), panel))
        obs = pl.concat([single.select("patient_id", "idx", "o_url", "text"), bp.select("patient_id", "idx", "o_url", "text")])
        obs = obs.sort("patient_id", "idx", maintain_order=True)
        obs_entries = per_patient(obs, "text", "observations")

        first_vitals = (vit.group_by("patient_id").agg(pl.col("time").first().alias("v_time"),
                                                       pl.col("e_url").first().alias("v_enc")))
        tri = (patients.select("patient_id", "p_url", "triage", "injury_time", "blood_group")
               .join(first_vitals, on="patient_id", how="left", maintain_order="left")
               .join(first_stay, on="patient_id", how="left", maintain_order="left")
               .with_columns(t_url=uuid(seed, "triage", lit("0")), b_url=uuid(seed, "blood", lit("0")),
                             t_time=pl.coalesce("v_time", "injury_time"), t_enc=pl.coalesce("v_enc", "poi_url")))
        survey = dumps(codes.concept(f"{codes.TERMINOLOGY}/observation-category", "survey", "Survey"))
        lab = dumps(codes.concept(f"{codes.TERMINOLOGY}/observation-category", "laboratory", "Laboratory"))
        t_enc = pl.when(pl.col("t_enc").is_not_null()).then(member("encounter", ref(pl.col("t_enc"))))
        triage = obj('"resourceType":"Observation","status":"final","category":[' + survey
                     + '],"code":{"text":"NATO triage category"}', member("subject", p_ref), t_enc,
                     member("effectiveDateTime", time("t_time")),
                     member("valueCodeableConcept", mapped("triage", codes.triage_values())))
        blood = obj('"resourceType":"Observation","status":"final","category":[' + lab + '],"code":'
                    + dumps(codes.concept(codes.LOINC, "882-1", "ABO and Rh group [Type] in Blood")),
                    member("subject", p_ref), member("valueCodeableConcept",
                                                     mapped("blood_group", codes.blood_group_concepts())))
        tri = tri.with_columns(tri_text=cat(entry(pl.col("t_url"), triage), entry(pl.col("b_url"), blood)))

        # Procedures: one per treatment_start event
        proc = (ev.filter(pl.col("event") == "treatment_start")
                .join(stays.select("patient_id", "stay", "e_url", "loc_url"), on=["patient_id", "stay"], how="left",
                      maintain_order="left")
                .join(patients.select("patient_id", "p_url"), on="patient_id", how="left", maintain_order="left")
                .with_columns(r_url=uuid(seed, "procedure", pl.int_range(pl.len()).over("patient_id"))))
        displays = {c: dumps(d) for c, d in codes.procedure_displays().items()}
        proc_code = pl.when(pl.col("detail").is_not_null()).then(member("code", cat(
            '{"coding":[{"system":"', codes.SNOMED, '","code":', js("detail"),
            mapped("detail", {c: f',"display":{d}}}],"text":{d}}}' for c, d in displays.items()}, default=lit("}]}")))))
        procedure = obj('"resourceType":"Procedure","status":"completed"', proc_code, member("subject", p_ref),
                        member("encounter", ref(pl.col("e_url"))), member("performedDateTime", time("time")),
                        member("location", ref(pl.col("loc_url"))))
        proc = proc.with_columns(text=entry(pl.col("r_url"), procedure))
        proc_entries = per_patient(proc, "text", "procedures")

        # the Patient
        nations = {}
        for code in patients["nationality"].unique().to_list():
            try:
                text = codes.reference.nation(code)["name"]
            except KeyError:
                text = code
            nations[code] = dumps({"url": codes.NATIONALITY_URL, "extension": [
                {"url": "code", "valueCodeableConcept": {"coding": [{"system": codes.ISO3166, "code": code}],
                                                         "text": text}}]})
        mi = dumps(codes.concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MI", "Military ID number"))
        sn_system = codes.service_number_system("{N}").split("{N}")
        patient = obj('"resourceType":"Patient"',
                      cat('"extension":[', mapped("nationality", nations), "]"),
                      cat('"identifier":[{"use":"official","type":', mi, ',"system":"', sn_system[0],
                          pl.col("nationality"), sn_system[1], '","value":', js("service_number"), "}]"),
                      cat('"name":[{"use":"official","family":', js("family_name"), ',"given":[', js("given_name"),
                          "]}]"),
                      cat('"gender":"', pl.col("sex").cast(pl.String), '"'),
                      cat('"birthDate":"', pl.col("birth_date").dt.to_string("%Y-%m-%d"), '"'),
                      pl.when(pl.col("outcome").cast(pl.String).is_in(["KIA", "DOW"]))
                      .then(member("deceasedDateTime", time("outcome_time"))))

        frame = patients.with_columns(p_text=entry(pl.col("p_url"), patient))
        for part in (site_entries, enc_entries, cond_entries, obs_entries, proc_entries):
            frame = frame.join(part, on="patient_id", how="left", maintain_order="left")
        frame = frame.join(tri.select("patient_id", "tri_text"), on="patient_id", how="left", maintain_order="left")
        frame = frame.with_columns(pl.col("sites", "encounters", "conditions", "observations", "procedures")
                                   .fill_null(""))
        body = cat(pl.col("p_text").str.slice(1), pl.col("sites"), pl.col("encounters"), pl.col("conditions"),
                   pl.col("observations"), pl.col("tri_text"), pl.col("procedures"))
        b_url = uuid(seed, "bundle", lit("0"))
        if self.profile == "collection":
            line = cat('{"resourceType":"Bundle","id":"', b_url.str.slice(9), '","type":"collection","timestamp":',
                       time("outcome_time"), ',"entry":[', body, "]}")
            return frame.select(line.alias("bundle")).to_series()
        from .ips import composition_entry  # the IPS document parts
        frame = composition_entry(self, frame, cond, obs, tri, proc, batch)
        device = {"resourceType": "Device", "deviceName": [{"name": codes.DEVICE_NAME, "type": "user-friendly-name"}],
                  "version": [{"value": core.__version__}]}
        device_entry = f',{{"fullUrl":"{self.device_url}","resource":{dumps(device)}}}'
        line = cat('{"resourceType":"Bundle","id":"', b_url.str.slice(9),
                   '","identifier":{"system":"urn:ietf:rfc:3986","value":"', b_url, '"},"type":"document","timestamp":',
                   time("outcome_time"), ',"entry":[', pl.col("composition"), ",", body, device_entry, "]}")
        return frame.select(line.alias("bundle")).to_series()
