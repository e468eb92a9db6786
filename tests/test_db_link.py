"""core.db.link.DatabaseLink without Streamlit: the embedded SQLite file for "up", a closed port for "down", and a
database folder that appears or goes away for the background re-check."""
from __future__ import annotations

import shutil
import time

import pytest

from core import db
from core.db.link import DatabaseLink

DOWN_PG = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1


@pytest.fixture
def open_link():
    """DatabaseLink(url, recheck_s): closed, and its pool's connections closed, after the test."""
    links = []

    def make(url: str, recheck_s: float) -> DatabaseLink:
        links.append(DatabaseLink(url, recheck_s=recheck_s))
        return links[-1]
    yield make
    for link in links:
        link.close()
        if link.engine is not None:
            link.engine.dispose()


def _until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_database_that_answers_is_usable_at_once(open_link, tmp_path):
    link = open_link(f"sqlite:///{tmp_path / 'mpg.sqlite'}", 60)
    assert link.error is None and link.usable() is link.engine is not None
    assert link.described == f"sqlite:///{tmp_path / 'mpg.sqlite'}"
    assert db.list_runs(link.usable()) == []  # migrated on first use


def test_a_database_that_is_down_gives_one_line_and_no_engine(open_link):
    link = open_link(DOWN_PG, 60)
    assert link.usable() is None and link.engine is None
    assert link.error.startswith("database unreachable at postgresql://postgres@127.0.0.1:1/test: ")
    assert "connection refused" in link.error.lower() and "\n" not in link.error


def test_a_bad_url_is_a_reason_too(open_link):
    link = open_link("mysql://nobody@127.0.0.1/x", 60)
    assert link.usable() is None and "is not supported" in link.error


def test_the_background_check_finds_a_database_that_comes_up(open_link, tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")
    link = open_link(f"sqlite:///{blocker / 'mpg.sqlite'}", 0.05)
    assert link.usable() is None and "cannot create its folder" in link.error
    blocker.unlink()
    assert _until(lambda: link.usable() is not None), link.error
    assert link.error is None and link.described.endswith("mpg.sqlite")


def test_the_background_check_notices_a_database_that_goes_away_and_comes_back(open_link, tmp_path):
    folder = tmp_path / "db"
    link = open_link(f"sqlite:///{folder / 'mpg.sqlite'}", 0.05)
    engine = link.usable()
    assert engine is not None
    shutil.rmtree(folder)
    engine.dispose()  # pooled connections would still reach the removed file
    assert _until(lambda: link.usable() is None), "the link did not notice"
    assert link.error.startswith("database unreachable at sqlite:///")
    assert link.engine is engine  # kept: the same pool serves again once the database is back
    folder.mkdir()
    assert _until(lambda: link.usable() is engine), link.error


def test_close_stops_the_rechecking(open_link, tmp_path):
    link = open_link(f"sqlite:///{tmp_path / 'mpg.sqlite'}", 0.05)
    link.close()
    link._thread.join(2)
    assert not link._thread.is_alive()
