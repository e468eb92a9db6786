"""One FHIR R4 Bundle per patient, as one line of compact JSON, built for a whole batch with polars expressions.

Each section of the bundles (the Patient, the facilities, the Encounters, Conditions, Observations, triage and
blood group, Procedures) is one polars frame with one row per resource: its ``text`` is a single flat
``concat_str`` of a few pieces. Everything that depends only on a code (a LOINC/SNOMED/UCUM coding, a facility's
class and Location, a severity, a discharge disposition...) is rendered once per distinct value in Python and
picked per row with a ``gather`` from a small lookup Series (no copy: polars strings are views), and everything
that depends only on the patient (its ``urn:uuid`` tail, the ``subject`` reference, the injury time) is rendered
once per patient and picked the same way. Row bookkeeping (facility stays, indexes within a patient, which stay a
vital sign belongs to) is numpy over the sorted tables: no joins, no group-bys, no per-patient Python. The rows
of all sections are put in bundle order with one sort on an integer key: ``render_parts`` returns them, and the
FHIR sink (core/sinks/fhir.py) writes them end to end. The JSON pieces are expressions from ``expressions.py``.

Per patient (collection): Patient, then per role of care used a Location (and an Organization for R1-R4), one
Encounter per facility stay in order, a Condition per ``conditions`` row, an Observation per vital sign (blood
pressure as the standard 85354-9 panel with systolic and diastolic components), the triage category and the
blood group, and a Procedure per treatment. ``profile="ips"`` makes it an IPS document: a Composition first,
the authoring Device, and ``identifier`` + ``timestamp`` on the Bundle.

Full URLs are ``urn:uuid:`` version-8 UUIDs derived from the run seed, the resource kind, the patient id and
the resource's index (``codes.uuid_prefix``), so the same seed gives byte-identical bundles for any batching.
"""
from __future__ import annotations

import copy

import numpy as np
import polars as pl

import core
from core.schema import BLOOD_GROUPS, EVENTS, FACILITIES, SEXES, TRIAGES, VITAL_CODES, VITAL_UNITS, Batch

from . import codes
from .codes import dumps
from .expressions import KINDS, TIME, cat, member_ref, quoted
from .ips import composition_entry

PROFILES = ("collection", "ips")
TERMINAL = ("departure", "death", "rtd")  # the stay ended with this event; any other last event: still there
ORDER = {"patient": 0, "site": 1, "encounter": 2, "condition": 3, "observation": 4, "triage": 5, "procedure": 6,
         "tail": 9}  # position of each section inside a bundle
INDEX3 = pl.Series([f"{i:03d}" for i in range(1000)])  # a resource's index within its patient, as in its UUID
_EVENT = {e: i for i, e in enumerate(EVENTS)}
_NULL = "\x00null"  # stands for a null key in ``keyed``


# --- lookups and row bookkeeping ---------------------------------------------------------------------
def lookup(strings) -> pl.Series:
    return pl.Series(list(strings), dtype=pl.String)


def physical(series: pl.Series) -> np.ndarray:
    """Category indexes of an Enum column (into its categories, in schema order)."""
    return series.to_physical().to_numpy().astype(np.int64)


def index_in_patient(ids: np.ndarray) -> np.ndarray:
    """0, 1, 2… within each patient of a sorted patient-id array."""
    return np.arange(len(ids)) - np.searchsorted(ids, ids, side="left")


def keyed(keys: pl.Series, render) -> pl.Series:
    """Per row, ``render(key)`` of its key (None for a null), rendered once per distinct key."""
    keys = keys.cast(pl.String).fill_null(_NULL)
    uniq = keys.unique(maintain_order=True)
    index = keys.replace_strict(uniq, pl.Series(np.arange(len(uniq), dtype=np.uint32)), return_dtype=pl.UInt32)
    return lookup(render(None if k == _NULL else k) for k in uniq.to_list()).gather(index)


# --- the builder ----------------------------------------------------------------------------------------
class BundleBuilder:
    """Renders batches into NDJSON bundle lines for one run (``seed`` fixes every UUID)."""

    def __init__(self, seed: int, profile: str = "collection"):
        if profile not in PROFILES:
            raise ValueError(f"unknown FHIR profile {profile!r}; allowed: {', '.join(PROFILES)}")
        self.seed, self.profile = seed, profile
        self._sites: dict[tuple[str, str], tuple[str, str | None, str, str]] = {}
        self.device_url = codes.shared_uuid(seed, "device")
        self.prefix = {kind: codes.uuid_prefix(seed, k) for kind, k in KINDS.items()}
        self._fragments = _fragments()
        self._rendered: dict[tuple, str] = {}  # JSON fragments per code combination, kept for the whole run

    def _once(self, key: tuple, render) -> str:
        """``render()`` the first time ``key`` is seen in this run, the kept text afterwards."""
        text = self._rendered.get(key)
        if text is None:
            text = self._rendered[key] = render()
        return text

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

    def url(self, kind: str, index: np.ndarray | pl.Series, pos: np.ndarray) -> pl.Series:
        """``urn:uuid`` of the ``index``-th resource of ``kind`` of the patients at positions ``pos``."""
        return pl.DataFrame({"i": index, "p": pos}).select(
            cat(self.prefix[kind], pl.lit(INDEX3).gather(pl.col("i")), pl.lit(self._pid).gather(pl.col("p")))
        ).to_series()

    def render_parts(self, batch: Batch) -> pl.DataFrame:
        """One ``text`` column whose rows, written end to end, are the batch's NDJSON bundle lines (``batch``
        not empty); core/sinks/fhir.py streams them to the file."""
        job = copy.copy(self)  # the batch's working state lives on a shallow copy: threads may share a builder
        job._prepare(batch)
        return pl.concat(job._sections(batch), how="vertical", rechunk=False).sort("key").select("text")

    # --- per batch: what every section needs -----------------------------------------------------------
    def _prepare(self, batch: Batch) -> None:
        pats = batch.patients
        self._ids = ids = pats["patient_id"].to_numpy()
        if len(ids) > 1 and not (np.diff(ids) > 0).all():
            raise ValueError("patients must be sorted by patient_id (data contract)")
        self._pid = pats.select(cat("-", (pl.col("patient_id") + 10**12).cast(pl.String).str.slice(1))).to_series()
        self._subject = pl.DataFrame({"p": self._pid}).select(
            cat(',"subject":{"reference":"', self.prefix["patient"], "000", pl.col("p"), '"}')).to_series()
        self._injury = pats.select(pl.col("injury_time").dt.to_string(TIME)).to_series()
        # the fronts of this batch as small integers (Locations are per front and facility)
        self._fronts = pats["front"].unique(maintain_order=True).to_list()
        self._front = pats["front"].replace_strict(self._fronts, list(range(len(self._fronts))),
                                                   return_dtype=pl.Int64).to_numpy()
        self._stays(batch.events)

    def pos(self, frame: pl.DataFrame) -> np.ndarray:
        """Position in the batch's patients of each row of a child table (sorted by patient_id)."""
        return np.searchsorted(self._ids, frame["patient_id"].to_numpy())

    def _stays(self, ev: pl.DataFrame) -> None:
        """Facility stays: runs of consecutive events of a patient at one facility (numpy over the events)."""
        e_pid = ev["patient_id"].to_numpy()
        e_fac = physical(ev["facility"])
        m = len(e_pid)
        new = np.ones(m, dtype=bool)
        new[1:] = (e_fac[1:] != e_fac[:-1]) | (e_pid[1:] != e_pid[:-1])
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], m] - 1
        pid = e_pid[starts]
        first = np.ones(len(starts), dtype=bool)  # first stay of its patient
        first[1:] = pid[1:] != pid[:-1]
        last = np.r_[first[1:], True]
        fac = e_fac[starts]
        stay = index_in_patient(pid)
        pos = np.searchsorted(self._ids, pid)
        last_event = physical(ev["event"])[ends]
        self._stay = {"pos": pos, "stay": stay, "fac": fac, "start": starts, "end": ends, "last_event": last_event,
                      "prev": np.where(first, -1, np.r_[-1, fac[:-1]]),
                      "next": np.where(last, -1, np.r_[fac[1:], -1]),
                      "finished": np.isin(last_event, [_EVENT[e] for e in TERMINAL])}
        self._ev_stay = np.cumsum(new) - 1  # per event row: its stay (row of self._stay)
        # the first stay of each patient at each facility (a vital sign's encounter), -1 where none
        nf = len(FACILITIES)
        self._first_stay = np.full(len(self._ids) * nf, -1, dtype=np.int64)
        key = pos * nf + fac
        _, first_at = np.unique(key, return_index=True)
        self._first_stay[key[first_at]] = stay[first_at]
        self._first_site = first_at  # stays that bring a facility into a bundle for the first time
        has_stay = np.zeros(len(self._ids), dtype=bool)
        has_stay[pos] = True
        poi_url = self.url("encounter", np.zeros(len(self._ids), dtype=np.int64), np.arange(len(self._ids)))
        self._poi_enc = pl.DataFrame({"has": has_stay, "url": poi_url}).select(
            pl.when(pl.col("has")).then(member_ref("encounter", pl.col("url")))).to_series()

    def _sections(self, batch: Batch) -> list[pl.DataFrame]:
        pats = batch.patients
        n = len(self._ids)
        patient_pos = np.arange(n)
        encounters = self._encounters(batch.events)
        cond = self._conditions(batch.conditions)
        obs, first_set = self._observations(batch.vitals)
        tri = self._triage(pats, first_set)
        proc = self._procedures(batch.events)
        parts = [self._site_part(), encounters, cond, obs, tri, proc]
        head, tail = self._patient(pats, cond, obs, tri, proc, batch)
        parts += [_part(patient_pos, "patient", head), _part(patient_pos, "tail", tail)]
        return [p.select("key", "text") for p in parts]

    # --- sections ------------------------------------------------------------------------------------------
    def _site_part(self) -> pl.DataFrame:
        s, rows = self._stay, self._first_site
        keys = self._front[s["pos"][rows]] * len(FACILITIES) + s["fac"][rows]
        table = {}
        for k in np.unique(keys).tolist():
            table[k] = self._site(self._fronts[k // len(FACILITIES)], FACILITIES[k % len(FACILITIES)])[2]
        uniq = sorted(table)
        text = lookup(table[k] for k in uniq).gather(np.searchsorted(uniq, keys))
        return _part(s["pos"][rows], "site", text, s["stay"][rows])

    def _encounters(self, ev: pl.DataFrame) -> pl.DataFrame:
        s = self._stay
        fin = s["finished"]
        nf, ne = len(FACILITIES), len(EVENTS)
        # everything after the period depends on (front, facility, previous, next facility, last event) only
        key = (((self._front[s["pos"]] * nf + s["fac"]) * (nf + 1) + s["prev"] + 1) * (nf + 1) + s["next"] + 1) \
            * ne + s["last_event"]
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        heads, tails = [], []
        for row in first.tolist():
            head = (int(s["fac"][row]), bool(fin[row]))
            tail = (self._fronts[self._front[s["pos"][row]]], int(s["fac"][row]), int(s["prev"][row]),
                    int(s["next"][row]), int(s["last_event"][row]))
            heads.append(self._once(("encounter head", *head), lambda: self._encounter_head(*head)))
            tails.append(self._once(("encounter tail", *tail), lambda: self._encounter_tail(*tail)))
        times = ev["time"]
        frame = pl.DataFrame({
            "url": self.url("encounter", s["stay"], s["pos"]), "head": lookup(heads).gather(inverse),
            "subject": self._subject.gather(s["pos"]), "start": times.gather(s["start"]),
            "end": times.gather(s["end"]), "fin": fin, "tail": lookup(tails).gather(inverse),
            "end_key": lookup(["", '","end":"']).gather(fin.astype(np.int64))})
        end = pl.when(pl.col("fin")).then(pl.col("end")).dt.to_string(TIME)  # null (left out) while in progress
        text = cat(',{"fullUrl":"', pl.col("url"), pl.col("head"), pl.col("subject"), ',"period":{"start":"',
                   pl.col("start").dt.to_string(TIME), pl.col("end_key"), end, '"}', pl.col("tail"))
        return _part(s["pos"], "encounter", frame.select(text).to_series(), s["stay"])

    def _encounter_head(self, fac: int, finished: bool) -> str:
        cls = codes.facility(FACILITIES[fac])["class"]
        return ('","resource":{"resourceType":"Encounter","status":"' + ("finished" if finished else "in-progress")
                + '","class":' + dumps(codes.coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", *cls)))

    def _encounter_tail(self, name: str, fac: int, prev: int, nxt: int, last_event: int) -> str:
        loc_url, org_url = self._site(name, FACILITIES[fac])[:2]
        event = EVENTS[last_event]
        finished = event in TERMINAL
        hosp = {}
        if prev >= 0:
            hosp["origin"] = {"reference": self._site(name, FACILITIES[prev])[0]}
        if nxt >= 0 and event == "departure":
            hosp["destination"] = {"reference": self._site(name, FACILITIES[nxt])[0]}
        if finished:
            code, display, text = codes.terminology()["discharge"][event]
            hosp["dischargeDisposition"] = {
                "coding": [codes.coding(f"{codes.TERMINOLOGY}/discharge-disposition", code, display)], "text": text}
        out = {}
        if hosp:
            out["hospitalization"] = hosp
        out["location"] = [{"location": {"reference": loc_url}, "status": "completed" if finished else "active"}]
        if org_url:
            out["serviceProvider"] = {"reference": org_url}
        return "," + dumps(out)[1:] + "}"

    def _conditions(self, cond: pl.DataFrame) -> pl.DataFrame:
        pos = self.pos(cond)
        idx = index_in_patient(cond["patient_id"].to_numpy())
        f = self._fragments
        keys = cond.select(pl.concat_str([pl.col(c).cast(pl.String) for c in ("severity", "code", "display",
                                                                                 "body_region")],
                                         separator="\x1f")).to_series()

        def render(key: str) -> str:
            return self._once(("condition", key), lambda: render_new(key))

        def render_new(key: str) -> str:
            severity, code, display, region = key.split("\x1f")
            return (f["condition_head"] + '"severity":' + codes.severity_concepts()[severity] + ',"code":'
                    + dumps({"coding": [codes.coding(codes.SNOMED, code, display)]})
                    + ("," + codes.body_site_members()[region][:-1] if codes.body_site_members()[region] else ""))

        url = self.url("condition", idx, pos)
        frame = pl.DataFrame({"url": url, "mid": keyed(keys, render), "subject": self._subject.gather(pos),
                              "enc": self._poi_enc.gather(pos), "onset": self._injury.gather(pos)})
        text = frame.select(cat(',{"fullUrl":"', pl.col("url"), pl.col("mid"), pl.col("subject"), pl.col("enc"),
                                ',"onsetDateTime":"', pl.col("onset"), '"}}')).to_series()
        out = _part(pos, "condition", text, idx)
        return out.with_columns(patient_id=cond["patient_id"], c_url=url, display=cond["display"])

    def _observations(self, vit: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Vital signs: one Observation per row, systolic + diastolic of one set as one blood-pressure panel.

        A set is consecutive rows of a patient with one time and facility: its subject, encounter and time
        are rendered once per set."""
        f = self._fragments
        v_pid = vit["patient_id"].to_numpy()
        v_time = vit["time"].to_physical().to_numpy()
        v_fac = physical(vit["facility"])
        code = physical(vit["code"])
        m = len(v_pid)
        new = np.ones(m, dtype=bool)
        new[1:] = (v_pid[1:] != v_pid[:-1]) | (v_time[1:] != v_time[:-1]) | (v_fac[1:] != v_fac[:-1])
        set_rows = np.flatnonzero(new)
        set_of_row = np.cumsum(new) - 1
        set_pos = np.searchsorted(self._ids, v_pid[set_rows])
        set_stay = self._first_stay[set_pos * len(FACILITIES) + v_fac[set_rows]]
        sets = pl.DataFrame({"subject": self._subject.gather(set_pos), "stay": set_stay,
                             "enc": self.url("encounter", np.maximum(set_stay, 0), set_pos),
                             "time": vit["time"].gather(set_rows)})
        sets = sets.select("subject", enc=pl.when(pl.col("stay") >= 0).then(member_ref("encounter", pl.col("enc"))),
                           time=pl.col("time").dt.to_string(TIME))
        context = sets.select(cat(pl.col("subject"), pl.col("enc"), ',"effectiveDateTime":"', pl.col("time"), '"')
                              ).to_series()
        # the first set of each patient gives the triage observation its time and encounter
        first = np.ones(len(set_rows), dtype=bool)
        first[1:] = v_pid[set_rows][1:] != v_pid[set_rows][:-1]
        first_set = pl.DataFrame({"pos": set_pos[first], "time": sets["time"].filter(pl.Series(first)),
                                  "enc": sets["enc"].filter(pl.Series(first))})

        # blood pressure: a systolic row directly followed by the diastolic row of the same set is one panel
        sys_code, dia_code = VITAL_CODES.index(codes.BP_SYSTOLIC), VITAL_CODES.index(codes.BP_DIASTOLIC)
        is_bp = (code == sys_code) | (code == dia_code)
        same_next = np.r_[set_of_row[1:] == set_of_row[:-1], False]
        paired = (code == sys_code) & same_next & np.r_[code[1:] == dia_code, False]  # systolic with its diastolic
        follower = np.r_[False, paired[:-1]]  # the diastolic rows already in a panel
        idx = index_in_patient(v_pid)
        pos = np.searchsorted(self._ids, v_pid)
        value = vit["value"]
        values = value.cast(pl.String)
        single = np.flatnonzero(~is_bp)
        s_url = self.url("observation", idx[single], pos[single])
        s_frame = pl.DataFrame({"url": s_url, "code": f["vital_code"].gather(code[single]),
                                "ctx": context.gather(set_of_row[single]), "value": values.gather(single),
                                "unit": f["unit_tail"].gather(physical(vit["unit"])[single])})
        s_text = s_frame.select(cat(',{"fullUrl":"', pl.col("url"), pl.col("code"), pl.col("ctx"),
                                    ',"valueQuantity":{"value":', pl.col("value"), pl.col("unit"))).to_series()
        # a panel row: [A] systolic [B] diastolic [C], the pieces chosen by what the panel holds
        panel = np.flatnonzero(is_bp & ~follower)
        has_sys = code[panel] == sys_code
        has_dia = paired[panel] | (code[panel] == dia_code)
        shape = has_sys.astype(np.int64) * 2 + has_dia  # 1: diastolic only, 2: systolic only, 3: both
        close = f["mmhg"] + "]}}"
        pieces = {"A": ["", "", f["systolic"], f["systolic"]],
                  "B": ["", f["diastolic"], close, f["mmhg"] + "," + f["diastolic"]],
                  "C": ["", close, "", close]}
        p_url = self.url("observation", idx[panel], pos[panel])
        p_frame = pl.DataFrame({
            "url": p_url, "ctx": context.gather(set_of_row[panel]),
            "sys": values.gather(panel), "dia": values.gather(np.where(paired[panel], panel + 1, panel)),
            "has_sys": has_sys, "has_dia": has_dia,
            **{k: lookup(v).gather(shape) for k, v in pieces.items()}})
        p_text = p_frame.select(cat(',{"fullUrl":"', pl.col("url"), f["panel"], pl.col("ctx"), ',"component":[',
                                    pl.col("A"), pl.when(pl.col("has_sys")).then(pl.col("sys")), pl.col("B"),
                                    pl.when(pl.col("has_dia")).then(pl.col("dia")), pl.col("C"))).to_series()
        rows = np.r_[single, panel]
        obs = pl.concat([_part(pos[single], "observation", s_text, idx[single]),
                         _part(pos[panel], "observation", p_text, idx[panel])])
        obs = obs.with_columns(patient_id=pl.Series(v_pid[rows]), o_url=pl.concat([s_url, p_url]))
        return obs, first_set

    def _triage(self, pats: pl.DataFrame, first_set: pl.DataFrame) -> pl.DataFrame:
        f = self._fragments
        n = len(self._ids)
        all_pos = np.arange(n)
        zero = np.zeros(n, dtype=np.int64)
        # time and encounter of the first set of vital signs, else the injury time and the first stay
        t_time = pl.repeat(None, n, dtype=pl.String, eager=True)
        t_enc = pl.repeat(None, n, dtype=pl.String, eager=True)
        if first_set.height:
            t_time = t_time.scatter(first_set["pos"].to_numpy(), first_set["time"])
            t_enc = t_enc.scatter(first_set["pos"].to_numpy(), first_set["enc"])
        t_url, b_url = self.url("triage", zero, all_pos), self.url("blood", zero, all_pos)
        frame = pl.DataFrame({
            "t_url": t_url, "b_url": b_url, "subject": self._subject, "t_enc": t_enc, "poi": self._poi_enc,
            "t_time": t_time, "injury": self._injury,
            "triage": f["triage"].gather(physical(pats["triage"])),
            "blood": f["blood"].gather(physical(pats["blood_group"]))})
        text = cat(',{"fullUrl":"', pl.col("t_url"), f["triage_head"], pl.col("subject"),
                   pl.coalesce("t_enc", "poi"), ',"effectiveDateTime":"', pl.coalesce("t_time", "injury"),
                   '","valueCodeableConcept":', pl.col("triage"), '}},{"fullUrl":"', pl.col("b_url"), f["blood_head"],
                   pl.col("subject"), ',"valueCodeableConcept":', pl.col("blood"), "}}")
        out = _part(all_pos, "triage", frame.select(text).to_series())
        return out.with_columns(patient_id=pats["patient_id"], t_url=t_url, b_url=b_url)

    def _procedures(self, ev: pl.DataFrame) -> pl.DataFrame:
        rows = np.flatnonzero(physical(ev["event"]) == _EVENT["treatment_start"])
        s = self._stay
        stay_row = self._ev_stay[rows]
        pos = s["pos"][stay_row]
        idx = index_in_patient(ev["patient_id"].to_numpy()[rows])
        detail = ev["detail"].gather(rows)
        displays = codes.procedure_displays()

        def render(code: str | None) -> str:
            if code is None:
                return ""
            return self._once(("procedure", code), lambda: ',"code":' + dumps(
                {"coding": [codes.coding(codes.SNOMED, code, displays.get(code))]}))

        nf = len(FACILITIES)
        site_key = self._front[pos] * nf + s["fac"][stay_row]
        uniq = np.unique(site_key)
        locs = lookup(f',"location":{{"reference":"{self._site(self._fronts[k // nf], FACILITIES[k % nf])[0]}"}}}}}}'
                      for k in uniq.tolist())
        url = self.url("procedure", idx, pos)
        frame = pl.DataFrame({"url": url, "code": keyed(detail, render), "subject": self._subject.gather(pos),
                              "enc": self.url("encounter", s["stay"][stay_row], pos),
                              "time": ev["time"].gather(rows), "loc": locs.gather(np.searchsorted(uniq, site_key))})
        text = frame.select(cat(',{"fullUrl":"', pl.col("url"),
                                '","resource":{"resourceType":"Procedure","status":"completed"', pl.col("code"),
                                pl.col("subject"), ',"encounter":{"reference":"', pl.col("enc"),
                                '"},"performedDateTime":"', pl.col("time").dt.to_string(TIME), '"', pl.col("loc"))
                            ).to_series()
        out = _part(pos, "procedure", text, idx)
        return out.with_columns(patient_id=ev["patient_id"].gather(rows), r_url=url, detail=detail)

    def _patient(self, pats: pl.DataFrame, cond, obs, tri, proc, batch: Batch) -> tuple[pl.Series, pl.Series]:
        """The Bundle's opening (with the Patient entry, and the Composition for IPS) and its closing."""
        f = self._fragments
        n = len(self._ids)
        zero, all_pos = np.zeros(n, dtype=np.int64), np.arange(n)
        p_url = self.url("patient", zero, all_pos)
        bundle_url = self.url("bundle", zero, all_pos)
        def nationality(code: str) -> str:
            try:
                name = codes.reference.nation(code)["name"]
            except KeyError:
                name = code
            return dumps({"url": codes.NATIONALITY_URL, "extension": [
                {"url": "code", "valueCodeableConcept": {"coding": [{"system": codes.ISO3166, "code": code}],
                                                         "text": name}}]})
        sn_system = codes.service_number_system("{N}").split("{N}")
        frame = pats.with_columns(p_url=p_url, bundle_url=bundle_url,
                                  extension=keyed(pats["nationality"],
                                                  lambda c: self._once(("nation", c), lambda: nationality(c))),
                                  gender=f["gender"].gather(physical(pats["sex"])))
        deceased = pl.col("outcome").cast(pl.String).is_in(["KIA", "DOW"])
        timestamp = pl.col("outcome_time").dt.to_string(TIME)
        patient = cat('{"fullUrl":"', pl.col("p_url"), '","resource":{"resourceType":"Patient","extension":[',
                      pl.col("extension"), '],"identifier":[{"use":"official","type":', f["military_id"],
                      ',"system":"', sn_system[0], pl.col("nationality"), sn_system[1], '","value":',
                      quoted(pats["service_number"]), '}],"name":[{"use":"official","family":',
                      quoted(pats["family_name"]), ',"given":[', quoted(pats["given_name"]), ']}],"gender":"',
                      pl.col("gender"), '","birthDate":"', pl.col("birth_date").dt.to_string("%Y-%m-%d"), '"',
                      pl.when(deceased).then(cat(',"deceasedDateTime":"', timestamp, '"')), "}}")
        if self.profile == "collection":
            head = cat('{"resourceType":"Bundle","id":"', pl.col("bundle_url").str.slice(9),
                       '","type":"collection","timestamp":"', timestamp, '","entry":[', patient)
            tail = "]}\n"
        else:
            frame = composition_entry(self, frame, cond, obs, tri, proc, batch)
            device = {"resourceType": "Device",
                      "deviceName": [{"name": codes.DEVICE_NAME, "type": "user-friendly-name"}],
                      "version": [{"value": core.__version__}]}
            head = cat('{"resourceType":"Bundle","id":"', pl.col("bundle_url").str.slice(9),
                       '","identifier":{"system":"urn:ietf:rfc:3986","value":"', pl.col("bundle_url"),
                       '"},"type":"document","timestamp":"', timestamp, '","entry":[', pl.col("composition"), ",",
                       patient)
            tail = f',{{"fullUrl":"{self.device_url}","resource":{dumps(device)}}}]}}\n'
        return frame.select(head).to_series(), pl.Series([tail] * n, dtype=pl.String)

    # --- the whole text of a batch (tests and checks; the sink writes ``render_parts`` piece by piece) ---------
    def render_text(self, batch: Batch) -> str:
        """The batch's NDJSON bundle lines as one string."""
        if not batch.size:
            return ""
        return "".join(self.render_parts(batch)["text"].to_list())

    def render(self, batch: Batch) -> list[str]:
        """One JSON text (without the line break) per patient of ``batch``, in patient order."""
        return self.render_text(batch).splitlines()


def _part(pos: np.ndarray, section: str, text: pl.Series, idx: np.ndarray | None = None) -> pl.DataFrame:
    """Rows of one section: ``key`` (bundle order: patient position, section, index) and ``text``."""
    key = np.asarray(pos, dtype=np.int64) * 10_000 + ORDER[section] * 1000
    if idx is not None:
        key = key + np.asarray(idx, dtype=np.int64)
    return pl.DataFrame({"key": key, "text": text.alias("text")})


def _fragments() -> dict[str, pl.Series | str]:
    """Constant JSON fragments, per code where a column selects one (lookup Series indexed like the Enums)."""
    t = codes.terminology()
    category = lambda c: dumps(codes.concept(f"{codes.TERMINOLOGY}/observation-category", c,
                                             t["observation_categories"].get(c) or c.title()))
    obs_head = '","resource":{"resourceType":"Observation","status":"final","category":['
    vital_code = []
    for code in VITAL_CODES:
        spec = t["vital_signs"].get(code)
        if spec is None:  # the two blood-pressure codes: always rendered as the panel
            vital_code.append("")
            continue
        codings = [codes.coding(codes.LOINC, code, spec["display"])]
        codings += [codes.coding(codes.LOINC, c, d) for c, d in spec.get("also", [])]
        vital_code.append(obs_head + category(spec["category"]) + '],"code":' + dumps({"coding": codings}))
    bp = t["blood_pressure"]
    quantity_tail = lambda unit: f',"unit":"{unit}","system":"{codes.UCUM}","code":"{unit}"}}'
    component = lambda loinc: '{"code":' + dumps(codes.concept(codes.LOINC, *loinc)) + ',"valueQuantity":{"value":'
    return {
        "vital_code": lookup(vital_code),
        "unit_tail": lookup(quantity_tail(u) + "}}" for u in VITAL_UNITS),
        "panel": obs_head + category("vital-signs") + '],"code":'
                 + dumps(codes.concept(codes.LOINC, bp["panel"][0], bp["panel"][1], "Blood pressure")),
        "systolic": component(bp["systolic"]), "diastolic": component(bp["diastolic"]),
        "mmhg": quantity_tail(bp["unit"]) + "}",
        "condition_head": '","resource":{"resourceType":"Condition","clinicalStatus":'
                          + dumps(codes.concept(f"{codes.TERMINOLOGY}/condition-clinical", "active", "Active"))
                          + ',"verificationStatus":'
                          + dumps(codes.concept(f"{codes.TERMINOLOGY}/condition-ver-status", "confirmed", "Confirmed"))
                          + ',"category":[' + dumps(codes.concept(f"{codes.TERMINOLOGY}/condition-category",
                                                                  "encounter-diagnosis", "Encounter Diagnosis")) + "],",
        "triage": lookup(codes.triage_values()[c] for c in TRIAGES),
        "blood": lookup(codes.blood_group_concepts()[b] for b in BLOOD_GROUPS),
        "triage_head": obs_head + category("survey") + '],"code":{"text":"NATO triage category"}',
        "blood_head": obs_head + category("laboratory") + '],"code":'
                      + dumps(codes.concept(codes.LOINC, "882-1", "ABO and Rh group [Type] in Blood")),
        "gender": lookup(SEXES),
        "military_id": dumps(codes.concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MI",
                                           "Military ID number")),
    }
