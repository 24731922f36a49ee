"""End to end in a real browser: ``streamlit run app.py`` driven by headless Chromium.

Clicks through the analyst's path (train → pick → collapse → select points → triage →
unlearn → compare) on a tiny built-in scenario and saves a screenshot of every page to
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
from pathlib import Path
from urllib.parse import parse_qs, urlparse

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


def idle(page, timeout_ms: int = LONG_MS) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(400)
    page.wait_for_function(
        """() => { const w = document.querySelector('[data-testid="stStatusWidget"]');
                   return !w || !/Running|Stop/.test(w.innerText); }""", timeout=timeout_ms)
    page.wait_for_timeout(300)


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


def goto(page, title: str) -> None:
    page.get_by_role("link", name=title).click()
    idle(page)


def test_analyst_path_in_chromium(page, browser, server, tmp_path):
    """The path, then the same investigation after a reload, in a second browser and after a restart."""
    # 1 · Scenario with the tiny knobs from the advanced expander
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=120_000)
    assert page.evaluate("window.__rawNav") is False  # no automatic list of pages/ while loading
    assert page.get_by_role("button", name="Deploy").count() == 0
    if not FULL:
        page.get_by_text("Advanced: size, speed and attack parameters").click()
        for label, value in TINY:
            box = page.get_by_label(label, exact=True)
            box.fill(value)
            box.press("Enter")
            idle(page)
        page.get_by_role("combobox", name="Influence strategy").click()
        page.get_by_role("option", name="diagonal", exact=True).click()
        idle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Clean accuracy", exact=True).wait_for(timeout=LONG_MS)
    no_exception(page)
    assert page.get_by_text("Poison success rate", exact=True).count() >= 1
    shot(page, "1-scenario")

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

    # 4 · Triage: the tiny model's flagged set swallows a whole class, so keep the strongest page there
    goto(page, "4 · Triage")
    page.get_by_text("Approved", exact=True).wait_for()
    if not FULL:
        page.get_by_role("button", name="Reject all").click()
        idle(page)
        page.get_by_role("button", name="Approve page").click()
        idle(page)
    no_exception(page)
    shot(page, "4-triage")

    # 5 · Unlearn with the default method (EU)
    goto(page, "5 · Unlearn")
    page.get_by_role("button", name="Unlearn", exact=True).click()
    page.get_by_text("Clean accuracy after").wait_for(timeout=LONG_MS)
    idle(page)
    no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    shot(page, "5-unlearn")

    # the stakeholder report: one self-contained file with its figures embedded, readable offline
    report = tmp_path / "report.html"
    with page.expect_download(timeout=LONG_MS) as download:
        page.get_by_role("button", name="Report (HTML)").click()
    download.value.save_as(report)
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 4 and "http://" not in html.split("<body", 1)[1]
    view = browser("about:blank")  # a browser of its own, offline (the app's connection stays up)
    view.context.set_offline(True)
    view.goto(report.as_uri())
    assert view.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(SHOTS / "7-report.png"), full_page=False)
    view.close()

    # Compare
    goto(page, "Compare methods")
    page.get_by_role("heading", name="Compare methods").wait_for()
    no_exception(page)
    shot(page, "6-compare")
    for name in ("1-scenario", "2-affected-image", "3-influence-collapse", "3b-selection", "4-triage", "5-unlearn",
                 "6-compare"):
        path = SHOTS / f"{name}.png"
        assert path.exists() and path.stat().st_size < 1_500_000, name

    # the investigation lives in the URL: a reload, a second browser and a restarted server reopen it
    inv_id = parse_qs(urlparse(page.url).query).get("investigation", [""])[0]
    assert inv_id, page.url
    seen = investigation_view(page)
    page.reload()
    idle(page)
    assert investigation_view(page) == seen
    other = browser(f"{server.url}/?investigation={inv_id}")
    assert investigation_view(other) == seen
    other.close()
    server.stop()
    server.start()
    after_restart = browser(f"{server.url}/?investigation={inv_id}")
    assert investigation_view(after_restart) == seen
    goto(after_restart, "1 · Scenario")
    after_restart.get_by_text("Saved investigations").first.click()
    after_restart.get_by_text("(open)").first.wait_for()


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True)).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def investigation_view(page) -> tuple[str, ...]:
    """What a reopened investigation must show again: the triage counts and the unlearning result."""
    try:
        idle(page)
        goto(page, "4 · Triage")
        page.get_by_text("Approved", exact=True).wait_for(timeout=LONG_MS)
        counts = (metric(page, "Flagged"), metric(page, "Approved"))
        goto(page, "5 · Unlearn")
        page.get_by_text("Clean accuracy after").wait_for(timeout=LONG_MS)
        no_exception(page)
        return (*counts, metric(page, "Clean accuracy after"), metric(page, "Poison success rate after"))
    except Exception:
        failed = ROOT / "tests" / "e2e" / "screenshots"  # git-ignored, never the README's folder
        failed.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(failed / "failed-reopen.png"), full_page=True)
        raise
