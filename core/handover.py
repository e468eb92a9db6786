"""MIST-AT casualty hand-over text: Mechanism, Injuries, Signs, Treatment; Age and Time.

The short verbal report a medic gives the receiving team, here written from the record as it stands at the
first hand-over: the mechanism, the coded injuries with region and severity (and the triage category), the first
set of vital signs, the treatment given at the point of injury, the casualty's age and sex and the time of
injury. One text per patient, built for a whole batch with polars string expressions::

    Mechanism: explosive (battle injury, drone warfare) | Injuries: Multiple injuries (multiple, severe);
    Penetrating wound (lower extremity, moderate); triage T1, polytrauma | Signs: HR 143, RR 35, BP 63/39,
    SpO2 92 %, Temp 35.0 °C, GCS 9 (POI 00:26Z) | Treatment: Application of dressing, pressure (POI 00:21Z) |
    Age: 20, male | Time of injury: 2025-06-01 00:19Z

``handover_texts(patients, events, conditions, vitals)`` returns ``patient_id, handover`` for a batch;
``handover_text(record)`` does the same for one patient record (the dashboard's patient card: the patient's row
with lists of its ``events``, ``conditions`` and ``vitals``).
"""
from __future__ import annotations

import datetime as dt

import polars as pl

from core import reference
from core.schema import CONDITIONS, EVENTS_SCHEMA, PATIENTS, VITALS, Batch

CATEGORY_LABELS = {"BI": "battle injury", "NBI": "non-battle injury", "DIS": "disease", "BSI": "battle stress"}
SIGNS = (("8867-4", "HR ", "", 0), ("9279-1", "RR ", "", 0), ("8480-6", "BP ", "", 0), ("59408-5", "SpO2 ", " %", 0),
         ("8310-5", "Temp ", " °C", 1), ("9269-2", "GCS ", "", 0))
SIGN_CODES = [code for code, *_ in SIGNS] + ["8462-4"]


def _s(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String)


def _number(expr: pl.Expr, decimals: int) -> pl.Expr:
    return _s(expr.round(decimals) if decimals else expr.round(0).cast(pl.Int64))


def _clock(expr: pl.Expr) -> pl.Expr:
    return expr.dt.to_string("%H:%MZ")


def handover_texts(patients: pl.DataFrame, events: pl.DataFrame, conditions: pl.DataFrame,
                   vitals: pl.DataFrame) -> pl.DataFrame:
    """``patient_id`` and its MIST-AT ``handover`` text, one row per row of ``patients`` (same order)."""
    # Injuries: every coded condition in rank order
    injuries = (conditions.sort("patient_id", "rank", maintain_order=True)
                .group_by("patient_id", maintain_order=True)
                .agg(pl.format("{} ({}, {})", pl.col("display"), _s(pl.col("body_region")).str.replace_all("_", " "),
                               _s(pl.col("severity"))).str.join("; ").alias("injuries")))
    # Signs: the first set of vital signs
    first = vitals.filter(pl.col("time") == pl.col("time").min().over("patient_id"))
    value = lambda code: pl.col("value").filter(_s(pl.col("code")) == code).first()
    signs = first.group_by("patient_id", maintain_order=True).agg(
        *(value(code).alias(code) for code in SIGN_CODES),
        where=pl.format("{} {}", _s(pl.col("facility")).first(), _clock(pl.col("time").first())))
    parts = []
    for code, label, unit, decimals in SIGNS:
        shown = _number(pl.col(code), decimals)
        if code == "8480-6":  # blood pressure as systolic/diastolic
            shown = pl.concat_str([shown, _number(pl.col("8462-4"), 0)], separator="/", ignore_nulls=True)
        parts.append(pl.when(pl.col(code).is_not_null()).then(pl.concat_str([pl.lit(label), shown, pl.lit(unit)])))
    signs = signs.select("patient_id", pl.format("{} ({})", pl.concat_str(parts, separator=", ", ignore_nulls=True),
                                                 pl.col("where")).alias("signs"))
    # Treatment: what was done at the point of injury, before the first hand-over
    procedures = {code: row["display"] for code, row in reference.procedures().items()}
    treatment = (events.filter((_s(pl.col("event")) == "treatment_start") & (_s(pl.col("facility")) == "POI")
                               & pl.col("detail").is_not_null())
                 .group_by("patient_id", maintain_order=True)
                 .agg(pl.format("{} (POI {})", pl.col("detail").replace_strict(procedures, default=pl.col("detail"),
                                                                               return_dtype=pl.String),
                                _clock(pl.col("time"))).str.join("; ").alias("treatment")))

    frame = patients.select("patient_id", "category", "mechanism", "warfare_type", "mass_casualty", "triage",
                            "polytrauma", "age", "sex", "injury_time", "outcome", "outcome_time")
    for part in (injuries, signs, treatment):
        frame = frame.join(part, on="patient_id", how="left", maintain_order="left")
    category = _s(pl.col("category"))
    mechanism = (pl.when(category.is_in(["DIS", "BSI"]))
                 .then(category.replace_strict(CATEGORY_LABELS, return_dtype=pl.String))
                 .otherwise(pl.format("{} ({}, {} warfare)", _s(pl.col("mechanism")).str.replace_all("_", " "),
                                      category.replace_strict(CATEGORY_LABELS, default=category,
                                                              return_dtype=pl.String),
                                      _s(pl.col("warfare_type")))))
    mechanism = pl.concat_str([mechanism, pl.when(pl.col("mass_casualty")).then(pl.lit("MASCAL"))],
                              separator="; ", ignore_nulls=True)
    injuries = pl.concat_str([pl.col("injuries"), pl.format("triage {}", _s(pl.col("triage"))),
                              pl.when(pl.col("polytrauma")).then(pl.lit("polytrauma"))], separator="; ",
                             ignore_nulls=True)
    died_at_poi = pl.when(_s(pl.col("outcome")) == "KIA").then(
        pl.format("none recorded, died at the point of injury {}", _clock(pl.col("outcome_time"))))
    signs = pl.coalesce(pl.col("signs"), died_at_poi, pl.lit("none recorded"))
    text = pl.format("Mechanism: {} | Injuries: {} | Signs: {} | Treatment: {} | Age: {}, {} | Time of injury: {}",
                     mechanism, injuries, signs, pl.col("treatment").fill_null("none recorded"),
                     _s(pl.col("age")), _s(pl.col("sex")), pl.col("injury_time").dt.to_string("%Y-%m-%d %H:%MZ"))
    return frame.select("patient_id", text.alias("handover"))


def with_handover(batch: Batch) -> pl.DataFrame:
    """The batch's patients frame with the ``handover`` column appended."""
    texts = handover_texts(batch.patients, batch.events, batch.conditions, batch.vitals)
    return batch.patients.with_columns(texts["handover"])


def handover_text(record: dict) -> str:
    """The MIST-AT text of one patient record: its patients-row fields plus lists ``events``, ``conditions``,
    ``vitals`` of row dicts (``patient_id`` optional in them), e.g. what ``core.db.patient_record`` returns."""
    pid = record["patient_id"]
    plain = lambda schema: {c: (pl.String if isinstance(d, pl.Enum) else d) for c, d in schema.items()}

    def value(v, dtype):  # records read back from JSON or a database may carry ISO strings for times and dates
        if isinstance(v, str) and dtype == pl.Date:
            return dt.date.fromisoformat(v[:10])
        if isinstance(v, str) and isinstance(dtype, pl.Datetime):
            parsed = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
        return v

    def frame(rows, schema):
        cols = plain(schema)
        rows = [[value({**row, "patient_id": pid}.get(c), d) for c, d in cols.items()] for row in rows]
        return pl.DataFrame(rows, schema=cols, orient="row") if rows else pl.DataFrame(schema=cols)

    patients = frame([record], PATIENTS)
    return handover_texts(patients, frame(record.get("events", []), EVENTS_SCHEMA),
                          frame(record.get("conditions", []), CONDITIONS),
                          frame(record.get("vitals", []), VITALS))["handover"][0]
