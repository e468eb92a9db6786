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

import io

import numpy as np
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
    return cat(codes.uuid_prefix(seed, KINDS[kind]), (index.cast(pl.Int64) + 1000).cast(pl.String).str.slice(1),
               "-", (pid + 10**12).cast(pl.String).str.slice(1))


def seq_in_patient(frame: pl.DataFrame) -> pl.Series:
    """0, 1, 2… within each patient of a frame sorted by patient_id (no window expression needed)."""
    ids = frame["patient_id"].to_numpy()
    return pl.Series("idx", np.arange(len(ids)) - np.searchsorted(ids, ids, side="left"), dtype=pl.Int64)


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


def part(frame: pl.DataFrame, order: int, text: pl.Expr, idx: str | pl.Expr | None = None) -> pl.DataFrame:
    """Rows of one section of the bundles: ``patient_id``, ``k`` (position inside the bundle) and ``text``."""
    key = pl.lit(order * 1000, pl.Int64) + (pl.col(idx) if isinstance(idx, str) else idx if idx is not None
                                             else pl.lit(0, pl.Int64))
    return frame.select("patient_id", key.cast(pl.Int64).alias("k"), text.alias("text"))


class _Forward:
    """The file object polars' writer gets: each buffer it flushes goes straight to the stream below."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, data) -> int:
        self._stream.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


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

    def render_parts(self, batch: Batch) -> pl.DataFrame:
        """One ``text`` column whose rows, written end to end, are the batch's NDJSON bundle lines."""
        seed = self.seed
        p_url = uuid(seed, "patient", lit("0"))  # from patient_id alone: no join needed anywhere
        patients = batch.patients.with_columns(p_url=p_url)
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
        site_part = part(used, 1, mapped(site_key, {k: v[2] for k, v in sites.items()}), "stay")

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
        enc_part = part(stays, 2, entry(pl.col("e_url"), encounter), "stay")

        # Conditions
        cond = (batch.conditions.join(patients.select("patient_id", "p_url", "injury_time"), on="patient_id",
                                      how="left", maintain_order="left")
                .join(first_stay, on="patient_id", how="left", maintain_order="left")
                .with_columns(seq_in_patient(batch.conditions))
                .with_columns(c_url=uuid(seed, "condition", pl.col("idx"))))
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
        cond_part = part(cond, 3, entry(pl.col("c_url"), condition), "idx")

        # Observations: vital signs (blood pressure as one panel), triage, blood group
        vit = (batch.vitals.with_columns(pl.col("code").cast(pl.String), pl.col("facility").cast(pl.String),
                                         pl.col("unit").cast(pl.String), idx=seq_in_patient(batch.vitals))
               .join(stay_of.select("patient_id", "facility", "e_url"), on=["patient_id", "facility"], how="left",
                     maintain_order="left")
               .with_columns(p_url=p_url, enc=pl.when(pl.col("e_url").is_not_null())
                             .then(cat('"encounter":{"reference":"', pl.col("e_url"), '"},')).otherwise(lit(""))))
        # one flat concat per observation (nested concats would copy each resource's text once more)
        head = lambda url: (',{"fullUrl":"', url, '","resource":{"resourceType":"Observation","status":"final",')
        tail = ('"subject":{"reference":"', pl.col("p_url"), '"},', pl.col("enc"), '"effectiveDateTime":"',
                pl.col("time").dt.to_string(TIME), '",')
        quantity = lambda v, unit: ('{"value":', v.cast(pl.String), ',"unit":"', unit, '","system":"', codes.UCUM,
                                    '","code":"', unit, '"}')
        single = vit.filter(~pl.col("code").is_in([codes.BP_SYSTOLIC, codes.BP_DIASTOLIC]))
        single = single.with_columns(o_url=uuid(seed, "observation", pl.col("idx")))
        single = single.with_columns(text=cat(*head(pl.col("o_url")), mapped("code", codes.vital_members()), *tail,
                                              '"valueQuantity":', *quantity(pl.col("value"), pl.col("unit")), "}}"))
        # blood pressure: the diastolic row follows the systolic one of the same set
        bp_spec = codes.terminology()["blood_pressure"]
        same_set = lambda shift: ((pl.col("patient_id").shift(shift) == pl.col("patient_id"))
                                  & (pl.col("time").shift(shift) == pl.col("time"))
                                  & (pl.col("facility").shift(shift) == pl.col("facility"))).fill_null(False)
        bp = (vit.filter(pl.col("code").is_in([codes.BP_SYSTOLIC, codes.BP_DIASTOLIC]))
              .with_columns(sys=pl.when(pl.col("code") == codes.BP_SYSTOLIC).then(pl.col("value")),
                            dia=pl.when(pl.col("code") == codes.BP_DIASTOLIC).then(pl.col("value")),
                            paired_next=same_set(-1) & (pl.col("code") == codes.BP_SYSTOLIC)
                            & (pl.col("code").shift(-1) == codes.BP_DIASTOLIC),
                            paired_prev=same_set(1) & (pl.col("code") == codes.BP_DIASTOLIC)
                            & (pl.col("code").shift(1) == codes.BP_SYSTOLIC))
              .with_columns(dia=pl.when(pl.col("paired_next")).then(pl.col("value").shift(-1)).otherwise(pl.col("dia")))
              .filter(~pl.col("paired_prev")))
        vs_category = dumps(codes.concept(f"{codes.TERMINOLOGY}/observation-category", "vital-signs", "Vital Signs"))

        def component(col: str, loinc: list) -> pl.Expr:
            return pl.when(pl.col(col).is_not_null()).then(cat(
                '{"code":', dumps(codes.concept(codes.LOINC, loinc[0], loinc[1], loinc[1])),
                ',"valueQuantity":', *quantity(pl.col(col), lit(bp_spec["unit"])), "}"))

        bp = bp.with_columns(o_url=uuid(seed, "observation", pl.col("idx")))
        bp = bp.with_columns(text=cat(
            *head(pl.col("o_url")), '"category":[', vs_category, '],"code":',
            dumps(codes.concept(codes.LOINC, bp_spec["panel"][0], bp_spec["panel"][1], "Blood pressure")), ",",
            *tail, '"component":[', pl.concat_str([component("sys", bp_spec["systolic"]),
                                                   component("dia", bp_spec["diastolic"])],
                                                  separator=",", ignore_nulls=True), "]}}"))
        obs = pl.concat([single.select("patient_id", "idx", "o_url", "text"), bp.select("patient_id", "idx", "o_url", "text")])
        obs_part = part(obs, 4, pl.col("text"), "idx")

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
                .with_columns(p_url=p_url)
                .with_columns(idx=seq_in_patient(ev.filter(pl.col("event") == "treatment_start")))
                .with_columns(r_url=uuid(seed, "procedure", pl.col("idx"))))
        displays = {c: dumps(d) for c, d in codes.procedure_displays().items()}
        proc_code = pl.when(pl.col("detail").is_not_null()).then(member("code", cat(
            '{"coding":[{"system":"', codes.SNOMED, '","code":', js("detail"),
            mapped("detail", {c: f',"display":{d}}}],"text":{d}}}' for c, d in displays.items()}, default=lit("}]}")))))
        procedure = obj('"resourceType":"Procedure","status":"completed"', proc_code, member("subject", p_ref),
                        member("encounter", ref(pl.col("e_url"))), member("performedDateTime", time("time")),
                        member("location", ref(pl.col("loc_url"))))
        proc = proc.with_columns(text=entry(pl.col("r_url"), procedure))
        proc_part = part(proc, 6, pl.col("text"), "idx")

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

        b_url = uuid(seed, "bundle", lit("0"))
        if self.profile == "collection":
            head = cat('{"resourceType":"Bundle","id":"', b_url.str.slice(9), '","type":"collection","timestamp":',
                       time("outcome_time"), ',"entry":[', entry(pl.col("p_url"), patient).str.slice(1))
            tail = lit("]}\n")
        else:
            from .ips import composition_entry  # the IPS document parts
            with_composition = composition_entry(self, patients, cond, obs, tri, proc, batch)
            device = {"resourceType": "Device",
                      "deviceName": [{"name": codes.DEVICE_NAME, "type": "user-friendly-name"}],
                      "version": [{"value": core.__version__}]}
            head = cat('{"resourceType":"Bundle","id":"', b_url.str.slice(9),
                       '","identifier":{"system":"urn:ietf:rfc:3986","value":"', b_url,
                       '"},"type":"document","timestamp":', time("outcome_time"), ',"entry":[', pl.col("composition"),
                       entry(pl.col("p_url"), patient))
            patients = with_composition
            tail = lit(f',{{"fullUrl":"{self.device_url}","resource":{dumps(device)}}}]}}\n')
        parts = [part(patients, 0, head), site_part, enc_part, cond_part, obs_part, part(tri, 5, pl.col("tri_text")),
                 proc_part, part(patients, 9, tail)]
        return pl.concat(parts, how="vertical").sort("patient_id", "k", maintain_order=True).select("text")

    def write(self, batch: Batch, stream) -> None:
        """Write the batch's bundles as NDJSON to ``stream`` (anything with ``write(bytes)``): polars writes the
        parts end to end in buffer-sized pieces, so no batch-sized text is held twice."""
        self.render_parts(batch).write_csv(_Forward(stream), include_header=False, quote_style="never",
                                           line_terminator="")

    def render_bytes(self, batch: Batch) -> bytes:
        buffer = io.BytesIO()
        self.write(batch, buffer)
        return buffer.getvalue()

    def render(self, batch: Batch) -> list[str]:
        """One JSON text (without the line break) per patient of ``batch``, in patient order."""
        return bytes(self.render_bytes(batch)).decode("utf-8").splitlines()
