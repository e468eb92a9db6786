"""What every dashboard page test (AppTest) does: open app.py and a page as a browser would, find widgets."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_app() -> AppTest:
    """app.py's first run (navigation, warm caches, the default page), as a browser opening the dashboard."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def visit(at: AppTest, page: str) -> AppTest:
    """Switch ``at`` to ``page`` (e.g. "views/runs.py") and run it; the page must not raise."""
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def open_page(page: str, session: dict | None = None) -> AppTest:
    """A new session on ``page``; ``session`` is what other pages left in the session state before."""
    at = open_app()
    for key, value in (session or {}).items():
        at.session_state[key] = value
    return visit(at, page)


def by_label(widgets, label):
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget labelled {label!r} among {[w.label for w in widgets]}"
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    """Every metric on the page, label -> value."""
    return {m.label: m.value for m in at.metric}


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def use_data_dir(monkeypatch, folder: Path) -> Path:
    """Point the dashboard at ``folder`` (its runs under ``folder/runs``), no database URL, fresh run lists."""
    import resources
    monkeypatch.setenv("MPG_DATA_DIR", str(folder))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    resources.job_registry.clear()
    resources.find_runs.clear()
    return folder
