"""Check a run folder against the data contract (docs/data-contract.md): the manifest and the files it lists, the
four tables with their columns, types and vocabularies, and rules 1-7 that tie patients and their events together.

    report = check_run("runs/demo")      # RunUnreadable (one-line message) when there is no run to check
    report.holds                         # True when every rule holds
    report.problems                      # [Problem(rule, message, count, example), ...], one per broken rule

Every format the project writes is read: parquet, csv, ndjson and json (the nested ``patients.json`` must hold the
same child rows as the flat ``events.json``, ``conditions.json`` and ``vitals.json``), each possibly gzipped.
Encrypted runs are refused: the password stays with its owner. All checks are whole-column polars work; rows of
other tables find their patient by position (patient_id is 1..N) rather than by a join.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from core.schema import (BI_MECHANISMS, BLOOD_GROUPS, CATEGORIES, CONTRACT_VERSION, DEATH_TYPES, EVENTS, FACILITIES,
                         NBI_MECHANISMS, OUTCOMES, RANKS, REGIONS, SEVERITIES, SEXES, TABLES, TERMINAL_EVENTS,
                         TRIAGES, UTC_TIME, VITAL_SIGNS, WARFARE_TYPES)

FORMATS = ("parquet", "csv", "ndjson", "json")
CHILDREN = ("events", "conditions", "vitals")
MANIFEST_FIELDS = ("contract_version", "generator_version", "run_id", "seed", "scenario", "scenario_sha256",
                   "patients", "started_at", "finished_at", "elapsed_s", "peak_rss_mb", "status", "files")
NULLABLE = {("events", "detail"), ("patients", "death_type")}  # every other contract column is always filled
MECHANISMS_BY_CATEGORY = {"BI": BI_MECHANISMS, "NBI": NBI_MECHANISMS, "DIS": ("none",), "BSI": ("none",)}
# LOINC code -> the physiologically possible range the contract promises (docs/data-contract.md, table vitals)
VITAL_LIMITS = {"8867-4": (0, 250), "9279-1": (0, 80), "8480-6": (0, 300), "8462-4": (0, 200),
                "59408-5": (0, 100), "8310-5": (25, 43), "9269-2": (3, 15)}
SNOMED_ID = r"^\d{6,18}$"
ISO_ALPHA3 = r"^[A-Z]{3}$"
TIME_TEXT = "%Y-%m-%dT%H:%M:%S%.f%:z"  # RFC 3339 with an offset, as the text formats write times
UTC_TEXT = "%Y-%m-%dT%H:%M:%S%.f+00:00"
HASH_CHUNK = 4 << 20
NESTED_PIECE = 32 << 20  # bytes of patients.json parsed at a time: parsed nested records take many times their size


class RunUnreadable(Exception):
    """Not a run that can be checked (no folder, no manifest, an encrypted or unfinished run); one-line message."""


@dataclass(frozen=True)
class Problem:
    """One broken rule: ``rule`` names the contract section, ``count`` the rows or patients, ``example`` one of them."""

    rule: str
    message: str
    count: int = 1
    example: str | None = None

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}: {self.count:,}" + (f", e.g. {self.example}" if self.example else "")


@dataclass
class ContractReport:
    folder: Path
    format: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.problems

    @property
    def rules(self) -> set[str]:
        return {p.rule for p in self.problems}

    def summary(self) -> str:
        sizes = ", ".join(f"{self.counts.get(t, 0):,} {t}" for t in TABLES)
        if self.holds:
            return f"contract holds: {sizes} ({self.format})"
        n = len(self.problems)
        return f"contract broken: {n} rule{'s' if n > 1 else ''} fail{'' if n > 1 else 's'}; {sizes} ({self.format})"

    def lines(self) -> list[str]:
        return [f"FAIL {p}" for p in self.problems] + [self.summary()]

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "format": self.format, "holds": self.holds, "counts": self.counts,
                "problems": [{"rule": p.rule, "message": p.message, "count": p.count, "example": p.example}
                             for p in self.problems]}


def check_run(folder: str | Path) -> ContractReport:
    """Check the run in ``folder``; raises RunUnreadable when there is no completed, readable run to check."""
    folder = Path(folder)
    manifest = _manifest(folder)
    files = _table_files(folder, manifest)
    report = ContractReport(folder, format=manifest.get("format") or files["patients"].fmt)
    check = _Checker(report.problems)
    frames: dict[str, pl.DataFrame] = {}
    for table in (*CHILDREN, "patients"):  # the children first: a nested patients.json is compared with them
        tf = files[table]
        try:
            if tf.nested:
                frames[table] = _read_nested(tf, frames, check) if set(CHILDREN) <= set(frames) else None
            else:
                frames[table] = tf.read()
        except (OSError, EOFError, ValueError, pl.exceptions.PolarsError) as exc:
            check.note("files", f"cannot read the file ({_first_line(exc)})", example=tf.path.name)
    if all(frames.get(t) is not None for t in TABLES):
        tables = {t: check.conform(t, frames[t], json_like=files[t].fmt in ("ndjson", "json")) for t in TABLES}
        report.counts = {t: tables[t].height for t in TABLES}
        _RunRules(check, manifest, tables).run()
    _check_manifest(check, folder, manifest, report.counts)
    return report


# --- the folder -------------------------------------------------------------------------------------------------

def _manifest(folder: Path) -> dict:
    if not folder.is_dir():
        raise RunUnreadable(f"{folder} is not a folder")
    path = folder / "manifest.json"
    if not path.is_file():
        raise RunUnreadable(f"{folder} holds no manifest.json (not a run folder, or a run still being written)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunUnreadable(f"{path} is not readable JSON ({_first_line(exc)})") from None
    if not isinstance(manifest, dict):
        raise RunUnreadable(f"{path} does not hold a JSON object")
    listed = [str(f.get("name", "")) for f in _entries(manifest)]
    if manifest.get("encrypted") or any(n.endswith(".enc") for n in listed) or any(folder.glob("*.enc")):
        raise RunUnreadable(f"the run in {folder} is encrypted (AES-256-GCM): decrypt its files with "
                            f"`python -m core decrypt` into a folder with its manifest.json, then check that folder")
    if manifest.get("status") != "completed":
        raise RunUnreadable(f"the run in {folder} is {manifest.get('status') or 'unfinished'}: "
                            f"only a completed run has tables to check")
    return manifest


def _entries(manifest: dict) -> list[dict]:
    files = manifest.get("files")
    return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []


def _wire_type(dtype: pl.DataType) -> pl.DataType:
    """How a contract column is typed in JSON: numbers, booleans, and text for everything else (times, codes)."""
    if dtype.is_integer():
        return pl.Int64
    if dtype.is_float() or dtype == pl.Boolean:
        return dtype
    return pl.String


WIRE = {table: {col: _wire_type(dtype) for col, dtype in cols.items()} for table, cols in TABLES.items()}
NESTED = {**WIRE["patients"], **{child: pl.List(pl.Struct({c: d for c, d in WIRE[child].items() if c != "patient_id"}))
                                 for child in CHILDREN}}


@dataclass(frozen=True)
class _TableFile:
    table: str
    path: Path
    fmt: str
    compressed: bool

    @property
    def nested(self) -> bool:
        return self.table == "patients" and self.fmt == "json"

    def data(self) -> bytes:
        raw = self.path.read_bytes()
        return gzip.decompress(raw) if self.compressed else raw

    def read(self) -> pl.DataFrame:
        source = io.BytesIO(self.data()) if self.compressed else self.path
        if self.fmt == "parquet":
            return pl.read_parquet(source)
        if self.fmt == "csv":
            return pl.read_csv(source, infer_schema=False)  # every value as text, parsed by the contract's types
        if self.fmt == "ndjson":
            return pl.read_ndjson(source, schema=WIRE[self.table])
        data, schema = self.data(), WIRE[self.table]
        if data.startswith(b"[\n") and data.endswith(b"\n]\n"):  # one record per line: as NDJSON, a third of the memory
            lines = data[2:-3].replace(b",\n", b"\n")  # a JSON string never holds a raw line break
            if not lines.strip():
                return pl.DataFrame(schema=schema)
            try:
                return pl.read_ndjson(lines, schema=schema)
            except pl.exceptions.PolarsError:
                pass  # another layout that merely starts and ends alike: parsed as one document below
        return pl.read_json(io.BytesIO(data), schema=schema)


def _table_files(folder: Path, manifest: dict) -> dict[str, _TableFile]:
    listed = {f.get("table") or str(f.get("name", "")).split(".")[0]: str(f.get("name", ""))
              for f in _entries(manifest)}
    out = {}
    for table in TABLES:
        names = [listed[table]] if listed.get(table) else sorted(
            p.name for p in folder.glob(f"{table}.*") if _format_of(p.name)[0])
        if not names or not (folder / names[0]).is_file():
            raise RunUnreadable(f"the run in {folder} has no {table} file "
                                f"({table}.parquet, .csv, .ndjson or .json, optionally .gz)")
        fmt, compressed = _format_of(names[0])
        if fmt is None:
            raise RunUnreadable(f"{names[0]} is not a format the contract knows ({', '.join(FORMATS)}, optionally .gz)")
        out[table] = _TableFile(table, folder / names[0], fmt, compressed)
    return out


def _format_of(name: str) -> tuple[str | None, bool]:
    compressed = name.endswith(".gz")
    ext = name.removesuffix(".gz").rsplit(".", 1)[-1]
    return (ext if ext in FORMATS else None), compressed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _nested_pieces(data: bytes) -> Iterator[bytes]:
    """patients.json as JSON arrays of a few MB each: records sit one per line, so a ``,\\n`` (never inside a JSON
    string) ends a record; any other layout is parsed whole."""
    if not (data.startswith(b"[\n") and data.endswith(b"\n]\n")):
        yield data
        return
    start, end = 2, len(data) - 3
    while start < end:
        cut = data.find(b",\n", min(start + NESTED_PIECE, end))
        stop = end if cut < 0 else cut
        yield b"[" + data[start:stop] + b"]"
        start = stop + 2


def _read_nested(tf: _TableFile, flat: dict[str, pl.DataFrame], check: _Checker) -> pl.DataFrame:
    """The patients of a nested patients.json, piece by piece; each piece's child rows must be the next rows of the
    flat child files."""
    offsets = dict.fromkeys(CHILDREN, 0)
    parts, differ = [], dict.fromkeys(CHILDREN, 0)
    example: dict[str, str | None] = dict.fromkeys(CHILDREN)
    for piece in _nested_pieces(tf.data()):
        frame = pl.read_json(piece, schema=NESTED)
        for child in CHILDREN:
            rows = (frame.select("patient_id", child).explode(child).filter(pl.col(child).is_not_null())
                    .unnest(child).select(WIRE[child].keys()))
            expected = flat[child].slice(offsets[child], rows.height)
            offsets[child] += rows.height
            if not rows.equals(expected):
                bad = (rows.head(expected.height)
                       .filter(pl.any_horizontal(pl.col(c).ne_missing(expected[c]) for c in rows.columns)))
                differ[child] += bad.height + rows.height - expected.height
                example[child] = example[child] or (f"patient_id={bad['patient_id'][0]}" if bad.height else None)
        parts.append(frame.drop(CHILDREN))
    for child in CHILDREN:
        differ[child] += max(flat[child].height - offsets[child], 0)  # rows the nested records lack
        if differ[child]:
            check.note("json", f"patients.json nests {child} rows that differ from {child}.json (rows)", differ[child],
                       example[child])
    return pl.concat(parts) if parts else pl.DataFrame(schema=WIRE["patients"])


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _digest(path: Path, count_lines: bool) -> tuple[int, str, int]:
    """Size, sha256 and (for NDJSON files) line count of a file, read in chunks."""
    sha, size, lines = hashlib.sha256(), 0, 0
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            if count_lines:
                lines += chunk.count(b"\n")
    return size, sha.hexdigest(), lines


def _check_manifest(check: _Checker, folder: Path, manifest: dict, counts: dict[str, int]) -> None:
    missing = [k for k in MANIFEST_FIELDS if k not in manifest]
    if missing:
        check.note("manifest", f"manifest.json lacks {', '.join(missing)}", len(missing))
    if "contract_version" in manifest and manifest["contract_version"] != CONTRACT_VERSION:
        check.note("manifest", f"contract_version is {manifest['contract_version']!r}, this check is for "
                               f"version {CONTRACT_VERSION}")
    scenario = manifest.get("scenario")
    if isinstance(scenario, dict):
        canonical = json.dumps(scenario, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        if "scenario_sha256" in manifest and digest != manifest["scenario_sha256"]:
            check.note("manifest", "scenario_sha256 is not the sha256 of the scenario's canonical JSON")
        if "seed" in manifest and scenario.get("seed", manifest["seed"]) != manifest["seed"]:
            check.note("manifest", f"seed {manifest['seed']!r} differs from the scenario's {scenario.get('seed')!r}")
    if counts and manifest.get("patients") != counts["patients"]:
        check.note("manifest", f"manifest.json says {_number(manifest.get('patients'))} patients, the patients "
                               f"table holds {counts['patients']:,}")
    entries = _entries(manifest)
    for entry in entries:
        name = str(entry.get("name", ""))
        path = folder / name
        if not name or not path.is_file():
            check.note("files", "a file listed in manifest.json is missing", example=name or "(no name)")
            continue
        bundle = name.endswith(".ndjson") and (entry.get("table") or name.split(".")[0]) not in TABLES
        size, sha, lines = _digest(path, count_lines=bundle)
        if entry.get("bytes") != size:
            check.note("files", f"size differs from manifest.json ({_number(entry.get('bytes'))} bytes listed, "
                                f"{size:,} on disk)", example=name)
        if entry.get("sha256") != sha:
            check.note("files", "sha256 differs from manifest.json", example=name)
        rows = lines if bundle else counts.get(entry.get("table") or name.split(".")[0])
        if rows is not None and entry.get("rows") != rows:
            check.note("files", f"rows differ from manifest.json ({_number(entry.get('rows'))} listed, {rows:,} "
                                f"in the file)", example=name)
    listed = {str(f.get("name", "")) for f in entries}
    strays = sorted(name for t in (*TABLES, "fhir/Bundle") for p in folder.glob(f"{t}.*")
                    if (name := p.relative_to(folder).as_posix()) not in listed)
    if strays:
        check.note("files", "files under a final name are not listed in manifest.json", len(strays), strays[0])


# --- columns and types ------------------------------------------------------------------------------------------

class _Checker:
    """Collects problems; each check passes the rows that break a rule."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems

    def note(self, rule: str, message: str, count: int = 1, example: str | None = None) -> None:
        self.problems.append(Problem(rule, message, count, example))

    def fail(self, rule: str, message: str, bad: pl.DataFrame, unit: str = "rows") -> None:
        if bad.height:
            example = f"patient_id={bad['patient_id'][0]}" if "patient_id" in bad.columns else None
            self.note(rule, f"{message} ({unit})", bad.height, example)

    def conform(self, table: str, frame: pl.DataFrame, json_like: bool) -> pl.DataFrame:
        """The frame with the contract's column types; missing columns, values of the wrong type and empty values
        are problems (text formats carry times, dates, numbers and booleans as text). In JSON a missing key reads
        as null, so there a column that is null throughout counts as missing."""
        contract = TABLES[table]
        missing = [c for c in contract if c not in frame.columns or (
            json_like and frame.height and (table, c) not in NULLABLE and frame[c].null_count() == frame.height)]
        if missing:
            self.note("columns", f"{table} lacks columns {', '.join(missing)}", len(missing))
        present = [c for c in contract if c not in missing]
        parsed = pl.DataFrame([_as_contract_type(frame[c], contract[c]) if c in present
                               else pl.Series(c, [None] * frame.height, dtype=_contract_type(contract[c]))
                               for c in contract])
        pid = frame["patient_id"] if "patient_id" in present else pl.Series("patient_id", [None] * frame.height)
        for col in present:
            have = frame.schema[col]
            bad = frame[col].is_not_null() & parsed[col].is_null()
            if bad.any():
                self.fail("types", f"{table}.{col} values are not {_type_name(contract[col])}",
                          pl.DataFrame({"patient_id": pid.filter(bad)}))
            if isinstance(have, pl.Datetime) and have.time_zone is None:
                self.note("types", f"{table}.{col} has no time zone (the contract's times are UTC)")
            if (table, col) not in NULLABLE and frame[col].null_count():
                self.fail("values", f"{table}.{col} is empty",
                          pl.DataFrame({"patient_id": pid.filter(frame[col].is_null())}))
        return parsed


def _contract_type(dtype: pl.DataType) -> pl.DataType:
    return pl.String if isinstance(dtype, pl.Enum) else dtype  # categories are plain text to consumers


def _as_contract_type(values: pl.Series, want: pl.DataType) -> pl.Series:
    """``values`` converted to the contract's type; a value that does not convert becomes null (counted by conform)."""
    have, target = values.dtype, _contract_type(want)
    if have == target:
        return values
    if target == UTC_TIME:
        if isinstance(have, pl.Datetime):
            zoned = values.dt.replace_time_zone("UTC") if have.time_zone is None else values.dt.convert_time_zone("UTC")
            return zoned.dt.cast_time_unit("us")
        text = values.cast(pl.String)
        # the project writes +00:00 throughout: that literal parses fastest; any other offset, or Z, takes the long way
        times = text.str.strptime(pl.Datetime("us"), UTC_TEXT, strict=False).dt.replace_time_zone("UTC")
        if (times.is_null() & text.is_not_null()).any():
            general = text.str.replace(r"Z$", "+00:00").str.to_datetime(TIME_TEXT, time_unit="us", time_zone="UTC",
                                                                       strict=False)
            times = times.fill_null(general)
        return times
    if target == pl.Date and have == pl.String:
        return values.str.to_date("%Y-%m-%d", strict=False)
    if target == pl.Boolean and have == pl.String:
        return values.replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
    return values.cast(target, strict=False)


def _type_name(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Enum) or dtype == pl.String:
        return "text"
    if dtype == UTC_TIME:
        return "UTC timestamps (RFC 3339 with an offset in text formats)"
    return {pl.Date: "dates (YYYY-MM-DD)", pl.Boolean: "booleans (true/false)"}.get(dtype, str(dtype).lower())


# --- the rules --------------------------------------------------------------------------------------------------

def _outside(col: str, allowed) -> pl.Expr:
    return ~pl.col(col).is_in(list(allowed))


class _Patients:
    """Where each patient_id sits in the patients table, so rows of the other tables find their patient by
    position (patient_id 1..N in order, as the contract has it) and only fall back to joins otherwise."""

    def __init__(self, patients: pl.DataFrame):
        self.frame, self.n = patients, patients.height
        ids = patients["patient_id"]
        self.dense = bool(ids.null_count() == 0 and (ids == pl.int_range(1, self.n + 1, eager=True)).all())

    def known(self, pid: pl.Series) -> pl.Series:
        if self.dense:
            return pid.is_between(1, self.n).fill_null(False)
        return pid.is_in(self.frame["patient_id"].implode()).fill_null(False)

    def attach(self, frame: pl.DataFrame, **cols: str) -> pl.DataFrame:
        """``frame`` plus patient columns (alias=column), null for rows of unknown patients."""
        if self.dense:
            pid = frame["patient_id"]
            known = self.known(pid)
            at = (pid - 1).clip(0, max(self.n - 1, 0)).fill_null(0)
            return frame.with_columns(pl.when(known).then(self.frame[c].gather(at)).alias(a) for a, c in cols.items())
        right = self.frame.select("patient_id", *(pl.col(c).alias(a) for a, c in cols.items()))
        return frame.join(right, on="patient_id", how="left", maintain_order="left")

    def having(self, pid: pl.Series) -> pl.Series:
        """Per patient (table order): does ``pid`` mention them?"""
        if self.dense:
            seen = np.zeros(self.n, dtype=bool)
            seen[pid.filter(self.known(pid)).to_numpy() - 1] = True
            return pl.Series(seen)
        return self.frame["patient_id"].is_in(pid.unique().implode())


class _RunRules:
    """The contract's value rules per table and rules 1-7 across patients and events."""

    def __init__(self, check: _Checker, manifest: dict, tables: dict[str, pl.DataFrame]):
        self.check, self.t = check, tables
        self.p = _Patients(tables["patients"])
        self.scenario = manifest.get("scenario") if isinstance(manifest.get("scenario"), dict) else {}

    def run(self) -> None:
        self.patients()
        events = self.events()
        self.outcomes(events)
        self.conditions()
        self.vitals()

    def _window(self) -> tuple[datetime, datetime, datetime] | None:
        """Scenario start, end, and end plus follow-up."""
        sc = self.scenario
        try:
            start = datetime.fromisoformat(str(sc["start"]).replace("Z", "+00:00")).astimezone(timezone.utc)
            end = start + timedelta(days=int(sc["days"]))
            return start, end, end + timedelta(hours=int(sc["follow_up_h"]))
        except (KeyError, TypeError, ValueError):
            return None

    def unknown(self, table: str) -> None:
        frame = self.t[table]
        self.check.fail(table, "rows for patients not in the patients table",
                        frame.filter(~self.p.known(frame["patient_id"])))

    def patients(self) -> None:
        fail, p, n = self.check.fail, self.t["patients"], self.p.n
        ids = p["patient_id"]
        if not self.p.dense:
            fail("patients", "patient_id is not 1..N in order", p.filter(ids.is_duplicated() | ~ids.is_between(1, n)
                                                                         | (ids != pl.int_range(1, n + 1, eager=True))))
        fail("patients", "service_number is not unique", p.filter(pl.col("service_number").is_duplicated()))
        for col, allowed in (("sex", SEXES), ("rank", RANKS), ("blood_group", BLOOD_GROUPS), ("category", CATEGORIES),
                             ("body_region", REGIONS), ("severity", SEVERITIES), ("triage", TRIAGES),
                             ("warfare_type", WARFARE_TYPES), ("outcome", OUTCOMES), ("last_facility", FACILITIES)):
            fail("patients", f"{col} outside {'/'.join(allowed)}", p.filter(_outside(col, allowed)))
        for category, mechanisms in MECHANISMS_BY_CATEGORY.items():
            fail("patients", f"mechanism not one of {'/'.join(mechanisms)} for category {category}",
                 p.filter((pl.col("category") == category) & _outside("mechanism", mechanisms)))
        fail("patients", "nationality is not an ISO 3166-1 alpha-3 code",
             p.filter(~pl.col("nationality").str.contains(ISO_ALPHA3)))
        fronts = [f for f in self.scenario.get("fronts") or [] if isinstance(f, dict)]
        if fronts:
            names = [f.get("name") for f in fronts]
            nations = {code for f in fronts for code in f.get("nationality_mix") or {}}
            fail("patients", "front is not a front of the scenario", p.filter(_outside("front", names)))
            fail("patients", "nationality is not in the scenario's nationality mixes",
                 p.filter(_outside("nationality", nations)))
        fail("patients", "age is not 18..65 whole years at injury_time",
             p.filter(~pl.col("age").is_between(18, 65)
                      | (pl.col("age") != _years(pl.col("birth_date"), pl.col("injury_time").dt.date()))))
        fail("patients", "condition_code is not a SNOMED CT identifier",
             p.filter(~pl.col("condition_code").str.contains(SNOMED_ID)))
        fail("patients", "a name, service number, condition_display or event_id is blank",
             p.filter(pl.any_horizontal(pl.col(c).str.strip_chars() == "" for c in (
                 "given_name", "family_name", "service_number", "condition_display", "event_id"))))
        mixed = p.group_by("event_id").agg(pl.col("mass_casualty").n_unique()).filter(pl.col("mass_casualty") > 1)
        fail("patients", "mass_casualty differs between patients of one event_id",
             p.filter(pl.col("event_id").is_in(mixed["event_id"].implode())))
        window = self._window()
        if window:
            start, end, _ = window
            fail("patients", f"injury_time outside the scenario window {start:%Y-%m-%dT%H:%MZ}..{end:%Y-%m-%dT%H:%MZ}",
                 p.filter(~pl.col("injury_time").is_between(start, end, closed="left")))
        expected = pl.when(pl.col("category") == "BI").then(pl.lit(DEATH_TYPES[0])).otherwise(pl.lit(DEATH_TYPES[1]))
        fail("patients", "death_type is not battle (BI) / non_battle for exactly the KIA and DOW patients",
             p.filter(pl.when(pl.col("outcome").is_in(["KIA", "DOW"])).then(pl.col("death_type").ne_missing(expected))
                      .otherwise(pl.col("death_type").is_not_null())))

    def events(self) -> pl.DataFrame:
        """Events sorted, each row with the previous row of its patient; checks rules 1, 2, 3 (one terminal) and 7."""
        fail, e, p = self.check.fail, self.t["events"], self.t["patients"]
        pid, seq = pl.col("patient_id"), pl.col("seq")
        disorder = e.filter((pid < pid.shift(1)) | ((pid == pid.shift(1)) & (seq <= seq.shift(1))))
        fail("events", "rows not ordered by patient_id, then seq", disorder)
        fail("events", "facility outside POI/R1/R2/R3/R4", e.filter(_outside("facility", FACILITIES)))
        fail("events", f"event outside {'/'.join(EVENTS)}", e.filter(_outside("event", EVENTS)))
        self.unknown("events")
        fail("events", "patients without events", p.filter(~self.p.having(e["patient_id"])), "patients")
        if disorder.height:
            e = e.sort("patient_id", "seq")
        same, row = (pid == pid.shift(1)).fill_null(False), pl.int_range(pl.len())
        e = e.with_columns(
            prev_event=pl.when(same).then(pl.col("event").shift(1)),
            prev_facility=pl.when(same).then(pl.col("facility").shift(1)),
            prev_time=pl.when(same).then(pl.col("time").shift(1)),
            repeated=same & pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).shift(1))
                                              for c in self.t["events"].columns),
            position=row - pl.when(~same).then(row).forward_fill(),
            last=~(pid == pid.shift(-1)).fill_null(False))
        fail("events", "seq is not 0, 1, 2, ... per patient", e.filter(seq != pl.col("position")))
        fail("events", "time decreases along seq", e.filter(pl.col("time") < pl.col("prev_time")))
        first = self.p.attach(e.filter(pl.col("position") == 0), injury_time="injury_time")
        fail("rule 1", "seq 0 is not 'injury' at POI at injury_time",
             first.filter((pl.col("event") != "injury") | (pl.col("facility") != "POI")
                          | (pl.col("time") != pl.col("injury_time"))))
        fail("rule 1", "an 'injury' event after seq 0",
             e.filter((pl.col("event") == "injury") & (pl.col("position") > 0)))
        arrival, departed = pl.col("event") == "arrival", (pl.col("prev_event") == "departure").fill_null(False)
        fail("rule 2", "an arrival does not follow a departure", e.filter(arrival & ~departed))
        fail("rule 2", "an arrival at the facility just departed",
             e.filter(arrival & (pl.col("facility") == pl.col("prev_facility"))))
        fail("rule 2", "facility changes without a departure and an arrival",
             e.filter((pl.col("facility") != pl.col("prev_facility")) & ~arrival))
        fail("rule 2", "after a departure comes neither an arrival nor a death in transit",
             e.filter(departed & ~pl.col("event").is_in(["arrival", "death"])))
        terminal = pl.col("event").is_in(list(TERMINAL_EVENTS))
        fail("rule 3", "more than one terminal event (death, rtd, evacuated)",
             e.filter(terminal).group_by("patient_id").len().filter(pl.col("len") > 1), "patients")
        fail("rule 3", "a terminal event is not the last event (an event after death, rtd or evacuated)",
             e.filter(terminal & ~pl.col("last")))
        fail("rule 7", "duplicate event rows", e.filter("repeated"))
        window = self._window()
        if window:
            fail("rule 7", f"events after the scenario's end plus follow-up ({window[2]:%Y-%m-%dT%H:%MZ})",
                 e.filter(pl.col("time") > window[2]))
        return e

    def outcomes(self, e: pl.DataFrame) -> None:
        """Rules 3-6: the outcome, outcome_time and last_facility that each patient's events imply."""
        fail = self.check.fail
        reached = e.filter((pl.col("event") == "arrival") & (pl.col("facility") != "POI"))["patient_id"].unique()
        last = e.filter("last").select("patient_id", last_event="event", last_time="time", last_at="facility")
        j = self.p.attach(last.filter(self.p.known(last["patient_id"])), outcome="outcome", outcome_time="outcome_time",
                          last_facility="last_facility")
        ev, died = pl.col("last_event"), pl.col("last_event") == "death"
        mtf = pl.col("patient_id").is_in(reached.implode())
        j = j.with_columns(implied=pl.when(died & ~mtf).then(pl.lit("KIA")).when(died).then(pl.lit("DOW"))
                           .when(ev == "rtd").then(pl.lit("RTD")).when(ev == "evacuated").then(pl.lit("ROLE4"))
                           .otherwise(pl.lit("IN_CARE")))
        wrong = pl.col("outcome") != pl.col("implied")

        def mismatch(outcome: str) -> pl.Expr:
            return wrong & ((pl.col("outcome") == outcome) | (pl.col("implied") == outcome))
        fail("rule 3", "IN_CARE patients with a terminal event",
             j.filter(wrong & (pl.col("outcome") == "IN_CARE")), "patients")
        fail("rule 4", "KIA without a death before any arrival at R1 or above, or such a death not KIA",
             j.filter(mismatch("KIA")), "patients")
        fail("rule 4", "DOW without a death after an arrival at R1 or above, or such a death not DOW",
             j.filter(mismatch("DOW")), "patients")
        fail("rule 5", "RTD without an rtd event as the last one, or an rtd not RTD",
             j.filter(mismatch("RTD")), "patients")
        fail("rule 5", "an rtd at the point of injury (RTD is from R1 or above)",
             j.filter((ev == "rtd") & (pl.col("last_at") == "POI")), "patients")
        fail("rule 5", "ROLE4 without 'evacuated' as the last event, or an evacuation not ROLE4",
             j.filter(mismatch("ROLE4")), "patients")
        fail("rule 5", "'evacuated' not at R4", j.filter((ev == "evacuated") & (pl.col("last_at") != "R4")), "patients")
        fail("rule 6", "outcome_time differs from the time of the last event",
             j.filter(pl.col("outcome_time") != pl.col("last_time")), "patients")
        fail("rule 6", "last_facility differs from the facility of the last event",
             j.filter(pl.col("last_facility") != pl.col("last_at")), "patients")

    def conditions(self) -> None:
        fail, c, p = self.check.fail, self.t["conditions"], self.t["patients"]
        self.unknown("conditions")
        primary = c.filter(pl.col("rank") == 1)
        twice = primary.filter(pl.col("patient_id").is_duplicated())["patient_id"]
        fail("conditions", "patients without exactly one primary condition (rank 1)",
             p.filter(~self.p.having(primary["patient_id"]) | pl.col("patient_id").is_in(twice.implode())), "patients")
        pid, row = pl.col("patient_id"), pl.int_range(pl.len())
        ranked = c.sort("patient_id", "rank").with_columns(
            expected=row - pl.when(pid != pid.shift(1).fill_null(-1)).then(row).forward_fill() + 1)
        fail("conditions", "rank is not 1, 2, 3, ... per patient", ranked.filter(pl.col("rank") != pl.col("expected")))
        fail("conditions", "the primary condition differs from the patient row's condition_code, condition_display "
                           "or body_region",
             self.p.attach(primary, p_code="condition_code", p_display="condition_display", p_region="body_region")
             .filter((pl.col("code") != pl.col("p_code")) | (pl.col("display") != pl.col("p_display"))
                     | (pl.col("body_region") != pl.col("p_region"))))
        fail("conditions", "code is not a SNOMED CT identifier", c.filter(~pl.col("code").str.contains(SNOMED_ID)))
        fail("conditions", "display is blank", c.filter(pl.col("display").str.strip_chars() == ""))
        fail("conditions", "body_region outside the contract's regions", c.filter(_outside("body_region", REGIONS)))
        fail("conditions", "severity outside mild/moderate/severe/critical", c.filter(_outside("severity", SEVERITIES)))

    def vitals(self) -> None:
        fail, v, p = self.check.fail, self.t["vitals"], self.t["patients"]
        self.unknown("vitals")
        fail("vitals", "code is not one of the contract's LOINC codes", v.filter(_outside("code", VITAL_SIGNS)))
        fail("vitals", "facility outside POI/R1/R2/R3/R4", v.filter(_outside("facility", FACILITIES)))
        code = pl.col("code")
        fail("vitals", "name is not the code's LOINC short name",
             v.filter(pl.any_horizontal((code == c) & (pl.col("name") != spec[0]) for c, spec in VITAL_SIGNS.items())))
        fail("vitals", "unit is not the code's UCUM unit",
             v.filter(pl.any_horizontal((code == c) & (pl.col("unit") != spec[1]) for c, spec in VITAL_SIGNS.items())))
        fail("vitals", "value outside the physiologically possible range of its code",
             v.filter(pl.any_horizontal((code == c) & ~pl.col("value").is_between(lo, hi)
                                        for c, (lo, hi) in VITAL_LIMITS.items())))
        fail("vitals", "time outside the patient's injury_time..outcome_time",
             self.p.attach(v, start="injury_time", end="outcome_time")
             .filter(~pl.col("time").is_between("start", "end")))
        fail("vitals", "patients other than KIA without vital signs",
             p.filter((pl.col("outcome") != "KIA") & ~self.p.having(v["patient_id"])), "patients")


def _years(born: pl.Expr, day: pl.Expr) -> pl.Expr:
    """Whole years from ``born`` to ``day`` (both dates)."""
    def month_day(d: pl.Expr) -> pl.Expr:
        return d.dt.month().cast(pl.Int32) * 100 + d.dt.day().cast(pl.Int32)
    before_birthday = month_day(day) < month_day(born)
    return day.dt.year().cast(pl.Int64) - born.dt.year().cast(pl.Int64) - before_birthday.cast(pl.Int64)
