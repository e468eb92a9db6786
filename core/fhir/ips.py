"""The International Patient Summary option: a Composition that makes each patient's Bundle an IPS document.

Sections (LOINC codes from core/reference_data/fhir_terminology.json): the three the IPS requires, Medication Summary
(no medication data in a casualty record: ``emptyReason`` *unavailable*), Allergies and Intolerances (same),
Problem List (every Condition); History of Procedures (every Procedure, or *nilknown* when none was done);
Vital Signs (every vital-sign Observation, or *unavailable*); and a Triage section with the triage Observation
and the blood group. Each section carries a generated XHTML narrative (FHIR cmp-1 asks for text, entries or
sub-sections; the IPS asks for text in every section); the Composition's own narrative is the MIST-AT hand-over.
"""
from __future__ import annotations

import polars as pl

from core.handover import handover_texts

from . import codes
from .expressions import cat, js, lit, time, uuid
from .codes import dumps

XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">'
EMPTY = f"{codes.TERMINOLOGY}/list-empty-reason"


def xhtml_escape(expr: pl.Expr) -> pl.Expr:
    return (expr.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True))


def refs(frame: pl.DataFrame, url: str, name: str, label: pl.Expr | None = None) -> pl.DataFrame:
    """Per patient: the ``{"reference":…}`` list of ``url`` (and ``<li>`` items of ``label`` for the narrative)."""
    aggs = [cat('{"reference":"', pl.col(url), '"}').str.join(",").alias(name)]
    if label is not None:
        aggs.append(cat("<li>", xhtml_escape(label), "</li>").str.join("").alias(f"{name}_li"))
    return frame.group_by("patient_id", maintain_order=True).agg(aggs)


def section(key: str, narrative: pl.Expr, entries: pl.Expr | None, empty: tuple[str, str]) -> pl.Expr:
    code, display, title = codes.terminology()["ips"][key]
    head = (f'{{"title":{dumps(title)},"code":{dumps(codes.concept(codes.LOINC, code, display))},'
            '"text":{"status":"generated","div":')
    empty_reason = ',"emptyReason":' + dumps(codes.concept(EMPTY, *empty)) + "}"
    div = js(cat(XHTML, narrative, "</div>"))
    if entries is None:
        return cat(head, div, "}", empty_reason)
    return cat(head, div, "}", pl.when(entries.is_not_null()).then(cat(',"entry":[', entries, "]}"))
               .otherwise(lit(empty_reason)))


def composition_entry(builder, frame: pl.DataFrame, cond: pl.DataFrame, obs: pl.DataFrame, tri: pl.DataFrame,
                      proc: pl.DataFrame, batch) -> pl.DataFrame:
    """``frame`` (one row per patient) with a ``composition`` column: the Bundle's first entry."""
    seed = builder.seed
    proc = proc.with_columns(label=pl.col("detail").cast(pl.String).replace_strict(
        codes.procedure_displays(), default=pl.col("detail").cast(pl.String), return_dtype=pl.String))
    obs = obs.sort("key")  # the builder makes single values and blood-pressure panels apart
    parts = [refs(cond, "c_url", "s_problems", pl.col("display")),
             refs(proc.filter(pl.col("label").is_not_null()), "r_url", "s_procedures", pl.col("label")),
             refs(obs, "o_url", "s_vitals"),
             obs.group_by("patient_id").agg(pl.len().alias("n_vitals")),
             handover_texts(batch.patients, batch.events, batch.conditions, batch.vitals),
             tri.select("patient_id", "t_url", "b_url")]
    for part in parts:
        frame = frame.join(part, on="patient_id", how="left", maintain_order="left")
    nothing = lit("No information available.")
    sections = [
        section("medications", lit("No medication information is held in the casualty record."), None,
                ("unavailable", "Unavailable")),
        section("allergies", lit("No allergy information is held in the casualty record."), None,
                ("unavailable", "Unavailable")),
        section("problems", pl.when(pl.col("s_problems_li").is_not_null())
                .then(cat("<ul>", pl.col("s_problems_li"), "</ul>")).otherwise(nothing), pl.col("s_problems"),
                ("nilknown", "Nil Known")),
        section("procedures", pl.when(pl.col("s_procedures_li").is_not_null())
                .then(cat("<ul>", pl.col("s_procedures_li"), "</ul>")).otherwise(lit("No procedures recorded.")),
                pl.col("s_procedures"), ("nilknown", "Nil Known")),
        section("vital_signs", pl.when(pl.col("n_vitals").is_not_null())
                .then(cat(pl.col("n_vitals").cast(pl.String), " vital-sign observations recorded.")).otherwise(nothing),
                pl.col("s_vitals"), ("unavailable", "Unavailable")),
        cat('{"title":"Triage","code":{"text":"NATO triage category and blood group"},"text":{"status":"generated",'
            '"div":', js(cat(XHTML, "Triage ", pl.col("triage").cast(pl.String), ", blood group ",
                             pl.col("blood_group").cast(pl.String), "</div>")),
            '},"entry":[{"reference":"', pl.col("t_url"), '"},{"reference":"', pl.col("b_url"), '"}]}'),
    ]
    composition = cat(
        '{"resourceType":"Composition","text":{"status":"generated","div":',
        js(cat(XHTML, xhtml_escape(pl.col("handover")), "</div>")),
        '},"status":"final","type":', dumps(codes.concept(codes.LOINC, *codes.terminology()["ips"]["document"])),
        ',"subject":{"reference":"', pl.col("p_url"), '","display":',
        js(pl.concat_str([pl.col("given_name"), pl.col("family_name")], separator=" ")),
        '},"date":', time("outcome_time"), ',"author":[{"reference":"', lit(builder.device_url),
        '"}],"title":', js(cat("International Patient Summary: ", pl.col("service_number"))),
        ',"confidentiality":"N","section":[', pl.concat_str(sections, separator=","), "]}")
    c_url = uuid(seed, "composition", lit("0"))
    return frame.with_columns(composition=cat('{"fullUrl":"', c_url, '","resource":', composition, "}"))
