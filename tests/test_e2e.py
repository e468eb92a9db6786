"""End to end in a real browser: `streamlit run app.py`, every page, a 20,000-patient generation, Explore.

Uses Playwright with the system Chromium (`/usr/bin/chromium`, or `MPG_CHROMIUM`); `.ci/run` installs it.
Without a browser the test fails when `CI` is set and skips on a developer machine.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MPG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PAGES = ["Scenario", "Generate", "Monitor", "Explore", "Replay", "Runs"]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    port = _free_port()
    data = tmp_path_factory.mktemp("data")
    env = {**os.environ, "MPG_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
    env.pop("DATABASE_URL", None)  # the embedded SQLite default, as a new user gets it
    log = open(data / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("streamlit did not start: " + (data / "streamlit.log").read_text()[-2000:])
            time.sleep(0.3)
        yield url, data
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(dashboard):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
        yield pg
        browser.close()


def settle(pg, timeout_s: float = 60) -> None:
    """Wait until the script run ends (Streamlit's status widget no longer says it is running)."""
    pg.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    deadline = time.time() + timeout_s
    time.sleep(0.5)
    while time.time() < deadline:
        if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
            return
        time.sleep(0.2)
    raise AssertionError("the page kept running for more than %.0f s" % timeout_s)


def open_page(pg, url: str, title: str) -> None:
    """Open a page by its address (the default page, Scenario, lives at the root)."""
    pg.goto(url if title == PAGES[0] else f"{url}/{title.lower()}")
    settle(pg)
    try:
        pg.wait_for_function("t => [...document.querySelectorAll('h1')].some(h => h.innerText.includes(t))",
                             arg=title, timeout=30_000)
    except Exception:
        raise AssertionError(f"page {title!r}: no heading {title!r} after 30 s") from None


def no_exception(pg, where: str) -> None:
    exceptions = pg.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{where}: {exceptions.first.inner_text()[:500]}"
    assert not pg.errors, f"{where}: browser errors {pg.errors}"


def test_a_bookmarked_page_on_a_fresh_server_runs_through_app_py(dashboard, page):
    """The first request of a new server opens a page by its address: it must get the app's navigation and
    set-up (a folder Streamlit auto-discovers would serve the page file alone, with file names as navigation)."""
    url, _ = dashboard
    open_page(page, url, "Runs")
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert all(title in nav for title in PAGES), nav
    assert "app" not in nav.split()


def test_every_page_renders_without_errors(dashboard, page):
    url, _ = dashboard
    for title in PAGES:
        open_page(page, url, title)
        no_exception(page, title)


def test_generate_20000_patients_then_explore_the_run(dashboard, page):
    url, data = dashboard
    open_page(page, url, "Generate")
    patients = page.get_by_role("spinbutton", name="Patients", exact=True)
    patients.fill("20000")
    patients.press("Enter")
    settle(page)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(re.compile(r"\bcompleted\b")).first.wait_for(timeout=180_000)
    no_exception(page, "Generate after the run")
    manifests = list((data / "runs").glob("*/manifest.json"))
    assert len(manifests) == 1
    assert '"status": "completed"' in manifests[0].read_text()
    assert '"patients": 20000' in manifests[0].read_text()

    open_page(page, url, "Explore")
    no_exception(page, "Explore")
    page.get_by_text(re.compile(r"20,000")).first.wait_for(timeout=60_000)
