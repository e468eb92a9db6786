"""Explore opens a text run (CSV, NDJSON, JSON, gzipped or not) by converting each table to Parquet once, with
progress; after that it reads like a Parquet run."""
from __future__ import annotations

import polars as pl
import pytest

from core import explore
from core.run import generate_run


@pytest.fixture(scope="module")
def folders(tmp_path_factory, scenario_3k):
    root = tmp_path_factory.mktemp("convert")
    generate_run(scenario_3k, root / "parquet")
    generate_run(scenario_3k, root / "csvgz", fmt="csv", compress=True)
    generate_run(scenario_3k, root / "ndjson", fmt="ndjson")
    return root


@pytest.fixture
def data(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("MPG_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("fmt", ["csvgz", "ndjson"])
def test_converting_reports_progress_then_reads_the_same_tables_as_parquet(folders, data, fmt):
    assert explore.needs_converting(folders / fmt)
    seen = []
    run = explore.convert_run(folders / fmt, lambda done, what: seen.append((done, what)))
    fractions = [done for done, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1.0
    assert any("vital signs" in what for _, what in seen)
    assert not explore.needs_converting(folders / fmt)
    parquet = explore.open_run(folders / "parquet")
    for table in explore.TABLE_NAMES:
        theirs = parquet.table(table).collect()
        ours = run.table(table).collect().select(theirs.columns)  # text formats carry a hand-over text too
        assert ours.schema == theirs.schema, table
        assert ours.equals(theirs), table
    # no unpacked text is left behind, only the Parquet copies
    assert sorted(p.name for p in (data / "explore_cache").rglob("*") if p.is_file()) == sorted(
        f"{t}.parquet" for t in explore.TABLE_NAMES)


def test_a_parquet_run_needs_no_conversion_and_writes_nothing(folders, data):
    assert not explore.needs_converting(folders / "parquet")
    seen = []
    explore.convert_run(folders / "parquet", lambda *a: seen.append(a))
    assert seen == [] and not (data / "explore_cache").exists()


def test_a_rewritten_run_is_converted_again_and_the_old_copy_removed(folders, data, tmp_path_factory, scenario_3k):
    folder = tmp_path_factory.mktemp("rewritten") / "run"
    generate_run(scenario_3k, folder, fmt="csv")
    explore.convert_run(folder)
    first = {p.parent.name for p in (data / "explore_cache").rglob("patients.parquet")}
    generate_run(scenario_3k.with_overrides(patients=1_000), folder.parent / "tmp", fmt="csv")
    for f in (folder.parent / "tmp").iterdir():  # the run re-written in place (new files, new manifest)
        f.replace(folder / f.name)
    assert explore.needs_converting(folder)
    run = explore.convert_run(folder)
    assert run.patients().select(pl.len()).collect().item() == 1_000
    second = {p.parent.name for p in (data / "explore_cache").rglob("patients.parquet")}
    assert len(second) == 1 and second != first


def test_a_broken_text_file_is_a_one_line_reason(folders, data, tmp_path):
    import shutil
    folder = tmp_path / "broken"
    shutil.copytree(folders / "csvgz", folder)
    (folder / "events.csv.gz").write_bytes(b"not gzip at all")
    run = explore.open_run(folder)
    with pytest.raises(explore.RunNotExplorable, match="cannot read events.csv.gz"):
        run.events().collect()
