"""End to end in a real browser, the medical plan: on the Scenario page a planner changes the Role 2 Enhanced
operating tables and sees the preview's capacity figures change; then generates the Okinawa brigade and reads
the plan at work in Explore's Capacity view.

Same approach as tests/test_e2e.py (its fixtures: `streamlit run app.py` on a free port with its own
MPG_DATA_DIR, Chromium through Playwright).
"""
from __future__ import annotations

import json
import re
import time

import pytest

import test_e2e
from test_e2e import no_exception, open_page, settle

dashboard, page = test_e2e.dashboard, test_e2e.page  # its fixtures, by name: a server and a browser of our own

pytestmark = pytest.mark.e2e


def go_to(pg, title: str) -> None:
    """Another page in the same session (the sidebar, as a user would: an address would start a new session)."""
    pg.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    settle(pg)
    pg.wait_for_function("t => [...document.querySelectorAll('h1')].some(h => h.innerText.includes(t))",
                         arg=title, timeout=30_000)


def metric_value(pg, label: str) -> str:
    box = pg.locator('[data-testid="stMetric"]').filter(has=pg.get_by_text(label, exact=True)).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def wait_for_change(pg, label: str, before: str, timeout_s: float = 60) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        now = metric_value(pg, label)
        if now != before:
            return now
        time.sleep(0.3)
    raise AssertionError(f"{label!r} stayed {before!r} for {timeout_s:.0f} s")


def test_changing_the_operating_tables_changes_the_preview_then_the_run_shows_its_capacity(dashboard, page):
    url, data = dashboard
    open_page(page, url, "Scenario")
    page.get_by_test_id("stSelectbox").filter(has_text="Start from a preset").first.click()
    page.get_by_role("option").filter(has_text="Brigade medical plan at Okinawa rates").first.click()
    settle(page, 120)  # the first preview with a plan may load the simulation's compiled code
    page.get_by_role("tab", name="Medical plan").click()
    page.get_by_text("Role 2 Enhanced", exact=True).first.wait_for(timeout=30_000)
    waited = metric_value(page, "Waited an hour or more")
    within = metric_value(page, "T1 operated within 2 h")
    assert re.fullmatch(r"\d+\.\d %", waited), waited

    tables = page.get_by_role("spinbutton", name="Operating tables").nth(1)  # Role 2 Basic, Enhanced, Role 3
    assert tables.input_value() == "2"
    tables.fill("1")
    tables.press("Enter")
    settle(page)
    assert wait_for_change(page, "Waited an hour or more", waited) != waited
    assert metric_value(page, "T1 operated within 2 h") != within  # 61 % -> 55 % with one table
    no_exception(page, "Scenario after the change")

    tables = page.get_by_role("spinbutton", name="Operating tables").nth(1)
    tables.fill("0")
    tables.press("Enter")
    settle(page)
    page.get_by_text(re.compile("Role 2 Enhanced, operating tables: 0 is not allowed")).first.wait_for(timeout=30_000)
    page.get_by_text("Preview not current.").first.wait_for(timeout=30_000)
    tables = page.get_by_role("spinbutton", name="Operating tables").nth(1)
    tables.fill("2")
    tables.press("Enter")
    settle(page)

    go_to(page, "Generate")  # the edited scenario goes with the session
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(re.compile(r"\bcompleted\b")).first.wait_for(timeout=300_000)
    no_exception(page, "Generate after the run")
    manifests = list((data / "runs").glob("*/manifest.json"))
    manifest = json.loads(manifests[0].read_text())
    assert len(manifests) == 1 and manifest["scenario"]["name"] == "Brigade medical plan at Okinawa rates"
    assert manifest["capacity"]["verdict"] in ("holds", "strained", "overwhelmed")
    assert (manifests[0].parent / "capacity.json").is_file()

    go_to(page, "Explore")
    page.locator('[data-testid="stRadio"] label').filter(has_text="Capacity").first.click()
    settle(page)
    page.get_by_text(re.compile(r"^The plan (holds|is strained|is overwhelmed)\.")).first.wait_for(timeout=60_000)
    deadline, titles = time.time() + 60, []
    while time.time() < deadline:  # the charts draw one after another
        titles = page.locator(".js-plotly-plot .gtitle").evaluate_all("els => els.map(e => e.textContent)")
        if any(t.startswith("How full each resource was") for t in titles) and "Role 1 (Brigade)" in titles:
            break
        time.sleep(0.5)
    assert any(t.startswith("How full each resource was") for t in titles), titles
    assert "Role 1 (Brigade)" in titles, titles  # a facility's resources over time against its capacity
    no_exception(page, "Explore, Capacity")
