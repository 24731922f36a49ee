"""The stakeholder report: every section, images embedded, nothing fetched, readable verdicts, offline rendering."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
from PIL import Image

from deltainf_core.collapse import CollapsePanels
from deltainf_core.figures import CLEAN, FLAGGED, POISON, before_after_png, collapse_png, hex_to_rgb
from deltainf_core.pipeline import run_results
from deltainf_core.report import (
    ReportData,
    ReportImage,
    build_report,
    collect,
    evidence_text,
    verdict,
    write_report,
)

CHROMIUM = os.environ.get("DELTAINF_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
SECTIONS = ("explainer", "scenario", "affected", "collapse", "flagged", "unlearning", "settings")


def _results(psr_before=1.0, psr_after=0.0, oracle_psr=0.0, unlearned=True) -> dict:
    return {
        "scenario": {"dataset": "mnist5k", "data_dir": None, "model": "smallcnn", "attack": "badnet",
                     "poison_frac": 0.01, "victim_class": 0, "target_class": 1, "epochs": 12, "seed": 0,
                     "detector": "delta", "unlearn": "eu", "checkpoint": None,
                     "config": {"data": {"dataset": "mnist5k"}, "train": {"model": "smallcnn"}}},
        "poisoned": {"clean_accuracy": 0.95, "poison_success_rate": psr_before, "n_train": 300, "n_poisons": 6},
        "affected_test_index": 11, "affected_test_indices": [11, 12],
        "rounds": [{"round": 1, "n_flagged": 10, "affected_still_target": 0}],
        "detection": {"method": "delta", "flagged": list(range(10)), "n_flagged": 10, "precision": 0.6,
                      "recall": 1.0},
        "unlearned": None if not unlearned else {
            "method": "eu", "clean_accuracy": 0.94, "poison_success_rate": psr_after,
            "oracle_clean_accuracy": 0.945, "oracle_poison_success_rate": oracle_psr},
    }


def _panels(n: int = 300, seed: int = 0) -> CollapsePanels:
    rng = np.random.default_rng(seed)
    original = rng.normal(0, 1e3, n)
    original[:6] = rng.uniform(5e4, 2e5, 6)
    delta = {t: rng.normal(0, 5e2, n) for t in ("flip", "blur", "invert")}
    for t in delta:
        delta[t][:6] = -original[:6]
    return CollapsePanels(original.astype(np.float32), {k: v.astype(np.float32) for k, v in delta.items()},
                          {t: 10 for t in delta})


def _statistic(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.normal(0, 1, n)
    d[:10] = rng.uniform(3, 9, 10)
    return d


def _data(**kw) -> ReportData:
    rng = np.random.default_rng(1)
    digits = [rng.uniform(0, 1, (1, 28, 28)).astype(np.float32) for _ in range(8)]
    colour = rng.uniform(0, 1, (3, 32, 32)).astype(np.float32)
    values = {
        "results": _results(), "name": "case <b>42</b>",
        "affected": [ReportImage(digits[0], "test #11"), ReportImage(colour, "test #12")],
        "copies": [ReportImage(digits[1], "original\n→ 1"), ReportImage(digits[2], "Gaussian blur\n→ 7")],
        "panels": _panels(), "statistic": _statistic(), "poisons": np.arange(6), "flagged": np.arange(10),
        "threshold": 2.0,
        "flagged_images": [ReportImage(digits[3], "#0 · label 1\nd 8.1", "poison"),
                           ReportImage(digits[4], "#7 · label 1\nd 3.2"),
                           ReportImage(digits[5], "#9 · label 1\nd 3.0", "rejected")],
        "n_flagged_total": 10, "n_approved": 9, "n_rejected": 1,
    }
    values.update(kw)
    return ReportData(**values)


def _images(html: str) -> list[str]:
    return re.findall(r"<img[^>]*\bsrc=\"([^\"]*)\"", html)


def test_every_section_is_there_with_its_numbers():
    html = build_report(_data())
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    assert "influence collapse" in html.lower() and "data poisoning" in html
    for text in ("95.0%", "100.0%", "94.0%", "0.0%", "94.5%", "60.0%", "precision", "approved", "rejected",
                 "mnist5k", "smallcnn", "badnet", "The attack is defeated", "0 of 2 affected images are still",
                 "from 95.0% to 94.0% (-1.0 points)"):
        assert text in html, text
    assert re.search(r"<b>9</b><span>approved</span>", html) and re.search(r"<b>1</b><span>rejected</span>", html)
    assert "case &lt;b&gt;42&lt;/b&gt;" in html and "<b>42</b>" not in html  # text is escaped
    assert 'class="tile poison"' in html and 'class="tile rejected"' in html
    assert "Gaussian blur<br>→ 7" in html  # captions break where they are meant to, not mid-word


def test_a_headless_report_speaks_of_no_analyst():
    """No analyst took part: no approved/rejected counts, no 'rejected by the analyst', and it says so."""
    tiles = [ReportImage(np.zeros((1, 28, 28), np.float32), "#0 · label 1\nd 8.1", "poison")]
    html = build_report(_data(n_approved=None, n_rejected=None, flagged_images=tiles))
    text = re.sub(r"<[^>]+>", " ", html)
    assert "No analyst reviewed this set (a headless run): all 10 flagged images were unlearned." in text
    assert "approved" not in text.replace("only approved", "") and "rejected by the analyst" not in text
    reviewed = re.sub(r"<[^>]+>", " ", build_report(_data(n_undecided=2)))
    assert "An analyst reviewed the flagged set: 9 approved, 1 rejected, 2 left undecided" in reviewed
    assert "faded and struck through: rejected by the analyst" in reviewed


def test_the_collapse_section_says_where_the_rule_cut_and_why_panels_are_missing():
    panels = _panels()
    panels.scored = {"flip": 10, "blur": 10, "invert": 10, "color_jitter": 7, "channel_swap": 5}
    html = build_report(_data(panels=panels, threshold=5.58, rule="delta", one_channel=True))
    text = re.sub(r"<[^>]+>", " ", html)
    assert "Its dashed line is where delta cut: d ≥ 5.6 (10 images)." in text
    assert "flagged at d ≥ 2" not in text and "stay near zero" not in text
    assert "colour jitter has no panel: none of its 7 copies broke the attack" in text.lower()
    assert "leaves a one-channel image unchanged, so none of its 5 copies" in text
    assert "scatter on both sides of zero" in text  # what the plot shows, not 'near zero'


def test_images_are_embedded_and_nothing_is_fetched():
    html = build_report(_data())
    sources = _images(html)
    assert len(sources) == 2 + 2 + 3 + 2  # affected, copies, flagged, two figures
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # even an edited copy cannot fetch anything


def test_sections_say_what_is_missing():
    bare = ReportData(_results(unlearned=False) | {"affected_test_indices": []})
    html = build_report(bare)
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    assert "not part of this report" in html and "No affected image" in html and "Nothing was unlearned" in html
    assert _images(html) == []


@pytest.mark.parametrize("kw, words, good", [
    ({}, "The attack is defeated", True),
    ({"psr_after": 0.09, "oracle_psr": 0.09}, "as far as it can be", True),  # SPEC §3: the oracle's floor
    ({"psr_after": 0.12, "oracle_psr": 0.09}, "The attack survives", False),
    ({"psr_after": 0.3, "oracle_psr": None}, "The attack survives", False),
    ({"psr_before": 0.3}, "did not take hold", None),
    ({"unlearned": False}, "Nothing was unlearned", None),
    ({"psr_before": None, "psr_after": None}, "cannot be measured", None),
])
def test_verdicts_follow_the_spec(kw, words, good):
    text, ok = verdict(_results(**kw))
    assert words in text and ok is good


def test_evidence_captions_are_short():
    assert evidence_text("d", 17.4512) == "d 17.5"
    assert evidence_text("d", float("inf")) == "d ∞"
    assert evidence_text("votes of 130", 130.0) == "130/130 votes"
    assert evidence_text("score", 31234.5) == "score 3.12e+04"


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_poisons_are_drawn_over_flagged_rings():
    panels = _panels()
    img = _pixels(collapse_png(panels, _statistic(), poisons=np.arange(6), flagged=np.arange(10)))
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert {hex_to_rgb(POISON), hex_to_rgb(CLEAN), hex_to_rgb(FLAGGED)} <= colours
    # every poison is also flagged: had rings been drawn last, they would cover the orange centres
    alone = _pixels(collapse_png(panels, _statistic(), poisons=np.arange(6), flagged=None))
    orange = np.all(img == hex_to_rgb(POISON), axis=-1).sum()
    assert orange == np.all(alone == hex_to_rgb(POISON), axis=-1).sum() > 0
    grey = _pixels(collapse_png(panels, _statistic(), poisons=None, flagged=None))
    assert not np.all(grey == hex_to_rgb(POISON), axis=-1).any()  # no ground truth: nothing orange


def test_bar_labels_clear_the_success_line():
    img = _pixels(before_after_png({"clean_accuracy": 0.9, "poison_success_rate": 1.0},
                                   {"clean_accuracy": 0.9, "poison_success_rate": 0.0}, "after eu"))
    red = np.all(img == hex_to_rgb("#d62728"), axis=-1)
    line_rows = np.flatnonzero(red.sum(axis=1) > 50)
    assert line_rows.size  # the dashed success line is drawn
    dark = np.all(img < 90, axis=-1)  # text pixels
    band = dark[line_rows.min() - 1: line_rows.max() + 2]
    assert band.sum() == 0  # no label text crosses the line


def test_write_report_is_atomic_and_readable(tmp_path):
    path = write_report(_data(), str(tmp_path / "out" / "report.html"))
    assert open(path, encoding="utf-8").read().startswith("<!DOCTYPE html>")
    assert os.stat(path).st_mode & 0o044  # readable by others (a report is for handing over)
    assert [f for f in os.listdir(tmp_path / "out") if f != "report.html"] == []


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def test_report_renders_offline_with_every_figure_visible(chromium, tmp_path):
    path = write_report(_data(), str(tmp_path / "report.html"))
    profile = tempfile.mkdtemp(prefix="deltainf-report-")
    requests: list[str] = []
    try:
        with chromium.sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                       args=BROWSER_ARGS, viewport={"width": 1200, "height": 900},
                                                       offline=True)
            ctx.on("request", lambda r: requests.append(r.url))
            page = ctx.new_page()
            page.goto(f"file://{path}")
            page.wait_for_load_state("load")
            state = page.evaluate("""() => Array.from(document.images).map(i => {
                const r = i.getBoundingClientRect();
                return {ok: i.complete && i.naturalWidth > 0, w: r.width, h: r.height}; })""")
            assert len(state) == 9 and all(s["ok"] and s["w"] > 0 and s["h"] > 0 for s in state), state
            shot = page.locator("#collapse img").screenshot(path=str(tmp_path / "collapse.png"))
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    seen = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)
    # the scatter as painted on screen shows the orange poisons and the light-blue clean points
    for colour in (POISON, CLEAN):
        assert (np.abs(seen - np.array(hex_to_rgb(colour))).sum(axis=-1) < 40).sum() > 20, colour
    full = np.asarray(Image.open(tmp_path / "report.png").convert("L"))
    assert full.shape[0] > 900 and full.std() > 10


@pytest.mark.slow
def test_collect_from_a_headless_run(pipeline, tiny_scenario, tmp_path):
    results = run_results(pipeline, tiny_scenario)
    data = collect(pipeline, tiny_scenario, results)
    assert len(data.affected) == len(results["affected_test_indices"]) and data.copies
    assert data.panels is not None and data.panels.n_train == results["poisoned"]["n_train"]
    # the first panel plots the detector's own statistic: what `detect` ranks and flags by
    poisoned = pipeline.poisoned(tiny_scenario)
    source = np.asarray(poisoned.psr_source_indices)
    affected = pipeline.affected_set(tiny_scenario, [int(np.flatnonzero(source == t)[0])
                                                     for t in results["affected_test_indices"]])
    detection = pipeline.detect(tiny_scenario, affected)
    np.testing.assert_array_equal(data.statistic, detection.scores)
    assert data.statistic_name == "d" and data.rule == "delta"
    flagged = np.asarray(results["detection"]["flagged"])
    assert data.threshold == pytest.approx(float(detection.scores[flagged].min()))  # the line where the rule cut
    assert data.n_approved is None and data.n_rejected is None and not data.reviewed  # no analyst took part
    assert len(data.flagged_images) == min(96, results["detection"]["n_flagged"])
    shown = [int(im.caption.split()[0][1:]) for im in data.flagged_images]
    assert set(shown) <= set(results["detection"]["flagged"])
    d = [float(im.caption.split("\nd ")[1].replace("∞", "inf")) for im in data.flagged_images]
    assert d == sorted(d, reverse=True)  # strongest evidence first
    html = open(write_report(data, str(tmp_path / "r.html")), encoding="utf-8").read()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    assert len(_images(html)) == len(data.affected) + len(data.copies) + len(data.flagged_images) + 2
