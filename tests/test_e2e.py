"""End to end in a real browser: `streamlit run app.py`, every page, a 200,000-patient generation, Explore.

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


def test_generate_200000_patients_then_explore_the_run(dashboard, page):
    url, data = dashboard
    open_page(page, url, "Generate")
    patients = page.get_by_role("spinbutton", name="Patients", exact=True)
    patients.fill("200000")
    patients.press("Enter")
    settle(page)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(re.compile(r"\bcompleted\b")).first.wait_for(timeout=180_000)
    no_exception(page, "Generate after the run")
    time.sleep(1)
    cut = page.evaluate(CUT_TEXT)  # the download buttons: each file's name and size whole
    assert not cut, f"Generate after the run: text cut: {cut}"
    manifests = list((data / "runs").glob("*/manifest.json"))
    assert len(manifests) == 1
    assert '"status": "completed"' in manifests[0].read_text()
    assert '"patients": 200000' in manifests[0].read_text()

    open_page(page, url, "Explore")
    no_exception(page, "Explore")
    page.get_by_text(re.compile(r"200,000")).first.wait_for(timeout=60_000)


# --- what a stakeholder sees: a field that blocks, charts of real size, no text cut --------------------------------

CUT_TEXT = """() => {
  const cut = [];
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  for (const el of main.querySelectorAll('*')) {
    if (!el.offsetParent || el.closest('[data-testid="stDataFrame"]')) continue;  // tables scroll by design
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el);
    const clips = style.textOverflow === 'ellipsis' || ['hidden', 'clip'].includes(style.overflowX);
    if (clips && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      cut.push(`${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 80)}"`);
  }
  // a box that ends its text with an ellipsis (labels of buttons and widgets): its text wider than the box, even by
  // a fraction of a pixel (scrollWidth rounds that away, the browser still cuts the last characters)
  for (const el of main.querySelectorAll('*')) {
    if (!el.offsetParent || el.closest('[data-testid="stDataFrame"]') || !el.textContent.trim()) continue;
    if (getComputedStyle(el).textOverflow !== 'ellipsis') continue;
    const range = document.createRange();
    range.selectNodeContents(el);
    const box = el.getBoundingClientRect();
    if (box.width > 0 && range.getBoundingClientRect().width > box.width + 0.1)
      cut.push(`${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 80)}" (ellipsis)`);
  }
  for (const t of main.querySelectorAll('svg text')) {  // chart titles, axis titles, legends, tick labels
    const text = t.textContent.trim(), svg = t.ownerSVGElement;
    if (!text || !svg) continue;
    if (text.endsWith('…')) cut.push(`chart text "${text}"`);
    const r = t.getBoundingClientRect(), box = svg.getBoundingClientRect();
    if (r.width && (r.left < box.left - 2 || r.right > box.right + 2)) cut.push(`chart text outside its chart "${text}"`);
  }
  return cut;
}"""


def test_an_invalid_patients_value_blocks_generate(dashboard, page):
    url, _ = dashboard
    open_page(page, url, "Generate")
    patients = page.get_by_role("spinbutton", name="Patients", exact=True)
    for typed, shown in (("0", "0 cannot be generated"), ("150000000", "150,000,000 cannot be generated")):
        patients.fill(typed)
        patients.press("Tab")
        settle(page)
        page.get_by_text(shown).first.wait_for(timeout=30_000)
        assert page.get_by_role("button", name="Generate").is_disabled(), typed
    patients.fill("20000")
    patients.press("Tab")
    settle(page)
    assert page.get_by_role("button", name="Generate").is_enabled()


def test_live_charts_during_a_run_have_a_plot_area_of_real_height(dashboard, page):
    url, _ = dashboard
    open_page(page, url, "Generate")
    patients = page.get_by_role("spinbutton", name="Patients", exact=True)
    patients.fill("5000000")
    patients.press("Tab")
    settle(page)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Patients generated").first.wait_for(timeout=120_000)
    time.sleep(3)  # a redraw or two
    # each chart's y axis spans its plot area; before: a few pixels under cut titles and legends
    heights = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg')].map(svg =>
        Math.max(0, ...[...svg.querySelectorAll('g.role-axis')].map(g => g.getBoundingClientRect().height)))""")
    titles = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] .role-title-text')]
        .map(t => t.textContent)""")
    cut = page.evaluate(CUT_TEXT)
    page.screenshot(path=str(dashboard[1] / "generate_during_run.png"))
    no_exception(page, "Generate during a run")
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("Cancelled after").first.wait_for(timeout=60_000)
    assert titles[:4] == ["Patients generated", "Speed (5 s average)", "Memory of the run (MB)",
                          "Database connections and cache hits"], titles
    assert len(heights) >= 4 and min(heights[:4]) >= 150, heights
    assert not cut, cut


@pytest.mark.parametrize("title", PAGES)
def test_no_text_is_cut_at_1400_by_1000(dashboard, page, title):
    """Chart titles, legends, labels and captions are read whole: nothing is clipped or cut with an ellipsis."""
    url, _ = dashboard
    open_page(page, url, title)
    time.sleep(2)  # charts draw after the script run ends
    no_exception(page, title)
    assert page.locator('[data-testid="stAlertContentError"] pre, .stException').count() == 0, title
    cut = page.evaluate(CUT_TEXT)
    assert not cut, f"{title}: text cut: {cut}"


def test_a_table_edit_survives_a_switch_to_another_tab(dashboard, page):
    """Only the open tab of the Scenario form is drawn; an edit in a table must still be there when its tab opens
    again (and count in the scenario meanwhile)."""
    url, _ = dashboard
    open_page(page, url, "Scenario")
    page.get_by_role("tab", name="Fronts").click()
    settle(page)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for(timeout=30_000)
    time.sleep(1)  # the grid draws on its canvas after it appears
    box = grid.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.40, box["y"] + box["height"] - 4 * 35 + 17)  # Poland's share
    time.sleep(0.5)
    page.keyboard.press("Enter")  # opens the cell's editor
    time.sleep(0.5)
    page.keyboard.press("Control+A")
    page.keyboard.type("80")
    time.sleep(0.3)
    page.keyboard.press("Enter")
    settle(page)
    page.screenshot(path=str(dashboard[1] / "scenario_fronts_edited.png"))
    note = page.get_by_text(re.compile(r"casualty shares adds up to 120\s*%"))
    note.first.wait_for(timeout=30_000)  # 80 + 30 + 10
    page.get_by_role("tab", name="Events").click()
    settle(page)
    page.get_by_text("Special events").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Fronts").click()
    settle(page)
    note.first.wait_for(timeout=30_000)
    no_exception(page, "Scenario tabs")
