"""MIST-AT hand-over text: one per patient, built from the patient's own rows; the same for a single record."""
from __future__ import annotations

import re

import polars as pl
import pytest

from core import generator, reference
from core.handover import handover_text, handover_texts
from core.run import generate_run
from core.scenario import load_scenario

ORDER = ["Mechanism: ", " | Injuries: ", " | Signs: ", " | Treatment: ", " | Age: ", " | Time of injury: "]


@pytest.fixture(scope="module")
def batch():
    return next(generator.stream(load_scenario("default").with_overrides(patients=3000, seed=21), chunk_size=3000))


@pytest.fixture(scope="module")
def texts(batch) -> dict[int, str]:
    frame = handover_texts(batch.patients, batch.events, batch.conditions, batch.vitals)
    assert frame["patient_id"].to_list() == batch.patients["patient_id"].to_list()
    return dict(frame.iter_rows())


def test_every_patient_has_the_six_parts_in_mist_at_order(batch, texts):
    for text in texts.values():
        positions = [text.find(label) for label in ORDER]
        assert -1 not in positions and positions == sorted(positions), text


def test_text_says_what_the_rows_say(batch, texts):
    procedures = {c: r["display"] for c, r in reference.procedures().items()}
    vitals = batch.vitals.with_columns(pl.col("code").cast(pl.String))
    for row in batch.patients.head(400).to_dicts():
        text = texts[row["patient_id"]]
        pid = row["patient_id"]
        assert f"Age: {row['age']}, {row['sex']}" in text
        assert f"Time of injury: {row['injury_time']:%Y-%m-%d %H:%M}Z" in text
        assert f"triage {row['triage']}" in text
        for cond in batch.conditions.filter(pl.col("patient_id") == pid).to_dicts():
            assert f"{cond['display']} ({cond['body_region'].replace('_', ' ')}, {cond['severity']})" in text
        mine = vitals.filter(pl.col("patient_id") == pid)
        if mine.height:
            first = mine.filter(pl.col("time") == mine["time"].min())
            hr = first.filter(pl.col("code") == "8867-4")["value"]
            if hr.len():
                assert f"HR {round(hr[0])}," in text
            sys_ = first.filter(pl.col("code") == "8480-6")["value"][0]
            dia = first.filter(pl.col("code") == "8462-4")["value"][0]
            assert f"BP {round(sys_)}/{round(dia)}" in text
        else:
            assert "Signs: none recorded" in text
        poi = batch.events.filter((pl.col("patient_id") == pid) & (pl.col("event") == "treatment_start")
                                  & (pl.col("facility") == "POI"))
        for detail in poi["detail"].to_list():
            assert procedures[detail] in text
        if not poi.height:
            assert "Treatment: none recorded" in text
        if row["category"] in ("DIS", "BSI"):
            assert text.startswith("Mechanism: disease" if row["category"] == "DIS" else "Mechanism: battle stress")
        else:
            assert text.startswith(f"Mechanism: {row['mechanism'].replace('_', ' ')} (")
        assert ("MASCAL" in text) == row["mass_casualty"]


def test_killed_at_the_point_of_injury_says_so(batch, texts):
    kia = batch.patients.filter(pl.col("outcome") == "KIA")
    no_vitals = kia.filter(~pl.col("patient_id").is_in(batch.vitals["patient_id"].implode()))
    assert no_vitals.height
    for pid, when in no_vitals.select("patient_id", "outcome_time").iter_rows():
        assert f"Signs: none recorded, died at the point of injury {when:%H:%M}Z" in texts[pid]


def test_single_record_gives_the_same_text(batch, texts):
    """The dashboard's patient card: one record with child lists, times possibly as ISO strings."""
    for pid in batch.patients["patient_id"].head(30).to_list():
        record = batch.patients.filter(pl.col("patient_id") == pid).to_dicts()[0]
        for name in ("events", "conditions", "vitals"):
            rows = getattr(batch, name).filter(pl.col("patient_id") == pid).drop("patient_id").to_dicts()
            record[name] = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]
        record["injury_time"] = record["injury_time"].isoformat()
        assert handover_text(record) == texts[pid]


def test_csv_patients_file_carries_the_handover(tmp_path):
    scenario = load_scenario("default").with_overrides(patients=500, seed=4)
    generate_run(scenario, tmp_path, fmt="csv")
    csv = pl.read_csv(tmp_path / "patients.csv", infer_schema_length=0)
    assert csv.columns[-1] == "handover"
    batch = next(generator.stream(scenario, chunk_size=500))
    want = handover_texts(batch.patients, batch.events, batch.conditions, batch.vitals)["handover"].to_list()
    assert csv["handover"].to_list() == want
    assert all(re.match(r"^Mechanism: .+ \| Time of injury: \d{4}-\d\d-\d\d \d\d:\d\dZ$", t) for t in want)
