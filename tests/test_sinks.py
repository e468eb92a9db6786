"""File sinks (core/sinks): every format reads back to the rows written; gzip, encryption, atomic files."""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from core.schema import TABLES, Batch
from core.sinks import FORMATS, DecryptionError, create_sink, decrypt_file

TABLE_FORMATS = tuple(f for f in FORMATS if f != "fhir")  # fhir: Parquet tables + bundles (tests/test_fhir.py)
from core.sinks import layers
from core.sinks.crypto import HEADER_SIZE, MAGIC

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
GIVEN = ["Łukasz", "Zoë", 'Ann "Annie", Jr.', "Jörg"]  # diacritics, CSV quotes and commas
FAMILY = ["Nowak", "O'Neil", "Müller\nSchmidt", "Ødegård"]  # a line break inside a field


def pick(dtype: pl.Enum, i: int) -> str:
    categories = dtype.categories.to_list()
    return categories[i % len(categories)]


def frame(table: str, rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TABLES[table], orient="row") if rows else pl.DataFrame(schema=TABLES[table])


def make_batch(first: int, n: int) -> Batch:
    """Patients first..first+n-1; patient i has i % 4 events, 1 + i % 2 conditions and (i % 3) * 7 vitals."""
    patients, events, conditions, vitals = [], [], [], []
    for i in range(first, first + n):
        injury = T0 + dt.timedelta(minutes=37 * i, microseconds=(i % 3) * 250_000)
        row = {}
        for name, dtype in TABLES["patients"].items():
            row[name] = pick(dtype, i) if isinstance(dtype, pl.Enum) else None
        row.update(patient_id=i, service_number=f"SN-{i:06d}", given_name=GIVEN[i % 4], family_name=FAMILY[i % 4],
                   birth_date=dt.date(1990, 1, 1) + dt.timedelta(days=97 * i), age=18 + i % 40, nationality="POL",
                   front="Suwałki gap", polytrauma=i % 2 == 0, condition_code="125596004",
                   condition_display="Injury of thorax", injury_time=injury, event_id=f"EV-{i // 3}",
                   mass_casualty=i % 5 == 0, outcome_time=injury + dt.timedelta(hours=5))
        patients.append([row[c] for c in TABLES["patients"]])
        for seq in range(i % 4):
            events.append([i, seq, injury + dt.timedelta(minutes=20 * seq), pick(TABLES["events"]["facility"], seq),
                           pick(TABLES["events"]["event"], seq), None if seq % 2 else "air"])
        for rank in range(1, 2 + i % 2):
            conditions.append([i, rank, str(125596004 + rank), f"Condition {rank}, \"quoted\"",
                               pick(TABLES["conditions"]["body_region"], i + rank),
                               pick(TABLES["conditions"]["severity"], rank)])
        for k in range((i % 3) * 7):
            vitals.append([i, injury + dt.timedelta(minutes=k // 7), pick(TABLES["vitals"]["facility"], k // 7),
                           pick(TABLES["vitals"]["code"], k), pick(TABLES["vitals"]["name"], k),
                           36.55 + k + i / 8, pick(TABLES["vitals"]["unit"], k)])
    return Batch(frame("patients", patients), frame("events", events), frame("conditions", conditions),
                 frame("vitals", vitals))


BATCHES = [make_batch(1, 5), make_batch(6, 4), make_batch(10, 6)]
PLAIN = {t: {c: pl.String if isinstance(d, pl.Enum) else d for c, d in s.items()} for t, s in TABLES.items()}


def expected(batches=BATCHES) -> dict[str, pl.DataFrame]:
    """What consumers get: the rows written, categorical columns as plain strings."""
    return {t: pl.concat([b.tables()[t] for b in batches]).cast(PLAIN[t]) for t in TABLES}


def write_run(out, fmt: str, batches=BATCHES, **options) -> list[dict]:
    with create_sink(fmt, out, **options) as sink:
        for batch in batches:
            sink.write(batch)
    return sink.files


def plain_bytes(path, password: str | None = None) -> bytes:
    """Undo the .enc and .gz layers, as a consumer would."""
    if path.name.endswith(".enc"):
        path = decrypt_file(path, path.with_name(path.name.removesuffix(".enc")), password)
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def parse_times(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Text formats carry times and dates as ISO strings."""
    return df.with_columns(
        [pl.col(c).str.to_datetime(time_unit="us", time_zone="UTC") for c, d in TABLES[table].items() if d == pl.Datetime("us", "UTC")]
        + [pl.col(c).str.to_date() for c, d in TABLES[table].items() if d == pl.Date])


def read_back(fmt: str, data: dict[str, bytes]) -> dict[str, pl.DataFrame]:
    if fmt == "parquet":
        return {t: pl.read_parquet(data[t]) for t in TABLES}
    if fmt == "csv":
        # patients.csv carries the MIST-AT hand-over text as an extra column (core/handover.py)
        return {t: pl.read_csv(data[t], try_parse_dates=True).drop("handover", strict=False).cast(PLAIN[t])
                for t in TABLES}
    if fmt == "ndjson":
        return {t: parse_times(pl.read_ndjson(data[t], infer_schema_length=None), t).cast(PLAIN[t]) for t in TABLES}
    records = json.loads(data["patients"])  # one array of nested patients
    children = ("events", "conditions", "vitals")
    flat = {"patients": [{k: v for k, v in p.items() if k not in children} for p in records]}
    for child in children:
        flat[child] = [{"patient_id": p["patient_id"], **row} for p in records for row in p[child]]
    return {t: parse_times(pl.DataFrame(rows, schema={c: pl.String if d.is_temporal() else d
                                                      for c, d in PLAIN[t].items()}), t) for t, rows in flat.items()}


def visible(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
@pytest.mark.parametrize("compress, password", [(False, None), (True, None), (False, PASSWORD), (True, PASSWORD)],
                         ids=["plain", "gzip", "aes", "gzip+aes"])
def test_round_trip(tmp_path, fmt, compress, password):
    files = write_run(tmp_path, fmt, compress=compress, password=password)
    suffix = fmt + (".gz" if compress else "") + (".enc" if password else "")
    tables = list(TABLES)
    assert [f["name"] for f in files] == [f"{t}.{suffix}" for t in tables]
    assert visible(tmp_path) == sorted(f["name"] for f in files)  # no temp files left
    want = expected()
    assert [f["rows"] for f in files] == [want[t].height for t in tables]
    data = {f["table"]: plain_bytes(tmp_path / f["name"], password) for f in files}
    got = read_back(fmt, data)
    for table in TABLES:
        assert_frame_equal(got[table], want[table], check_dtypes=True)
    if fmt == "json":  # the flat arrays hold the same rows as the nested patients
        for table in ("events", "conditions", "vitals"):
            flat = pl.DataFrame(json.loads(data[table]), schema={c: pl.String if d.is_temporal() else d
                                                                 for c, d in PLAIN[table].items()})
            assert_frame_equal(parse_times(flat, table), want[table], check_dtypes=True)


def test_parquet_gives_plain_strings_and_utc_times(tmp_path):
    write_run(tmp_path, "parquet")
    patients = pl.read_parquet(tmp_path / "patients.parquet")
    assert patients.schema["sex"] == pl.String and patients.schema["triage"] == pl.String
    assert patients.schema["injury_time"] == pl.Datetime("us", "UTC")
    assert patients.schema["birth_date"] == pl.Date
    assert pl.read_parquet(tmp_path / "vitals.parquet").schema["code"] == pl.String
    arrow = pq.read_table(tmp_path / "events.parquet").schema
    assert str(arrow.field("facility").type) == "string" and str(arrow.field("time").type) == "timestamp[us, tz=UTC]"
    column = pq.ParquetFile(tmp_path / "events.parquet").metadata.row_group(0).column(3)
    assert "RLE_DICTIONARY" in column.encodings  # stored dictionary-encoded all the same
    assert pq.ParquetFile(tmp_path / "events.parquet").metadata.num_row_groups == len(BATCHES)


def test_json_is_one_array_of_nested_patients(tmp_path):
    write_run(tmp_path, "json")
    assert visible(tmp_path) == ["conditions.json", "events.json", "patients.json", "vitals.json"]
    records = json.loads((tmp_path / "patients.json").read_text(encoding="utf-8"))
    assert [p["patient_id"] for p in records] == list(range(1, 16))
    for p in records:
        i = p["patient_id"]
        assert (len(p["events"]), len(p["conditions"]), len(p["vitals"])) == (i % 4, 1 + i % 2, (i % 3) * 7)
    assert records[1]["family_name"] == "Müller\nSchmidt" and records[1]["given_name"] == 'Ann "Annie", Jr.'
    p3 = records[2]
    assert p3["injury_time"] == "2026-03-01T07:51:00+00:00" and p3["birth_date"] == "1990-10-19"
    assert p3["events"][2] == {"seq": 2, "time": "2026-03-01T08:31:00+00:00", "facility": "R2",
                               "event": "treatment_start", "detail": "air"}
    assert "patient_id" not in p3["conditions"][0]


def test_csv_times_are_iso_with_offset(tmp_path):
    write_run(tmp_path, "csv")
    lines = (tmp_path / "events.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "patient_id,seq,time,facility,event,detail"
    assert lines[1] == "1,0,2026-03-01T06:37:00.250+00:00,POI,injury,air"


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_run_writes_valid_empty_files(tmp_path, fmt):
    files = write_run(tmp_path, fmt, batches=[])
    assert all(f["rows"] == 0 for f in files)
    if fmt == "parquet":
        assert pl.read_parquet(tmp_path / "vitals.parquet").schema == pl.Schema(PLAIN["vitals"])
    elif fmt == "csv":
        assert (tmp_path / "conditions.csv").read_text() == "patient_id,rank,code,display,body_region,severity\n"
    elif fmt == "json":
        assert all(json.loads((tmp_path / f"{t}.json").read_text()) == [] for t in TABLES)
    elif fmt == "fhir":
        assert pl.read_parquet(tmp_path / "vitals.parquet").schema == pl.Schema(PLAIN["vitals"])
        assert (tmp_path / "fhir" / "Bundle.ndjson").read_bytes() == b""
    else:
        assert (tmp_path / "patients.ndjson").read_bytes() == b""


@pytest.mark.parametrize("fmt", FORMATS)
def test_close_reports_size_and_sha256_of_the_file_on_disk(tmp_path, fmt):
    for entry in write_run(tmp_path, fmt, compress=True, password=PASSWORD):
        data = (tmp_path / entry["name"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_rows_give_identical_files(tmp_path, fmt):
    first = write_run(tmp_path / "a", fmt, compress=True)
    second = write_run(tmp_path / "b", fmt, compress=True)
    assert [f["sha256"] for f in first] == [f["sha256"] for f in second]


def test_abort_removes_everything_and_is_idempotent(tmp_path):
    sink = create_sink("parquet", tmp_path, compress=True, password=PASSWORD)
    sink.abort()  # before open: nothing to do
    sink = create_sink("parquet", tmp_path).open()
    sink.write(BATCHES[0])
    assert any(name.startswith(".") and ".partial-" in name for name in visible(tmp_path))
    sink.abort()
    sink.abort()
    assert visible(tmp_path) == []
    with pytest.raises(RuntimeError):
        sink.write(BATCHES[1])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_error_inside_with_block_leaves_nothing(tmp_path, fmt, error):
    with pytest.raises(error):
        with create_sink(fmt, tmp_path, compress=True) as sink:
            sink.write(BATCHES[0])
            sink.write(BATCHES[1])
            raise error("generator failed")
    assert visible(tmp_path) == []


def test_failed_write_surfaces_and_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(self, data):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        with create_sink("ndjson", tmp_path) as sink:
            monkeypatch.setattr(layers.TempFile, "write", disk_full)
            for batch in BATCHES:
                sink.write(batch)
    assert visible(tmp_path) == []


def test_existing_files_survive_an_aborted_rewrite(tmp_path):
    write_run(tmp_path, "csv")
    before = {name: (tmp_path / name).read_bytes() for name in visible(tmp_path)}
    with pytest.raises(RuntimeError):
        with create_sink("csv", tmp_path) as sink:
            sink.write(BATCHES[2])
            raise RuntimeError("cancelled")
    assert {name: (tmp_path / name).read_bytes() for name in visible(tmp_path)} == before


def test_abort_after_close_keeps_the_files(tmp_path):
    sink = create_sink("ndjson", tmp_path).open()
    sink.write(BATCHES[0])
    files = sink.close()
    sink.abort()
    assert visible(tmp_path) == sorted(f["name"] for f in files)
    assert sink.close() == files


def test_wrong_password_raises_and_writes_nothing(tmp_path):
    write_run(tmp_path, "ndjson", password=PASSWORD)
    with pytest.raises(DecryptionError, match="wrong password or damaged file"):
        decrypt_file(tmp_path / "patients.ndjson.enc", tmp_path / "out.ndjson", "not the password")
    assert "out.ndjson" not in visible(tmp_path) and not any(".partial-" in n for n in visible(tmp_path))


@pytest.mark.parametrize("offset", [HEADER_SIZE + 10, len(MAGIC) + 3, -1], ids=["ciphertext", "salt", "tag"])
def test_tampered_file_raises(tmp_path, offset):
    write_run(tmp_path, "csv", compress=True, password=PASSWORD)
    path = tmp_path / "events.csv.gz.enc"
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DecryptionError, match="wrong password or damaged file"):
        decrypt_file(path, tmp_path / "events.csv.gz", PASSWORD)
    assert not (tmp_path / "events.csv.gz").exists()


def test_truncated_or_foreign_files_raise(tmp_path):
    write_run(tmp_path, "ndjson", password=PASSWORD)
    path = tmp_path / "vitals.ndjson.enc"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DecryptionError, match="wrong password or damaged file"):
        decrypt_file(path, tmp_path / "vitals.ndjson", PASSWORD)
    foreign = tmp_path / "plain.csv"
    foreign.write_text("a,b\n1,2\n" * 20)
    with pytest.raises(DecryptionError, match="not an encrypted container"):
        decrypt_file(foreign, tmp_path / "x.csv", PASSWORD)
    assert not (tmp_path / "vitals.ndjson").exists() and not (tmp_path / "x.csv").exists()


def test_encrypted_container_layout(tmp_path):
    write_run(tmp_path, "parquet", password=PASSWORD)
    headers = [(tmp_path / f"{t}.parquet.enc").read_bytes()[:HEADER_SIZE] for t in TABLES]
    assert all(h.startswith(MAGIC + b"\x01") for h in headers)
    assert len({h[7:23] for h in headers}) == 1  # one salt (one key derivation) per run
    assert len({h[23:35] for h in headers}) == len(TABLES)  # a fresh nonce per file


def test_unknown_format_names_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'xml'.*parquet, csv, ndjson, json"):
        create_sink("xml", tmp_path)


def test_empty_password_is_refused(tmp_path):
    with pytest.raises(ValueError, match="password"):
        create_sink("csv", tmp_path, password="")


def test_frame_not_matching_the_schema_is_refused(tmp_path):
    batch = BATCHES[0]
    wrong = Batch(batch.patients.with_columns(pl.col("sex").cast(pl.String)), batch.events, batch.conditions, batch.vitals)
    with pytest.raises(ValueError, match=r"patients.*\['sex'\]"):
        with create_sink("parquet", tmp_path) as sink:
            sink.write(wrong)
    assert visible(tmp_path) == []


def test_write_behind_keeps_the_bytes_and_hash_exact(tmp_path, monkeypatch):
    """Long files hint the kernel to drop written pages; what lands on disk is still every byte, in order."""
    from core.sinks import layers
    calls = []
    real = os.posix_fadvise
    monkeypatch.setattr(layers, "WRITE_BEHIND", 64 << 10)
    monkeypatch.setattr(layers.os, "posix_fadvise", lambda *a: (calls.append(a[1:3]), real(*a))[1])
    out = layers.TempFile(tmp_path / "big.bin")
    chunks = [bytes([i % 251]) * (37_000 + i) for i in range(60)]
    for chunk in chunks:
        out.write(chunk)
    entry = out.commit()
    data = (tmp_path / "big.bin").read_bytes()
    assert data == b"".join(chunks)
    assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(calls) >= 5 and all(off + n <= len(data) for off, n in calls)


def test_parquet_writes_while_other_threads_read_the_same_frames(tmp_path):
    """The database loader and the calibration read a batch while the Parquet lanes convert it to Arrow; with
    polars 2.1 a plain to_arrow beside a concurrent .schema read of the same frame could deadlock."""
    import threading
    batches = BATCHES * 30
    stop, result = threading.Event(), {}

    def read_all():
        while not stop.is_set():
            for b in batches:
                for frame in b.tables().values():
                    frame.schema, frame.height

    def write():
        result["files"] = write_run(tmp_path, "parquet", batches=batches)

    threads = [threading.Thread(target=read_all, daemon=True) for _ in range(2)]
    writer = threading.Thread(target=write, daemon=True)  # daemon: a deadlock fails the test, not the whole run
    for t in (*threads, writer):
        t.start()
    writer.join(60)
    stop.set()
    for t in threads:
        t.join(10)
    assert not writer.is_alive() and not any(t.is_alive() for t in threads), "deadlock: a thread never finished"
    files = result["files"]
    assert sum(f["rows"] for f in files if f["table"] == "patients") == sum(b.patients.height for b in batches)
