"""Explore and Replay: read a finished run's tables lazily and aggregate them (no Streamlit here). The run
folders themselves (manifest, listing, whether a run can be explored) are ``core.runs``'s.

    run = open_run(folder)                   # raises RunNotExplorable with a one-line reason
    key_figures(run.patients())              # every aggregate takes LazyFrames and returns a small result
    flow_links(run.patients(), run.events()) # the Sankey POI -> R1 -> ... -> outcome

Parquet is scanned lazily (``scan_parquet``: projection and predicate pushdown, so a 1,000,000-patient run
is never loaded whole); a CSV, NDJSON or JSON run (gzipped or not) is converted once, table by table, into Parquet
under ``<data dir>/explore_cache`` (``convert_run`` reports progress) and read from there the same way.
Encrypted runs cannot be explored: the dashboard never asks for or keeps an encryption password.

Every aggregate is vectorised (polars expressions over whole columns); nothing loops over patients.
"""
from __future__ import annotations

import gzip
import io
import hashlib
import json
import math
import os
import re
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from core import runs, settings
from core.handover import handover_texts
from core.schema import CATEGORIES, FACILITIES, OUTCOMES, TABLES, TRIAGES, UTC_TIME

TABLE_NAMES = tuple(TABLES)
MTF = ("R1", "R2", "R3", "R4")  # medical treatment facilities (everything past the point of injury)
SURGERY = "387713003"           # SNOMED CT "surgical procedure": the damage-control surgery of the 10-1-2 rule
LEAVES = ("departure", "death", "rtd", "evacuated")
OUTCOME_LABELS = {"RTD": "Returned to duty", "KIA": "Killed in action", "DOW": "Died of wounds",
                  "ROLE4": "Evacuated out of theatre", "IN_CARE": "Still in care"}
TRANSIT = "in transit"
PLACES = FACILITIES[:1] + (TRANSIT,) + FACILITIES[1:]  # where a patient can be, in chain order
SANKEY_NODES = FACILITIES + tuple(OUTCOME_LABELS.values())
# the 10-1-2 lines (AJP-4.10): first aid within 10 min, a medical facility within 1 h, surgery within 2 h
TEN_ONE_TWO = (("first treatment", 10), ("medical facility", 60), ("surgery", 120))
PATIENT_FILTERS = ("front", "nationality", "category", "triage", "outcome", "last_facility")
TABLE_COLUMNS = ("patient_id", "given_name", "family_name", "nationality", "rank", "front", "category",
                 "mechanism", "body_region", "severity", "triage", "injury_time", "outcome", "last_facility")


class RunNotExplorable(Exception):
    """A run folder the dashboard cannot read; ``str()`` says why in one line."""


# --- finding runs ------------------------------------------------------------------------------------------

def missing_folder(folder: str) -> str | None:
    """A one-line message when an extra runs folder typed by the user may not be read (outside the data folder and
    the folders of MPG_EXPLORE_FOLDERS: core.settings.explore_folder) or does not exist; None when it can be read."""
    from core import settings
    if not folder.strip():
        return None
    try:
        settings.explore_folder(folder)
    except settings.FolderNotAllowed as exc:
        return str(exc)
    if not Path(folder).expanduser().is_dir():
        return f"folder {folder!r} does not exist (give a run folder or a folder of run folders)"
    return None


# --- reading a run -----------------------------------------------------------------------------------------

def _contract_dtype(dtype: pl.DataType) -> pl.DataType:
    return pl.String if isinstance(dtype, pl.Enum) else dtype


TEXT_TIME = "%Y-%m-%dT%H:%M:%S%.f%:z"  # how the text sinks write times (RFC 3339, +00:00): 5 times faster than guessing


def _conform(lf: pl.LazyFrame, table: str, time_format: str | None = None) -> pl.LazyFrame:
    """Give the contract's columns the contract's types (text formats carry times and booleans as text); times in
    text are read with ``time_format`` when given (an error if one does not match), else their format is guessed."""
    schema = lf.collect_schema()
    casts = []
    for name, dtype in TABLES[table].items():
        if name not in schema:
            continue
        want, have = _contract_dtype(dtype), schema[name]
        if have == want:
            continue
        col = pl.col(name)
        if have == pl.String and want == UTC_TIME:
            casts.append(col.str.to_datetime(time_format, time_unit="us", time_zone="UTC").alias(name))
        elif have == pl.String and want == pl.Date:
            casts.append(col.str.to_date().alias(name))
        elif have == pl.String and want == pl.Boolean:
            casts.append(col.str.to_lowercase().is_in(["true", "1"]).alias(name))
        elif isinstance(have, pl.Datetime) and want == UTC_TIME:
            casts.append((col.dt.replace_time_zone("UTC") if have.time_zone is None
                          else col.dt.convert_time_zone("UTC")).dt.cast_time_unit("us").alias(name))
        else:
            casts.append(col.cast(want, strict=False).alias(name))
    return lf.with_columns(casts) if casts else lf


# --- a run in Parquet: text formats are converted once ---------------------------------------------------------
# Every query of a CSV, NDJSON or JSON run would parse all of its text again (a 200,000-patient CSV + gzip run took
# 5.5 s to open and 7.1 s for Flow, Parquet 0.3 / 0.6 s): each such table is converted once, streamed, into
# ``<data dir>/explore_cache/<run>/<table>.parquet`` with the contract's types, and read from there like a Parquet run.
_CONVERTING: dict[Path, threading.Lock] = {}
_CONVERTING_LOCK = threading.Lock()


def _cache_folder(run: "Run") -> Path:
    """The run's own folder in the explore cache, named by the run folder's place, the run id and the manifest's
    stamp: it changes when the run's manifest (written last) changes."""
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", run.run_id)[:80]
    place = hashlib.sha1(str(run.path.resolve()).encode()).hexdigest()[:8]
    return settings.data_dir() / "explore_cache" / f"{place}-{safe_id}-{runs.run_stamp(run.path)}"


def _prune(folder: Path) -> None:
    """Remove the cache of what the same run folder held before (an older manifest)."""
    for old in folder.parent.glob(folder.name.split("-", 1)[0] + "-*"):
        if old != folder and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _read_text_table(path: Path, table: str, time_format: str | None = None) -> pl.LazyFrame:
    """A text table (CSV, NDJSON or nested JSON; not gzipped) as a LazyFrame of the contract's types."""
    name = path.name
    if name.endswith(".csv"):
        lf = pl.scan_csv(path, infer_schema=False)
    elif name.endswith(".ndjson"):
        lf = pl.scan_ndjson(path, infer_schema_length=10_000)
    elif name.endswith(".json"):
        df = pl.read_json(path, infer_schema_length=10_000)
        lf = df.select([c for c in df.columns if c in TABLES[table]]).lazy()
    else:
        raise RunNotExplorable(f"cannot read {name} (parquet, csv, ndjson or json)")
    return _conform(lf, table, time_format)


def _convert(source: Path, table: str, target: Path) -> None:
    """Write ``source`` (a text table, maybe gzipped) as ``target`` in Parquet: streamed, so memory stays flat."""
    target.parent.mkdir(parents=True, exist_ok=True)
    unpacked = None
    try:
        text = source
        if source.name.endswith(".gz"):  # unpacked beside the target (a hidden name ending like the source's)
            text = unpacked = target.with_name(f".unpacking-{os.getpid()}-{threading.get_ident()}-"
                                               f"{source.name.removesuffix('.gz')}")
            with gzip.open(source, "rb") as src, unpacked.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        with runs.atomic_path(target) as tmp:
            try:  # the sinks' own time format and the contract's categories first (fast to read back) ...
                _categories(_read_text_table(text, table, TEXT_TIME), table).sink_parquet(tmp)
            except pl.exceptions.PolarsError:  # ... else (a file written by other means) times guessed, text kept
                _read_text_table(text, table).sink_parquet(tmp)
    finally:
        if unpacked is not None:
            unpacked.unlink(missing_ok=True)


def _categories(lf: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """The contract's categorical columns as its Enums, as a Parquet run stores them (its queries are faster);
    a value outside the contract fails the cast, and the caller keeps the text."""
    enums = {c: t for c, t in TABLES[table].items() if isinstance(t, pl.Enum) and c in lf.collect_schema()}
    return lf.with_columns(pl.col(c).cast(t) for c, t in enums.items())


def _ready_file(run: "Run", table: str) -> Path:
    """The table as a Parquet file: the run's own, or its converted copy (converted now if it is not yet)."""
    path = run.file(table)
    if path.name.endswith(".parquet"):
        return path
    target = _cache_folder(run) / f"{table}.parquet"
    if target.is_file():
        return target
    with _CONVERTING_LOCK:
        lock = _CONVERTING.setdefault(target, threading.Lock())
    with lock:  # two sessions opening the same run convert it once
        if not target.is_file():
            try:
                _convert(path, table, target)
            except (OSError, EOFError, pl.exceptions.PolarsError) as exc:
                raise RunNotExplorable(f"run {run.run_id}: cannot read {path.name}: {exc}") from None
            _prune(target.parent)
    return target


def tables_to_convert(run: "Run") -> list[str]:
    """The run's tables that are still text, not yet converted to Parquet (empty for a Parquet run)."""
    return [t for t in TABLE_NAMES if not run.file(t).name.endswith(".parquet")
            and not (_cache_folder(run) / f"{t}.parquet").is_file()]


def needs_converting(folder: str | Path) -> bool:
    """True when opening the run will first convert some of its tables (a quick check: no table is read)."""
    try:
        return bool(tables_to_convert(open_run(folder)))
    except RunNotExplorable:
        return False


def convert_run(folder: str | Path, on_progress: Callable[[float, str], None] | None = None) -> "Run":
    """Open the run and convert each of its text tables to Parquet once, reporting ``on_progress(fraction done,
    what is being done)`` between tables (weighted by file size); returns the opened run. Quick for a run that
    is Parquet already or was converted before."""
    run = open_run(folder)
    todo = tables_to_convert(run)
    sizes = {t: max(run.file(t).stat().st_size, 1) for t in todo}
    total, done = sum(sizes.values()), 0
    for table in todo:
        if on_progress:
            on_progress(done / total, f"Preparing the {TABLE_WORDS.get(table, table)} table for exploring "
                                      f"(once for this run)")
        _ready_file(run, table)
        done += sizes[table]
    if on_progress and todo:
        on_progress(1.0, "Ready")
    return run


TABLE_WORDS = {"patients": "patients", "events": "events", "conditions": "conditions", "vitals": "vital signs"}


@dataclass(frozen=True)
class Run:
    """An explorable run folder: its manifest and lazy access to its four tables."""

    path: Path
    manifest: dict

    @property
    def run_id(self) -> str:
        return self.manifest.get("run_id") or self.path.name

    @property
    def scenario(self) -> dict:
        return self.manifest.get("scenario") or {}

    def file(self, table: str) -> Path:
        names = {f.get("table"): f.get("name") for f in self.manifest.get("files") or []}
        if not names.get(table):
            raise RunNotExplorable(f"run {self.run_id}: the manifest lists no {table} file")
        path = self.path / names[table]
        if not path.is_file():
            raise RunNotExplorable(f"run {self.run_id}: {names[table]} is missing from {self.path}")
        return path

    def table(self, table: str) -> pl.LazyFrame:
        """One contract table as a LazyFrame with the contract's column types (categories as strings), scanned
        from Parquet: a text table is converted once (``convert_run`` does it with progress)."""
        path = _ready_file(self, table)
        try:
            lf = pl.scan_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise RunNotExplorable(f"run {self.run_id}: cannot read {path.name}: {exc}") from None
        return _conform(lf, table)

    def patients(self) -> pl.LazyFrame:
        return self.table("patients")

    def events(self) -> pl.LazyFrame:
        return self.table("events")

    def conditions(self) -> pl.LazyFrame:
        return self.table("conditions")

    def vitals(self) -> pl.LazyFrame:
        return self.table("vitals")

    def calibration(self) -> dict | None:
        """The run's calibration report (calibration.json), or None when it has none."""
        try:
            data = json.loads((self.path / "calibration.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def window(self) -> tuple[datetime, datetime]:
        """Scenario start and horizon (end plus follow-up): every event lies inside."""
        sc = self.scenario
        start = datetime.fromisoformat(str(sc.get("start", "1970-01-01T00:00:00Z")).replace("Z", "+00:00"))
        return start, start + timedelta(days=int(sc.get("days", 1)), hours=int(sc.get("follow_up_h", 0)))


def open_run(folder: str | Path) -> Run:
    folder = Path(folder)
    manifest = runs.read_manifest(folder)
    if manifest is None:
        raise RunNotExplorable(f"{folder} holds no readable {runs.MANIFEST} (not a run folder)")
    reason = runs.why_not_explorable(manifest) or runs.check_file_names(folder, manifest)
    if reason:
        raise RunNotExplorable(f"run {manifest.get('run_id') or folder.name}: {reason}")
    return Run(folder, manifest)


# --- aggregates over patients ------------------------------------------------------------------------------

def _key_figures_query(patients: pl.LazyFrame) -> pl.LazyFrame:
    return patients.select(
        patients=pl.len(),
        bi=(pl.col("category") == "BI").sum(),
        kia=(pl.col("outcome") == "KIA").sum(),
        dow=(pl.col("outcome") == "DOW").sum(),
        rtd=(pl.col("outcome") == "RTD").sum(),
        role4=(pl.col("outcome") == "ROLE4").sum(),
        in_care=(pl.col("outcome") == "IN_CARE").sum(),
        t1=(pl.col("triage") == "T1").sum(),
        mascal=pl.col("mass_casualty").sum(),
        bi_dead=((pl.col("category") == "BI") & pl.col("outcome").is_in(["KIA", "DOW"])).sum(),
        first=pl.col("injury_time").min(),
        last=pl.col("injury_time").max(),
        fronts=pl.col("front").n_unique(),
        nations=pl.col("nationality").n_unique(),
    )


def _key_figures_row(frame: pl.DataFrame) -> dict:
    row = frame.row(0, named=True)
    n = row["patients"]
    row["deaths"] = row["kia"] + row["dow"]
    row["bi_cfr"] = row["bi_dead"] / row["bi"] if row["bi"] else None
    row["rtd_share"] = row["rtd"] / n if n else None
    row["mascal_share"] = row["mascal"] / n if n else None
    return row


def key_figures(patients: pl.LazyFrame) -> dict:
    """Counts a stakeholder asks for first: patients, deaths, returns to duty, case fatality, MASCAL share."""
    return _key_figures_row(_key_figures_query(patients).collect())


def _counts_query(patients: pl.LazyFrame, column: str, by: str | None = None) -> pl.LazyFrame:
    keys = [column] if by is None else [column, by]
    return (patients.group_by([pl.col(k).cast(pl.String) for k in keys]).agg(patients=pl.len())
            .sort(["patients", *keys], descending=[True] + [False] * len(keys)))


def counts(patients: pl.LazyFrame, column: str, by: str | None = None) -> pl.DataFrame:
    """Patients per value of ``column`` (and of ``by``), largest first; column ``patients``."""
    return _counts_query(patients, column, by).collect()


def time_bin(days: int) -> str:
    """A polars duration giving a readable number of bars for a scenario of ``days`` days."""
    return "1h" if days <= 3 else "6h" if days <= 14 else "1d"


def _over_time_query(patients: pl.LazyFrame, by: str, every: str = "1d") -> pl.LazyFrame:
    return (patients.select(time=pl.col("injury_time").dt.truncate(every), key=pl.col(by).cast(pl.String))
            .group_by("time", "key").agg(patients=pl.len()).sort("time", "key")
            .rename({"key": by}))


def over_time(patients: pl.LazyFrame, by: str, every: str = "1d") -> pl.DataFrame:
    """Casualties per time bin of injury and value of ``by``: columns time, <by>, patients."""
    return _over_time_query(patients, by, every).collect()


def _hour_of_day_query(patients: pl.LazyFrame) -> pl.LazyFrame:
    return (patients.group_by(hour=pl.col("injury_time").dt.hour(), category=pl.col("category").cast(pl.String))
            .agg(patients=pl.len()).sort("hour", "category"))


def hour_of_day(patients: pl.LazyFrame) -> pl.DataFrame:
    """Casualties per hour of day (UTC) and category: columns hour, category, patients."""
    return _hour_of_day_query(patients).collect()


def outcomes_by_facility(patients: pl.LazyFrame) -> pl.DataFrame:
    """Patients per last facility and outcome, facilities in chain order."""
    order = pl.DataFrame({"last_facility": list(FACILITIES), "_o": list(range(len(FACILITIES)))})
    return (patients.group_by(pl.col("last_facility").cast(pl.String), pl.col("outcome").cast(pl.String))
            .agg(patients=pl.len()).collect()
            .join(order, on="last_facility", how="left").sort("_o", "outcome").drop("_o"))


def preview_summary(patients: pl.DataFrame) -> dict[str, pl.DataFrame | dict]:
    """What the Scenario page draws for a small in-memory sample (the seven queries run together)."""
    lf = patients.lazy()
    queries = {"figures": _key_figures_query(lf),
               "per_day": _over_time_query(lf, "category", "1d"),
               "per_hour": _hour_of_day_query(lf),
               "category": _counts_query(lf, "category"),
               "mechanism": _counts_query(lf, "mechanism", "category"),
               "triage": _counts_query(lf, "triage", "category"),
               "outcome": _counts_query(lf, "outcome", "category")}
    out = dict(zip(queries, pl.collect_all(list(queries.values()))))
    out["figures"] = _key_figures_row(out["figures"])
    return out


# --- flow: Sankey, care timings, occupancy -----------------------------------------------------------------

def _visits(events: pl.LazyFrame) -> pl.LazyFrame:
    """Where each patient was, in order: the injury at POI, then each arrival."""
    return (events.filter(pl.col("event").cast(pl.String).is_in(["injury", "arrival"]))
            .select("patient_id", "seq", facility=pl.col("facility").cast(pl.String)))


def flow_links(patients: pl.LazyFrame, events: pl.LazyFrame) -> pl.DataFrame:
    """Sankey links POI -> R1 -> R2 -> R3 -> R4 -> outcome: columns source, target, patients.

    A facility that was bypassed (POI straight to R2 by air) gives a direct link; the last facility of each
    patient links to the outcome."""
    # the contract orders events by patient_id, then seq: the next visit is the next row of the same patient
    same = pl.col("patient_id").shift(-1) == pl.col("patient_id")
    moves = (_visits(events)
             .with_columns(target=pl.when(same).then(pl.col("facility").shift(-1)))
             .filter(pl.col("target").is_not_null())
             .group_by(source=pl.col("facility"), target=pl.col("target")).agg(patients=pl.len()))
    labels = pl.DataFrame({"outcome": list(OUTCOME_LABELS), "target": list(OUTCOME_LABELS.values())})
    ends = (patients.group_by(source=pl.col("last_facility").cast(pl.String), outcome=pl.col("outcome").cast(pl.String))
            .agg(patients=pl.len()).join(labels.lazy(), on="outcome").select("source", "target", "patients"))
    links = pl.concat([moves.collect(), ends.collect()], how="vertical_relaxed")
    index = {n: i for i, n in enumerate(SANKEY_NODES)}
    return (links.with_columns(pl.col("patients").cast(pl.Int64),
                               _s=pl.col("source").replace_strict(index, default=99),
                               _t=pl.col("target").replace_strict(index, default=99))
            .sort("_s", "_t").drop("_s", "_t"))


def care_times(patients: pl.LazyFrame, events: pl.LazyFrame, *, t1_battle_only: bool = True) -> pl.LazyFrame:
    """Per patient, minutes from injury to first treatment, to a medical facility (R1+) and to surgery
    (null when it never happened). MASCAL patients are left out, as the 10-1-2 targets do."""
    who = patients.filter(~pl.col("mass_casualty"))
    if t1_battle_only:
        who = who.filter((pl.col("triage") == "T1") & (pl.col("category") == "BI"))
    who = who.select("patient_id", "injury_time")
    ev = events.select("patient_id", "time", event=pl.col("event").cast(pl.String),
                       facility=pl.col("facility").cast(pl.String), detail="detail")
    firsts = ev.group_by("patient_id").agg(
        treated=pl.col("time").filter(pl.col("event") == "treatment_start").min(),
        mtf=pl.col("time").filter((pl.col("event") == "arrival") & pl.col("facility").is_in(MTF)).min(),
        surgery=pl.col("time").filter((pl.col("event") == "treatment_start") & (pl.col("detail") == SURGERY)).min())
    minutes = lambda c: ((pl.col(c) - pl.col("injury_time")).dt.total_seconds() / 60).alias(c)  # noqa: E731
    return (who.join(firsts, on="patient_id", how="left")
            .select("patient_id", minutes("treated"), minutes("mtf"), minutes("surgery")))


def ten_one_two(patients: pl.LazyFrame, events: pl.LazyFrame, *, t1_battle_only: bool = True,
                cap_min: int = 360, step_min: int = 5) -> dict[str, pl.DataFrame]:
    """The 10-1-2 lines: a summary (measure, line_min, patients, reached, within, within_share, median_min,
    p90_min) and a histogram (measure, minutes, patients) of minutes to each step, capped at ``cap_min``."""
    times = care_times(patients, events, t1_battle_only=t1_battle_only).collect()
    rows, hist = [], []
    for (label, line), col in zip(TEN_ONE_TWO, ("treated", "mtf", "surgery")):
        s = times[col].drop_nulls()
        within = int((s <= line).sum())
        rows.append({"measure": label, "line_min": line, "patients": times.height, "reached": s.len(),
                     "within": within, "within_share": within / s.len() if s.len() else None,
                     "median_min": s.median(), "p90_min": s.quantile(0.9)})
        hist.append(pl.DataFrame({"minutes": s}).select(
            measure=pl.lit(label), minutes=(pl.col("minutes").clip(0, cap_min) // step_min * step_min))
            .group_by("measure", "minutes").agg(patients=pl.len()))
    histogram = pl.concat(hist).sort("measure", "minutes") if hist else pl.DataFrame()
    return {"summary": pl.DataFrame(rows), "histogram": histogram}


def _presence(events: pl.LazyFrame) -> pl.LazyFrame:
    """+1 when a patient comes to a place, -1 when they leave it: a running sum per place is its occupancy.

    Places are the facilities and ``TRANSIT`` (between a departure and the next arrival). The injury puts a
    patient at POI; a departure moves them from the facility into transit, an arrival from transit into the
    facility; a death in transit (detail ``in_transit:..``) ends the transit, any other death, return to duty or
    evacuation out of theatre ends the stay at the facility."""
    ev = pl.col("event").cast(pl.String)
    in_transit = pl.col("detail").str.starts_with("in_transit").fill_null(False)
    base = events.select("patient_id", "time", "event", "detail", facility=pl.col("facility").cast(pl.String))
    at_facility = (base.filter(ev.is_in(["injury", "arrival", *LEAVES]) & ~((ev == "death") & in_transit))
                   .select("patient_id", "time", "facility",
                           delta=pl.when(ev.is_in(["injury", "arrival"])).then(1).otherwise(-1).cast(pl.Int32)))
    transit = (base.filter(ev.is_in(["departure", "arrival"]) | ((ev == "death") & in_transit))
               .select("patient_id", "time", facility=pl.lit(TRANSIT),
                       delta=pl.when(ev == "departure").then(1).otherwise(-1).cast(pl.Int32)))
    return pl.concat([at_facility, transit])


def _bins(start: datetime, end: datetime, every: str) -> pl.DataFrame:
    return pl.DataFrame({"time": pl.datetime_range(start, end, every, time_unit="us", time_zone="UTC", eager=True)})


def occupancy(events: pl.LazyFrame, start: datetime, end: datetime, every: str = "1h") -> pl.DataFrame:
    """Patients present at each place (PLACES: facilities and in transit) at the end of each time bin:
    columns time, facility, patients."""
    deltas = (_presence(events).group_by(time=pl.col("time").dt.truncate(every), facility="facility")
              .agg(delta=pl.col("delta").sum()).collect())
    grid = _bins(start, end, every).join(pl.DataFrame({"facility": list(PLACES)}), how="cross")
    return (grid.join(deltas, on=["time", "facility"], how="left")
            .with_columns(pl.col("delta").fill_null(0))
            .sort("facility", "time")
            .with_columns(patients=pl.col("delta").cum_sum().over("facility"))
            .select("time", "facility", "patients"))


def replay_step(start: datetime, end: datetime, max_frames: int = 150) -> str:
    """The smallest of 1, 2, 3, 6, 12 or 24 hours that shows the whole window in at most ``max_frames`` frames."""
    hours = (end - start).total_seconds() / 3600
    for h in (1, 2, 3, 6, 12, 24):
        if hours / h <= max_frames:
            return f"{h}h"
    return f"{math.ceil(hours / max_frames / 24)}d"


def filter_patients(patients: pl.LazyFrame, filters: dict[str, Iterable[str]] | None) -> pl.LazyFrame:
    """Patients whose columns take one of the chosen values (an empty choice keeps everyone)."""
    for column, values in (filters or {}).items():
        values = [str(v) for v in values or ()]
        if values:
            patients = patients.filter(pl.col(column).cast(pl.String).is_in(values))
    return patients


def replay_frames(patients: pl.LazyFrame, events: pl.LazyFrame, start: datetime, end: datetime,
                  every: str = "1h", filters: dict[str, Iterable[str]] | None = None) -> pl.DataFrame:
    """One row per time bin: patients present at each of PLACES at its end, what happened during it
    (injured, arrived at a facility, died, returned to duty, evacuated out of theatre) and the running totals
    (total_injured, total_died, total_rtd, total_evacuated)."""
    who = filter_patients(patients, filters)
    if filters and any(filters.values()):
        events = events.join(who.select("patient_id"), on="patient_id", how="semi")
    ev = pl.col("event").cast(pl.String)
    bin_ = pl.col("time").dt.truncate(every)
    place = (_presence(events).group_by(time=bin_).agg(
        [pl.col("delta").filter(pl.col("facility") == f).sum().alias(f) for f in PLACES]))
    happened = (events.group_by(time=bin_).agg(
        injured=(ev == "injury").sum(), arrived=((ev == "arrival")).sum(), died=(ev == "death").sum(),
        rtd=(ev == "rtd").sum(), evacuated=(ev == "evacuated").sum()))
    both = place.join(happened, on="time", how="full", coalesce=True).collect()
    frames = (_bins(start, end, every).join(both, on="time", how="left").fill_null(0).sort("time"))
    return frames.with_columns(
        *[pl.col(f).cum_sum().cast(pl.Int64) for f in PLACES],
        total_injured=pl.col("injured").cum_sum(), total_died=pl.col("died").cum_sum(),
        total_rtd=pl.col("rtd").cum_sum(), total_evacuated=pl.col("evacuated").cum_sum())


# --- patients table and card -------------------------------------------------------------------------------

def filter_options(patients: pl.LazyFrame) -> dict[str, list[str]]:
    """The values each patient filter can take in this run (for the filter widgets)."""
    row = patients.select([pl.col(c).cast(pl.String).unique().sort().implode() for c in PATIENT_FILTERS]).collect()
    order = {"category": CATEGORIES, "triage": TRIAGES, "outcome": OUTCOMES, "last_facility": FACILITIES}
    out = {}
    for c in PATIENT_FILTERS:
        values = [v for v in row[c][0].to_list() if v is not None]
        if c in order:
            values = [v for v in order[c] if v in values] + [v for v in values if v not in order[c]]
        out[c] = values
    return out


def patient_page(patients: pl.LazyFrame, filters: dict[str, Iterable[str]] | None = None, *,
                 search: str = "", limit: int = 200, offset: int = 0) -> tuple[pl.DataFrame, int]:
    """A page of the patients table (TABLE_COLUMNS) matching the filters and a name / service number / id
    search, and how many patients match in total."""
    lf = filter_patients(patients, filters)
    text = search.strip()
    if text:
        if text.isdigit():
            lf = lf.filter(pl.col("patient_id") == int(text))
        else:
            needle = text.lower()
            lf = lf.filter(pl.concat_str("given_name", pl.lit(" "), "family_name", pl.lit(" "), "service_number")
                           .str.to_lowercase().str.contains(needle, literal=True))
    total = lf.select(pl.len()).collect().item()
    page = lf.select(TABLE_COLUMNS).sort("patient_id").slice(offset, limit).collect()
    return page, total


def patient_card(run: Run, patient_id: int) -> dict | None:
    """Everything about one patient: the patient row (dict), the MIST-AT hand-over text, and their conditions,
    events and vitals (frames in order); None when the run has no such patient."""
    pick = pl.col("patient_id") == int(patient_id)
    row = run.patients().filter(pick).collect()
    if row.is_empty():
        return None
    raw = {name: getattr(run, name)().filter(pick).collect() for name in ("events", "conditions", "vitals")}
    out = {"patient": row.row(0, named=True),
           # MIST-AT: the short verbal hand-over a medic gives the receiving team (core/handover.py)
           "handover": handover_texts(row, raw["events"], raw["conditions"], raw["vitals"])["handover"][0],
           "events": run.events().filter(pick).sort("seq").select(
               "seq", "time", minutes_after_injury=((pl.col("time") - row["injury_time"][0]).dt.total_seconds() / 60)
               .round(0).cast(pl.Int64), facility="facility", event="event", detail="detail").collect(),
           "conditions": run.conditions().filter(pick).sort("rank").drop("patient_id").collect()}
    vitals = run.vitals().filter(pick).drop("patient_id").collect()
    out["vitals"] = vitals.sort("time", "code")
    # one row per measurement set, one column per vital sign: how a receiving team reads them
    out["vitals_wide"] = (vitals.pivot(on="name", index=["time", "facility"], values="value",
                                       aggregate_function="first").sort("time")
                          if not vitals.is_empty() else vitals)
    return out


# --- a run's medical plan at work (capacity.json and the load table) ----------------------------------------
LOAD_TYPES = {"time": UTC_TIME, "front": pl.String, "facility": pl.String, "role": pl.String,
              "resource": pl.String, "capacity": pl.Int64, "occupancy_mean": pl.Float64,
              "occupancy_peak": pl.Int64, "queue_peak": pl.Int64}
# what a patient in each kind of queue waits for (the load table's resource names)
WAITING_FOR = {"treatment teams": "Role 1 team", "resuscitation beds": "resuscitation bed",
               "operating tables": "operating table", "ICU beds": "ICU bed", "holding beds": "holding bed",
               "waiting for an ambulance": "ambulance", "waiting for a helicopter": "helicopter",
               "strategic evacuation seats": "strategic flight"}
# the load table's pools of vehicles hold their queues at the facilities (rows "waiting for ...")
VEHICLE_POOLS = ("ground ambulances", "MEDEVAC helicopters")
WAIT_BINS = ((0, "no wait"), (15, "under 15 min"), (30, "15–30 min"), (60, "30–60 min"), (120, "1–2 h"),
             (240, "2–4 h"), (480, "4–8 h"), (1440, "8–24 h"), (None, "a day or more"))


def capacity_report(run: Run) -> dict | None:
    """The run's capacity report (capacity.json), or None when the run had no medical plan (unlimited care)."""
    try:
        data = json.loads((run.path / "capacity.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def has_plan(run: Run) -> bool:
    return any(f.get("table") == "load" for f in run.manifest.get("files") or [])


def load(run: Run) -> pl.DataFrame:
    """The run's load table (one row per facility resource or vehicle pool and hour: capacity, occupancy mean
    and peak, longest queue) with its types, whatever the format it was written in; raises RunNotExplorable
    when the run has none."""
    path = run.file("load")
    name = path.name.removesuffix(".gz")
    source = path
    try:
        if path.name.endswith(".gz"):  # a small table: read from the unpacked bytes
            with gzip.open(path, "rb") as f:
                source = io.BytesIO(f.read())
        if name.endswith(".parquet"):
            df = pl.read_parquet(source)
        elif name.endswith(".csv"):
            df = pl.read_csv(source, infer_schema=False)
        elif name.endswith(".ndjson"):
            df = pl.read_ndjson(source, infer_schema_length=None)
        elif name.endswith(".json"):
            df = pl.read_json(source, infer_schema_length=None)
        else:
            raise RunNotExplorable(f"run {run.run_id}: cannot read {name} (parquet, csv, ndjson or json)")
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise RunNotExplorable(f"run {run.run_id}: cannot read {name}: {exc}") from None
    casts = []
    for column, dtype in LOAD_TYPES.items():
        if column not in df.columns or df[column].dtype == dtype:
            continue
        col = pl.col(column)
        if dtype == UTC_TIME:
            casts.append((col.str.to_datetime(time_unit="us", time_zone="UTC") if df[column].dtype == pl.String
                          else col.cast(UTC_TIME)).alias(column))
        else:
            casts.append(col.cast(dtype, strict=False).alias(column))
    return df.with_columns(casts) if casts else df


def fullness(load_table: pl.DataFrame, every: str = "1d") -> pl.DataFrame:
    """How full each facility resource was in each time bin: columns facility, resource, role, time, peak,
    capacity (the bin's largest), full (peak / capacity). Queues and empty pools are left out."""
    return (load_table.filter(pl.col("capacity").is_not_null() & ~pl.col("resource").is_in(VEHICLE_POOLS))
            .group_by("facility", "resource", "role", time=pl.col("time").dt.truncate(every), maintain_order=True)
            .agg(peak=pl.col("occupancy_peak").max(), capacity=pl.col("capacity").max())
            .with_columns(full=pl.when(pl.col("capacity") > 0).then(pl.col("peak") / pl.col("capacity")))
            .sort("facility", "resource", "time", maintain_order=True))


def queues(load_table: pl.DataFrame, every: str = "1h", start: datetime | None = None,
           end: datetime | None = None) -> pl.DataFrame:
    """Patients waiting for each kind of resource (WAITING_FOR), summed over facilities, the most in each bin:
    one row per bin (from ``start`` to ``end`` when given) and one column per kind that ever had a queue."""
    kinds = (load_table.filter(pl.col("resource").is_in(list(WAITING_FOR)))
             .group_by("time", kind=pl.col("resource").replace_strict(WAITING_FOR))
             .agg(waiting=pl.col("queue_peak").sum())
             .group_by(pl.col("time").dt.truncate(every), "kind").agg(pl.col("waiting").max()))
    used = [k for k in dict.fromkeys(WAITING_FOR.values())
            if kinds.filter((pl.col("kind") == k) & (pl.col("waiting") > 0)).height]
    wide = (kinds.filter(pl.col("kind").is_in(used)).pivot(on="kind", index="time", values="waiting")
            if used else kinds.select("time").unique())
    if start is not None and end is not None:
        wide = _bins(start, end, every).join(wide, on="time", how="left")
    return wide.select("time", *[pl.col(k).fill_null(0).cast(pl.Int64) for k in used]).sort("time")


def waits(patients: pl.LazyFrame) -> pl.DataFrame:
    """The distribution of minutes each patient waited (patients.wait_min) by triage: columns wait (WAIT_BINS
    label, in order), triage, patients."""
    minutes = pl.col("wait_min").cast(pl.Float64, strict=False).fill_null(0)
    # each bin holds the waits from the previous bound up to (not including) its own
    bucket = pl.when(minutes <= 0).then(pl.lit(WAIT_BINS[0][1]))
    for high, text in WAIT_BINS[1:]:
        bucket = bucket.when(pl.lit(True) if high is None else minutes < high).then(pl.lit(text))
    order = pl.DataFrame({"wait": [b[1] for b in WAIT_BINS], "_o": list(range(len(WAIT_BINS)))})
    return (patients.group_by(wait=bucket, triage=pl.col("triage").cast(pl.String)).agg(patients=pl.len())
            .collect().join(order, on="wait").sort("_o", "triage").drop("_o"))


def diversions(patients: pl.LazyFrame, events: pl.LazyFrame, every: str = "1d") -> pl.DataFrame:
    """Arrivals of patients diverted past a saturated facility, by the role of care they arrived at instead, their
    front and time bin: columns time, front, facility (role), patients."""
    diverted = events.filter((pl.col("event").cast(pl.String) == "arrival") & (pl.col("detail") == "diverted"))
    return (diverted.join(patients.select("patient_id", "front"), on="patient_id", how="left")
            .group_by(time=pl.col("time").dt.truncate(every), front=pl.col("front").cast(pl.String),
                      facility=pl.col("facility").cast(pl.String))
            .agg(patients=pl.len()).sort("time", "front", "facility").collect())


# --- comparing two runs (or a preview against its pinned baseline) ------------------------------------------
# the capacity report's figures worth a line in a comparison (core.capacity.report.figures names them), and the
# shorter name a comparison gives each
CAPACITY_FIGURES = {"Deaths attributable to capacity": "Deaths due to capacity",
                    "T1 wait for surgery, median": "T1 wait for surgery, median",
                    "T1 surgery later than with unlimited care, median": "T1 delay to surgery, median",
                    "Casualties who waited 1 h or more": "Waited an hour or more", "Diversions": "Diversions",
                    "Still waiting at the end": "Still waiting at the end"}
VERDICT_RANK = {"holds": 0, "strained": 1, "overwhelmed": 2}
TEN_ONE_TWO_NAMES = {"first treatment": ("T1 treated within 10 min", "T1 treated, median"),
                     "medical facility": ("T1 at a facility within 1 h", "T1 at a facility, median"),
                     "surgery": ("T1 operated within 2 h", "T1 operated, median")}


def comparison(figures: dict, timings: pl.DataFrame, occupancy_: pl.DataFrame | None,
               report: dict | None = None) -> dict[str, tuple[float | str | None, str]]:
    """The figures two runs are compared on, name -> (value, unit) with unit count, share, min or text:
    outcomes (``key_figures``), the peak of patients present at each role of care (``occupancy``), the 10-1-2
    lines for T1 battle casualties (``ten_one_two``'s summary) and, with a medical plan, the capacity report's
    headline figures."""
    out: dict[str, tuple] = {"Patients": (figures["patients"], "count"),
                             "Deaths (KIA + DOW)": (figures["deaths"], "count"),
                             "Killed in action": (figures["kia"], "count"), "Died of wounds": (figures["dow"], "count"),
                             "Returned to duty": (figures["rtd"], "count"),
                             "Evacuated to Role 4": (figures["role4"], "count")}
    if occupancy_ is not None and occupancy_.height:
        peaks = dict(occupancy_.group_by("facility").agg(pl.col("patients").max()).iter_rows())
        for role, name in (("R1", "Role 1"), ("R2", "Role 2"), ("R3", "Role 3")):
            out[f"Peak patients at {name}"] = (peaks.get(role), "count")
    for row in timings.iter_rows(named=True):
        within, median = TEN_ONE_TWO_NAMES.get(row["measure"], (f"T1 {row['measure']} within {row['line_min']} min",
                                                                 f"T1 {row['measure']}, median"))
        out[within] = (row["within_share"], "share")
        out[median] = (row["median_min"], "min")
    if report:
        from core.capacity.report import figures as capacity_figures
        out["Plan verdict"] = (report.get("verdict"), "text")
        flat = capacity_figures(report)
        out.update({short: flat[name] for name, short in CAPACITY_FIGURES.items() if name in flat})
    return out


def differences(now: dict, before: dict) -> list[dict]:
    """One row per figure of either side: figure, unit, before, now, difference (now - before; None when either
    is missing or the figure is text)."""
    rows = []
    for name in dict.fromkeys([*before, *now]):
        b, unit_b = before.get(name, (None, None))
        n, unit_n = now.get(name, (None, None))
        unit = unit_n or unit_b
        diff = n - b if unit != "text" and isinstance(n, (int, float)) and isinstance(b, (int, float)) else None
        rows.append({"figure": name, "unit": unit, "before": b, "now": n, "difference": diff})
    return rows
