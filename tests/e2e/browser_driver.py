"""Driving the app in headless Chromium: waiting for Streamlit, clicking through pages, reading
what they show, the Triage tools (a dragged slider, the three actions) and screenshots. The
fixtures that start the server and the browser are in ``conftest.py``; the tests in ``test_browser.py``."""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("DELTAINF_SCREENSHOTS", ROOT / "tests" / "e2e" / "screenshots"))
FULL = os.environ.get("DELTAINF_E2E_SCENARIO", "tiny") == "default"
"""Drive the app's default scenario instead of the tiny one (slow unless its cache is warm)."""
CHROMIUM = os.environ.get("DELTAINF_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH, HEIGHT = 1280, 900  # the narrowest desktop width the pages must read at
STEP_MS = int(os.environ.get("DELTAINF_E2E_STEP_MS", 180_000))
"""Any one click or wait: a fresh browser's first page on a loaded 2-core CPU can take minutes."""
LONG_MS = int(os.environ.get("DELTAINF_E2E_LONG_MS", 600_000))
"""Training and scoring on a busy 2-core CPU can take minutes."""

TINY = [("Max training images (0 = all)", "400"), ("Max test images (0 = all)", "200"),
        ("Epochs (0 = auto)", "12"), ("Attack parameters (JSON)", '{"size": 5}'),
        ("Poisoned fraction", "0.05"), ("Copies of the first affected image", "8"),
        ("Copies of each further affected image", "4"), ("Affected images used by default", "2")]

NO_RAW_NAV = """window.__rawNav = false;
new MutationObserver(() => { if (document.querySelector('[data-testid="stSidebarNav"]')) window.__rawNav = true; })
    .observe(document, {subtree: true, childList: true});"""
"""Records whether Streamlit's automatic page list (the raw files of pages/) ever appears."""


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


def three_actions(page, poisons: int) -> None:
    """Sort by one transformation's collapse (1), drag the cut to the number of poisons (2), apply it (3):
    the poisons collapse on elastic copies far more than the clean images the rule also flagged (the
    caption at the cut shows the gap: d 15.5 above it, 14.9 below on the default digits)."""
    flagged = int(metric(page, "Flagged").replace(",", ""))
    choose(page, "Sort by (highest first)", "elastic: collapse d on its copies alone")  # 1
    assert drag_slider(page, "Cut: approve", poisons) == poisons  # 2
    page.get_by_text(f"The cut falls after tile {poisons} of {flagged}").wait_for()
    page.get_by_role("button", name=f"Approve the top {poisons}, reject the other {flagged - poisons}").click()  # 3
    idle(page)
    got = {m: metric(page, m) for m in ("Approved", "Rejected", "Undecided", "Precision", "Recall")}
    assert got == {"Approved": f"{poisons:,}", "Rejected": f"{flagged - poisons:,}", "Undecided": "0",
                   "Precision": "100.0%", "Recall": "100.0%"}, got


def drag_slider(page, label: str, value: int) -> int:
    """Drag a slider's thumb to ``value`` with the mouse (one drag: the button stays down until the
    thumb reads the value) and return what the slider settled on."""
    slider = page.locator('[data-testid="stSlider"]').filter(has_text=label).first
    slider.scroll_into_view_if_needed()
    knob = slider.locator('input[type="range"]')
    lo, hi = float(knob.get_attribute("min")), float(knob.get_attribute("max"))
    track = slider.locator('[data-orientation="horizontal"][style*="relative"]').first.bounding_box()
    thumb = slider.locator('[data-testid="stSliderThumbValue"]').first.locator("xpath=..").bounding_box()
    y = thumb["y"] + thumb["height"] / 2
    page.mouse.move(thumb["x"] + thumb["width"] / 2, y)
    page.mouse.down()
    x = track["x"] + track["width"] * (value - lo) / (hi - lo)
    page.mouse.move(x, y, steps=15)
    for _ in range(40):
        now = float(knob.input_value())
        if now == value:
            break
        x += (value - now) * track["width"] / (hi - lo) * 0.5
        page.mouse.move(x, y)
    page.mouse.up()
    idle(page)
    return int(float(slider.locator('input[type="range"]').input_value()))


PANEL_TITLES = """() => { const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    return plot && plot.layout ? plot.layout.annotations.map(a => a.text) : null; }"""


def chips_name_their_panels(page) -> None:
    """On the collapse page every transformation's toggle reads the count its panel's title reads
    ("invert · 11 of 19 copies counted" on both), and one without a panel says why."""
    page.wait_for_function(PANEL_TITLES)
    titles = page.evaluate(PANEL_TITLES)
    chips = [t.strip() for t in page.locator('[data-testid="stButtonGroup"]').first.locator("button")
             .all_inner_texts()]
    assert titles[0].startswith("Collapse effect size d · delta flags d ≥ "), titles[0]
    for title in titles[1:]:
        assert title in chips, (title, chips)
    shown = {t.split(" · ")[0] for t in titles[1:]}
    text = page.locator('[data-testid="stMain"]').inner_text()
    for chip in chips:
        name = chip.split(" · ")[0]
        if name not in shown:
            assert f"{name[:1].upper() + name[1:]} has no panel" in text, chip


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True)).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


TILES_DRAWN = """() => { const all = s => Array.from(document.querySelectorAll(`[data-testid="${s}"]`));
    const tiles = all('stButtonGroup').filter(e => e.innerText.includes('✗')).length;
    const stale = document.querySelector('[data-testid="stMain"] [data-stale="true"]');
    return tiles > 0 && !stale && all('stImageCaption').length >= tiles; }"""
"""Every tile on the Triage page has its caption (the image list is drawn by a component loaded on demand),
and none is left over from an earlier run (Streamlit keeps those, marked stale, until it redraws them)."""


def tile_buttons(page):
    """The tiles' decision buttons (✓ approve, ✗ reject), in reading order."""
    return page.locator('[data-testid="stButtonGroup"]').filter(has_text="✗")


def triage_view(page) -> tuple[str, str, tuple[str, ...]]:
    """The Triage page's counts and the tiles shown as rejected on its first page ('#i')."""
    if urlparse(page.url).path.rstrip("/") != "/triage":
        goto(page, "4 · Triage")
    page.get_by_text("Approved", exact=True).wait_for(timeout=LONG_MS)
    no_exception(page)
    captions: list[str] = []
    for _ in range(20):  # the same captions twice in a row, a second apart: the page has finished redrawing
        page.wait_for_function(TILES_DRAWN)
        now = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
        if now == captions:
            break
        captions = now
        page.wait_for_timeout(1000)
    rejected = tuple(c.split(" ", 1)[0] for c in captions if " · rejected" in c)
    return metric(page, "Flagged"), metric(page, "Approved"), rejected


def rejected_tile_shows_image(page) -> bool:
    """The first rejected tile still shows its image, washed out (not a blank square)."""
    from PIL import Image, ImageStat

    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    k = next(j for j, c in enumerate(captions) if " · rejected" in c)
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
