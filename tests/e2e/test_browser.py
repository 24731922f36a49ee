"""End to end in a real browser: ``streamlit run app.py`` driven by headless Chromium.

Clicks through the analyst's path (train → pick → collapse → select points → triage with two
images rejected by hand → unlearn → reports → compare) on a tiny built-in scenario; then the
same investigation — triage decisions and unlearning numbers — must come back after a reload,
at the same address in a second browser, and after a server restart whose first request is a
sub-page's address, while a second investigation keeps its own. Saves a screenshot of every page to
``tests/e2e/screenshots/`` (git-ignored; set ``DELTAINF_SCREENSHOTS=assets/screenshots``
to refresh the README's). Skips cleanly when Chromium or Playwright is missing.

    pytest -m e2e tests/e2e

For README-quality screenshots of the *default* investigation (4,000 digits, EK-FAC,
5 affected images) point it at a cache that already holds the CLI's default run:

    DELTAINF_E2E_SCENARIO=default DELTAINF_E2E_CACHE=cache DELTAINF_SCREENSHOTS=assets/screenshots \
        pytest -m e2e tests/e2e
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("DELTAINF_SCREENSHOTS", ROOT / "tests" / "e2e" / "screenshots"))
FULL = os.environ.get("DELTAINF_E2E_SCENARIO", "tiny") == "default"
"""Drive the app's default scenario instead of the tiny one (slow unless its cache is warm)."""
CHROMIUM = os.environ.get("DELTAINF_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH, HEIGHT = 1400, 900
LONG_MS = int(os.environ.get("DELTAINF_E2E_LONG_MS", 600_000))
"""Training and scoring on a busy 2-core CPU can take minutes."""

TINY = [("Max training images (0 = all)", "400"), ("Max test images (0 = all)", "200"),
        ("Epochs (0 = auto)", "12"), ("Attack parameters (JSON)", '{"size": 5}'),
        ("Poisoned fraction", "0.05"), ("Copies of the first affected image", "8"),
        ("Copies of each further affected image", "4"), ("Affected images used by default", "2")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def playwright_api():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return sync_api


class Server:
    """``streamlit run app.py`` on a free port with the test session's private artefact cache."""

    def __init__(self, cache: str, log: Path) -> None:
        self.cache, self.log, self.proc, self.url = cache, log, None, ""

    def start(self) -> str:
        port = _free_port()
        env = {**os.environ, "DELTAINF_CACHE": self.cache, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                 "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                 "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self.url
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None


@pytest.fixture(scope="module")
def server(playwright_api, cache_dir, tmp_path_factory):
    srv = Server(os.environ.get("DELTAINF_E2E_CACHE") or cache_dir, tmp_path_factory.mktemp("e2e-log") / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


NO_RAW_NAV = """window.__rawNav = false;
new MutationObserver(() => { if (document.querySelector('[data-testid="stSidebarNav"]')) window.__rawNav = true; })
    .observe(document, {subtree: true, childList: true});"""
"""Records whether Streamlit's automatic page list (the raw files of pages/) ever appears."""


@pytest.fixture(scope="module")
def browser(playwright_api):
    """``open(url)``: a page in a new browser with a fresh profile (a separate 'browser session')."""
    profiles, contexts = [], []
    with playwright_api.sync_playwright() as p:
        def open_page(url: str):
            profile = tempfile.mkdtemp(prefix="deltainf-chromium-")
            profiles.append(profile)
            ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                       args=BROWSER_ARGS, viewport={"width": WIDTH, "height": HEIGHT},
                                                       accept_downloads=True)
            contexts.append(ctx)
            ctx.set_default_timeout(60_000)
            ctx.add_init_script(NO_RAW_NAV)
            pg = ctx.new_page()
            pg.goto(url)
            return pg

        yield open_page
        for ctx in contexts:
            ctx.close()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser, server):
    return browser(server.url)


SETTLED = """() => { const app = document.querySelector('[data-testid="stApp"]');
    const main = document.querySelector('[data-testid="stMain"]');
    if (!app || !main || app.getAttribute('data-test-script-state') !== 'notRunning') {
        window.__settled = null; return false; }
    const size = main.getElementsByTagName('*').length + ':' + main.innerText.length, now = Date.now();
    if (!window.__settled || window.__settled.size !== size) { window.__settled = {size, since: now}; return false; }
    return now - window.__settled.since > 1000; }"""
"""The app has run (a fresh page starts 'initial'), no run is going on or requested, and the page
has stopped changing for a second (elements are still drawn for a moment after a run ends)."""


def idle(page, timeout_ms: int = LONG_MS) -> None:
    """Wait until Streamlit has finished the current script run and drawn its result."""
    page.wait_for_timeout(400)
    page.evaluate("window.__settled = null")
    page.wait_for_function(SETTLED, timeout=timeout_ms, polling=200)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def shot(page, name: str) -> Path:
    """Screenshot the whole page (Streamlit scrolls inside its main block), saved small."""
    from PIL import Image

    idle(page)
    page.wait_for_timeout(1200)  # let images and WebGL finish painting
    height = page.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
                                      const b = m && m.querySelector('[data-testid="stMainBlockContainer"]');
                                      return Math.ceil((b || m || document.body).scrollHeight) + 120; }""")
    page.set_viewport_size({"width": WIDTH, "height": int(min(max(HEIGHT, height), 3200))})
    page.wait_for_timeout(800)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    with Image.open(path) as im:  # 256-colour PNGs keep the repository small
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box ``label`` (scrolled into view first: its list opens below it)."""
    box = page.get_by_role("combobox", name=label)
    box.scroll_into_view_if_needed()
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    idle(page)
    assert box.input_value() == option


def goto(page, title: str) -> None:
    page.get_by_role("link", name=title).click()
    idle(page)


def tiny_settings(page) -> None:
    """The tiny knobs from the Scenario page's advanced expander (a fresh session starts at the defaults)."""
    if FULL:
        return
    if not page.get_by_label(TINY[0][0], exact=True).is_visible():
        page.get_by_text("Advanced: size, speed and attack parameters").click()
        idle(page)
    for label, value in TINY:
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        idle(page)
    choose(page, "Influence strategy", "diagonal")


def train(page) -> None:
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Clean accuracy", exact=True).wait_for(timeout=LONG_MS)
    idle(page)
    no_exception(page)


def inv_id(page) -> str:
    """The investigation id in the page's address (every page puts it back after a page link)."""
    page.wait_for_function("() => new URLSearchParams(location.search).get('investigation')")
    return parse_qs(urlparse(page.url).query)["investigation"][0]


def download_report(page, path: Path, browser, name: str | None = None) -> None:
    """Download the report from the current page, open it offline in a browser of its own (screenshot ``name``)."""
    with page.expect_download(timeout=LONG_MS) as download:
        page.get_by_role("button", name="Report (HTML)").click()
    download.value.save_as(path)
    html = path.read_text()
    assert html.count("data:image/png;base64,") >= 4 and "http://" not in html.split("<body", 1)[1]
    view = browser("about:blank")  # offline (the app's own connection stays up)
    view.context.set_offline(True)
    view.goto(path.as_uri())
    assert view.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    if name:
        SHOTS.mkdir(parents=True, exist_ok=True)
        view.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
    view.context.close()


def test_analyst_path_in_chromium(page, browser, server, tmp_path):
    """The path, then the same investigation after a reload, in a second browser and after a restart."""
    # 1 · Scenario with the tiny knobs from the advanced expander
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=120_000)
    assert page.evaluate("window.__rawNav") is False  # no automatic list of pages/ while loading
    assert page.get_by_role("button", name="Deploy").count() == 0
    tiny_settings(page)
    train(page)
    assert page.get_by_text("Poison success rate", exact=True).count() >= 1
    shot(page, "1-scenario")
    first = inv_id(page)

    # 2 · Affected image: the gallery with the first candidates picked
    goto(page, "2 · Affected image")
    page.get_by_text("triggered test images of class").wait_for()
    page.get_by_text(f"Using {5 if FULL else 2} affected images").wait_for()
    no_exception(page)
    shot(page, "2-affected-image")

    # 3 · Influence collapse: score, then box-select points on the effect-size panel
    goto(page, "3 · Influence collapse")
    page.get_by_role("button", name="Compute influence collapse").click()
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for(timeout=LONG_MS)
    idle(page)
    page.get_by_text("training images flagged by").wait_for()
    no_exception(page)
    shot(page, "3-influence-collapse")
    drag = chart.locator(".nsewdrag").first
    box = drag.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.02, box["y"] + box["height"] * 0.02)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.98, box["y"] + box["height"] * 0.55, steps=12)
    page.mouse.up()
    page.get_by_text("training images selected").or_(page.get_by_text("training image selected")).first.wait_for(
        timeout=120_000)
    idle(page)
    no_exception(page)
    shot(page, "3b-selection")

    # 4 · Triage: the tiny model's flagged set swallows a whole class, so keep the strongest page there,
    # then reject two of its images by hand
    goto(page, "4 · Triage")
    page.get_by_text("Approved", exact=True).wait_for()
    if not FULL:
        page.get_by_role("button", name="Reject all").click()
        idle(page)
        page.get_by_role("button", name="Approve page").click()
        idle(page)
    for tick in page.locator('[data-testid="stCheckbox"]').filter(has_text="approve").all()[:2]:
        tick.locator("label").click()
        idle(page)
    no_exception(page)
    decisions = triage_view(page)
    assert len(decisions[2]) == 2 and int(decisions[1]) < int(decisions[0]), decisions
    assert rejected_tile_shows_image(page)
    shot(page, "4-triage")
    download_report(page, tmp_path / "triage.html", browser)

    # 5 · Unlearn with the default method (EU)
    goto(page, "5 · Unlearn")
    page.get_by_role("button", name="Unlearn", exact=True).click()
    page.get_by_text("Clean accuracy after").wait_for(timeout=LONG_MS)
    idle(page)
    no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    result = unlearn_view(page)
    assert result is not None and result[2] == decisions[1], (result, decisions)  # removed = approved
    shot(page, "5-unlearn")
    download_report(page, tmp_path / "report.html", browser, "7-report")

    # Compare
    goto(page, "Compare methods")
    page.get_by_role("heading", name="Compare methods").wait_for()
    no_exception(page)
    shot(page, "6-compare")
    for name in ("1-scenario", "2-affected-image", "3-influence-collapse", "3b-selection", "4-triage", "5-unlearn",
                 "6-compare"):
        path = SHOTS / f"{name}.png"
        assert path.exists() and path.stat().st_size < 1_500_000, name
    assert inv_id(page) == first  # the same record all along, still in the address on another page
    seen = investigation_view(page)
    assert seen == (decisions, result), seen

    # a reload reopens it where it was
    page.reload()
    idle(page)
    assert investigation_view(page) == seen

    # the same address in a second browser (its own session): the same investigation, also when a page
    # link is clicked at once, while the reopen may still run (a page link drops the query string)
    other = browser(page.url)
    other.get_by_role("link", name="4 · Triage").click()
    idle(other)
    assert investigation_view(other) == seen

    # a second investigation in that browser: its own id and decisions, and neither mixes into the other
    goto(other, "1 · Scenario")
    other.get_by_text("Saved investigations").first.click()
    other.get_by_role("button", name="New investigation").click()
    idle(other)
    tiny_settings(other)
    train(other)  # the same settings: the model comes from the cache, the record is new
    second = inv_id(other)
    assert second != first
    goto(other, "2 · Affected image")
    goto(other, "3 · Influence collapse")
    other.get_by_role("button", name="Compute influence collapse").click()
    other.get_by_text("training images flagged by").wait_for(timeout=LONG_MS)
    idle(other)
    goto(other, "4 · Triage")
    other.get_by_text("Approved", exact=True).wait_for()
    fresh = triage_view(other)
    assert fresh[0] == fresh[1] and fresh[2] == (), fresh  # nothing rejected here: every flagged image approved
    assert unlearn_view(other) is None
    assert investigation_view(page) == seen  # the first browser still shows its own
    other.context.close()

    # a restarted server: the first request is a sub-page's address (a fresh server's v1 reading of pages/)
    server.stop()
    server.start()
    after = browser(f"{server.url}/unlearn?investigation={first}")
    idle(after)
    after.get_by_role("link", name="4 · Triage").wait_for()  # app.py ran: the page list is there
    after.get_by_text("Clean accuracy after").wait_for()
    assert investigation_view(after) == seen
    again = browser(f"{server.url}/triage?investigation={second}")
    idle(again)
    assert triage_view(again) == fresh and unlearn_view(again) is None
    goto(after, "1 · Scenario")
    after.get_by_text("Saved investigations").first.click()
    after.get_by_text("(open)").first.wait_for()
    no_exception(after)


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True)).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


TILES_DRAWN = """() => { const all = s => Array.from(document.querySelectorAll(`[data-testid="${s}"]`));
    const ticks = all('stCheckbox').filter(e => e.innerText.trim() === 'approve').length;
    return ticks > 0 && all('stImageCaption').length >= ticks; }"""
"""Every tile on the Triage page has its caption (the image list is drawn by a component loaded on demand)."""


def triage_view(page) -> tuple[str, str, tuple[str, ...]]:
    """The Triage page's counts and the tiles shown as rejected on its first page ('#i')."""
    if urlparse(page.url).path.rstrip("/") != "/triage":
        goto(page, "4 · Triage")
    page.get_by_text("Approved", exact=True).wait_for(timeout=LONG_MS)
    no_exception(page)
    page.wait_for_function(TILES_DRAWN)
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    rejected = tuple(c.split(" ", 1)[0] for c in captions if c.endswith("· rejected"))
    return metric(page, "Flagged"), metric(page, "Approved"), rejected


def rejected_tile_shows_image(page) -> bool:
    """The first rejected tile still shows its image, washed out (not a blank square)."""
    from PIL import Image, ImageStat

    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    k = next(j for j, c in enumerate(captions) if c.endswith("· rejected"))
    src = page.locator('[data-testid="stImage"] img').nth(k).get_attribute("src")
    with Image.open(BytesIO(page.request.get(urljoin(page.url, src)).body())) as im:
        inner = im.convert("L").crop((6, 6, im.width - 6, im.height - 6))  # inside the grey frame
        return ImageStat.Stat(inner).stddev[0] > 10 and ImageStat.Stat(inner).mean[0] < 250


def unlearn_view(page) -> tuple[str, str, str] | None:
    """The Unlearn page's result (accuracy, poison success rate, images removed), None when there is none."""
    goto(page, "5 · Unlearn")
    page.get_by_role("heading", name="Unlearn").wait_for(timeout=LONG_MS)
    no_exception(page)
    if page.get_by_text("Clean accuracy after").count() == 0:
        return None
    return metric(page, "Clean accuracy after"), metric(page, "Poison success rate after"), metric(
        page, "Images removed")


def investigation_view(page) -> tuple:
    """What a reopened investigation must show again: the triage decisions and the unlearning result."""
    try:
        idle(page)
        return triage_view(page), unlearn_view(page)
    except Exception:
        failed = ROOT / "tests" / "e2e" / "screenshots"  # git-ignored, never the README's folder
        failed.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(failed / "failed-reopen.png"), full_page=True)
        raise
