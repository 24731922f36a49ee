"""A stakeholder report of one investigation: a single self-contained HTML file.

Built from plain inputs — the SPEC §3 results dict plus images and the collapse
panels — gathered in ``ReportData``, so the CLI (``run --report``) and the app
(Triage, Unlearn) make the same file. ``collect`` fills it from a finished
headless run; the app fills it from what the analyst has on screen. The figures
are PNGs (``figures.report_png``), the markup is in ``report_html``, the words that are not
about one section (the explainer, the verdict) in ``report_text``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from . import report_html as h
from .collapse import CollapsePanels
from .figures.report_png import before_after_png, collapse_png, png_bytes
from .figures.style import POISON, hex_to_rgb, hidden_panel_notes
from .figures.tiles import framed
from .metrics import SUCCESS_PSR
from .report_text import ATTACK_TOOK_HOLD, EXPLAINER, evidence_text, pct, verdict


@dataclass
class ReportImage:
    """An image for a grid: ``[C, H, W]``/``[H, W]`` in ``[0, 1]`` (array or tensor), caption, look.

    kind: "" (plain), "poison" (a known poison: orange frame) or "rejected" (faded, struck through).
    """

    image: Any
    caption: str
    kind: str = ""


@dataclass
class ReportData:
    """Everything a report shows; only ``results`` is required.

    results: the SPEC §3 results dict (``Pipeline.run`` output, or built by the app).
    affected / copies: the affected image(s) and the first one's transformed copies.
    panels: Figure-2 statistics (``collapse.collapse_panels``) with ``poisons`` (ground
        truth or None) and ``flagged`` (the rule's set, drawn as rings).
    statistic / statistic_name: the rule's own per-image statistic (``RuleResult.statistic``,
        e.g. ``d``) for the first panel; None: no such panel. rule: whose statistic it is.
    threshold: where the rule cut its statistic (``collapse.evidence.rule_cut``), drawn as the
        first panel's dashed line; None: no line (the set is not a cut on it).
    one_channel: the images have one channel (a colour transformation leaves them unchanged).
    flagged_images: the reviewed images, strongest evidence first (captions carry it);
        ``n_flagged_total`` is how many there were when the grid is capped.
    n_approved / n_rejected / n_undecided: the analyst's triage decisions; None: no analyst
        took part (a headless run unlearns every flagged image).
    """

    results: dict
    title: str = "Δ-Influence investigation"
    name: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    affected: list[ReportImage] = field(default_factory=list)
    copies: list[ReportImage] = field(default_factory=list)
    panels: CollapsePanels | None = None
    statistic: np.ndarray | None = None
    statistic_name: str = "d"
    rule: str = ""
    poisons: np.ndarray | None = None
    flagged: np.ndarray | None = None
    threshold: float | None = None
    one_channel: bool = False
    flagged_images: list[ReportImage] = field(default_factory=list)
    n_flagged_total: int | None = None
    n_approved: int | None = None
    n_rejected: int | None = None
    n_undecided: int | None = None

    @property
    def reviewed(self) -> bool:
        """Whether an analyst decided the flagged set (the app) or not (a headless run)."""
        return self.n_approved is not None


# -- sections -------------------------------------------------------------------------------------
def _tiles(images: Sequence[ReportImage]) -> list[h.Tile]:
    out = []
    for im in images:
        tile = framed(im.image, hex_to_rgb(POISON) if im.kind == "poison" else None, min_side=84)
        out.append(h.Tile(png_bytes(tile), im.caption, im.kind))
    return out


def _scenario(results: dict) -> str:
    s, p = results.get("scenario") or {}, results.get("poisoned") or {}
    data = os.path.basename(os.path.normpath(s["data_dir"])) if s.get("data_dir") else s.get("dataset", "?")
    rows = [("Data", str(data)), ("Model", str(s.get("model", "?")) + (
        f" (loaded from {os.path.basename(s['checkpoint'])})" if s.get("checkpoint") else ""))]
    if s.get("attack") and s.get("attack") != "none":
        rows.append(("Attack", f"{s['attack']}, {pct(s.get('poison_frac'))} of the training set poisoned, "
                               f"class {s.get('victim_class')} made to look like class {s.get('target_class')}"))
    else:
        rows.append(("Attack", "unknown (no ground truth)" if s.get("checkpoint") else "none"))
    rows += [("Training images", f"{p.get('n_train', 0):,}"),
             ("Known poisoned images", f"{p['n_poisons']:,}" if p.get("n_poisons") else "unknown")]
    if s.get("epochs") is not None:
        rows.append(("Training", f"{s['epochs']} epochs, seed {s.get('seed', 0)}"))
    rows.append(("Detector / unlearning", f"{s.get('detector', '?')} / {s.get('unlearn', '?')}"))
    return h.kv_table(rows) + h.metrics([("clean test accuracy", pct(p.get("clean_accuracy"))),
                                         ("poison success rate", pct(p.get("poison_success_rate")))])


def _affected(data: ReportData) -> str:
    if not data.affected:
        return h.paragraphs(["No affected image was used (this attack is audited from its known poisons)."], "note")
    body = h.paragraphs([f"{len(data.affected)} affected image{'s' if len(data.affected) > 1 else ''}: test "
                         "images the model gets wrong in the attacker's favour."]) + h.grid(
        _tiles(data.affected), "affected image")
    if data.copies:
        body += h.paragraphs(["The first affected image and transformed copies of it. Caption: alteration → "
                              "the copy's new label (never the attacker's target)."], "caption")
        body += h.grid(_tiles(data.copies), "transformed copy")
    return body


def _collapse(data: ReportData) -> str:
    if data.panels is None:
        return h.paragraphs(["The influence-collapse plots are not part of this report."], "note")
    rule = data.rule or (data.results.get("detection") or {}).get("method") or "the rule"
    png = collapse_png(data.panels, data.statistic, data.statistic_name, data.poisons, data.flagged, data.threshold,
                       rule=rule)
    known = "poisoned training images in orange, clean ones in light blue" if data.poisons is not None \
        else "no ground truth: every training image in grey"
    caption = ("Each point is a training image: across, its influence on the original affected image; down, how "
               "that influence changed on the altered copies (both on a symmetric log scale, labelled in powers of "
               "ten). Poisoned images sit on the lower right of every panel: they supported the original and lose "
               "that support on every copy (down by about as much as they were across); ordinary ones scatter on "
               f"both sides of zero.{_first_panel(data, rule)} {known[0].upper() + known[1:]}; rings mark what "
               "the rule flagged.")
    notes = hidden_panel_notes(data.panels, data.one_channel)
    return h.plot(png, "influence collapse scatter, one panel per transformation", caption) + (
        h.paragraphs(notes, "caption") if notes else "")


def _first_panel(data: ReportData, rule: str) -> str:
    if data.statistic is None:
        return ""
    if data.statistic_name == "d":
        text = (" The first panel is the statistic the rule flags by: each image's effect size d, the mean drop "
                "over its spread, pooled over every counted copy.")
    else:
        text = f" The first panel shows the rule's statistic ({data.statistic_name})."
    if data.threshold is not None:
        n = len(data.flagged) if data.flagged is not None else None
        text += (f" Its dashed line is where {rule} cut: {data.statistic_name} ≥ {data.threshold:.1f}"
                 + (f" ({n:,} images)." if n is not None else "."))
    return text


def _flagged(data: ReportData) -> str:
    det = data.results.get("detection") or {}
    n_flagged = det.get("n_flagged", len(det.get("flagged") or []))
    items = [("flagged", f"{n_flagged:,}")]
    if data.reviewed:
        items += [("approved", f"{data.n_approved:,}"), ("rejected", f"{data.n_rejected or 0:,}")]
        if data.n_undecided:
            items.append(("undecided", f"{data.n_undecided:,}"))
    if det.get("precision") is not None:
        items += [("precision of the flagged set", pct(det["precision"])), ("recall", pct(det.get("recall")))]
    body = h.metrics(items) + h.paragraphs([f"Detector: {_detector_text(det.get('method'))}."], "caption")
    if data.reviewed:
        body += h.paragraphs([f"An analyst reviewed the flagged set: {data.n_approved:,} approved, "
                              f"{data.n_rejected or 0:,} rejected" + (f", {data.n_undecided:,} left undecided"
                                                                      if data.n_undecided else "")
                              + "; only approved images are unlearned."])
    else:
        body += h.paragraphs([f"No analyst reviewed this set (a headless run): all {n_flagged:,} flagged images "
                              "were unlearned."])
    if data.flagged_images:
        total = data.n_flagged_total or len(data.flagged_images)
        more = f" (the {len(data.flagged_images)} strongest of {total:,})" if total > len(data.flagged_images) else ""
        rejected = any(im.kind == "rejected" for im in data.flagged_images)
        body += h.paragraphs([f"Flagged training images, strongest evidence first{more}. Orange frame: a known "
                              "poison" + ("; faded and struck through: rejected by the analyst" if rejected else "")
                              + "."], "caption")
        body += h.grid(_tiles(data.flagged_images), "flagged training image")
    return body


def _detector_text(method: str | None) -> str:
    from .detectors import DETECTORS

    try:
        return f"{method} ({DETECTORS.help(method)})"
    except Exception:  # noqa: BLE001 - an unknown or renamed detector still gets its name printed
        return str(method or "unknown")


def _unlearning(data: ReportData) -> str:
    text, good = verdict(data.results)
    body = h.verdict(text, good)
    un, p = data.results.get("unlearned"), data.results.get("poisoned") or {}
    rounds = data.results.get("rounds") or []
    n_aff = len(data.results.get("affected_test_indices") or [])
    if rounds and rounds[-1].get("affected_still_target") is not None and n_aff:
        still = int(rounds[-1]["affected_still_target"])
        body += h.paragraphs([f"{still} of {n_aff} affected images {'is' if still == 1 else 'are'} still "
                              "classified as the attacker wanted" + (f" after {len(rounds)} rounds." if
                                                                    len(rounds) > 1 else ".")])
    if not un:
        return body
    if p.get("clean_accuracy") is not None and un.get("clean_accuracy") is not None:
        change = 100.0 * (un["clean_accuracy"] - p["clean_accuracy"])
        oracle_text = "" if un.get("oracle_clean_accuracy") is None else (
            f"; a retrain without exactly the true poisons reaches {pct(un['oracle_clean_accuracy'])}")
        body += h.paragraphs([f"Accuracy on ordinary test images went from {pct(p['clean_accuracy'])} to "
                              f"{pct(un['clean_accuracy'])} ({change:+.1f} points){oracle_text}."])
    after_label = f"after {un.get('method', 'unlearning')}"
    rows = [["poisoned model", pct(p.get("clean_accuracy")), pct(p.get("poison_success_rate"))],
            [after_label, pct(un.get("clean_accuracy")), pct(un.get("poison_success_rate"))]]
    oracle = None
    if un.get("oracle_clean_accuracy") is not None:
        oracle = {"clean_accuracy": un["oracle_clean_accuracy"],
                  "poison_success_rate": un.get("oracle_poison_success_rate")}
        rows.append(["oracle retrain (without exactly the true poisons)", pct(oracle["clean_accuracy"]),
                     pct(oracle["poison_success_rate"])])
    body += h.nums_table(["", "clean accuracy", "poison success rate"], rows)
    png = before_after_png(p, un, after_label, oracle, SUCCESS_PSR)
    body += h.plot(png, "clean accuracy and poison success rate before and after unlearning",
                   "The oracle retrain shows what removing exactly the true poisons costs: the part of an accuracy "
                   "change that is retraining noise rather than wrongly removed images." if oracle else "")
    return body


def build_report(data: ReportData) -> str:
    """The report as one HTML string (no script, no external resource)."""
    subtitle = " · ".join(x for x in (data.name, f"generated {data.created}") if x)
    config = (data.results.get("scenario") or {}).get("config") or data.results.get("scenario") or {}
    sections = [
        h.section("explainer", "What influence collapse shows", h.paragraphs(EXPLAINER, "lead")),
        h.section("scenario", "Scenario and model", _scenario(data.results)),
        h.section("affected", "The affected image and its altered copies", _affected(data)),
        h.section("collapse", "Influence collapse", _collapse(data)),
        h.section("flagged", "Flagged training images", _flagged(data)),
        h.section("unlearning", "Before and after unlearning", _unlearning(data)),
        h.section("settings", "Settings", h.details("every setting of this run (JSON)",
                                                    json.dumps(config, indent=2, default=str))),
    ]
    return h.page(data.title, subtitle, sections)


def write_report(data: ReportData, path: str) -> str:
    """Write the report atomically (a reader never sees half a file); returns the path."""
    text = build_report(data)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 keeps the user's umask (mkstemp would make the report private)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# -- filling ReportData from core objects ------------------------------------------------------------
DISPLAY_RULE = "delta"
"""The rule whose statistic the report plots when the run's detector is not a collapse rule."""


def class_label(classes: Sequence[str], c: int) -> str:
    name = classes[c] if 0 <= c < len(classes) else str(c)
    return str(c) if name == str(c) else f"{c} ({name})"


def copy_images(queries: Any, transforms: Sequence[str] | None = None, limit: int = 40) -> list[ReportImage]:
    """The first affected image and its copies whose transformation is in ``transforms``.

    queries: a ``CollapseQueries``; captions read "blur → 3 (cat)".
    """
    from .collapse.transforms import transform_title

    classes = queries.queries.classes
    rows = [i for i in range(len(queries.queries)) if queries.image_of[i] == 0
            and (queries.is_original[i] or transforms is None or queries.transform[i] in transforms)]
    out = []
    for i in rows[:limit]:
        label = class_label(classes, int(queries.queries.labels[i]))
        name = "original" if queries.is_original[i] else transform_title(queries.transform[i])
        out.append(ReportImage(queries.queries.images[i], f"{name}\n→ {label}"))
    return out


def flagged_images(train: Any, indices: Sequence[int], evidence: np.ndarray | None, evidence_name: str = "d",
                   poisons: Sequence[int] | None = None, rejected: Sequence[int] = (),
                   limit: int = 96) -> list[ReportImage]:
    """Grid entries for reviewed training images (``train``: an ``ImageSet``), in the given order."""
    poison, rej = set(np.asarray(poisons if poisons is not None else [], dtype=np.int64).tolist()), set(rejected)
    out = []
    for i in [int(i) for i in indices][:limit]:
        ev = "" if evidence is None else "\n" + evidence_text(evidence_name, float(evidence[i]))
        kind = "rejected" if i in rej else ("poison" if i in poison else "")
        out.append(ReportImage(train.float_batch([i])[0], f"#{i} · label {int(train.labels[i])}{ev}", kind))
    return out


def collect(pipe: Any, scn: Any, results: dict, limit: int = 96) -> ReportData:
    """``ReportData`` for a finished headless run (``results = run_results(pipe, scn)``).

    The scores come from the pipeline's cache (the run just computed them), so this
    adds seconds, not a second influence pass.
    """
    from .collapse import RULES, collapse_panels
    from .collapse.evidence import rule_cut

    poisoned = pipe.poisoned(scn)
    splits = pipe.dataset(scn.data)
    truth = np.asarray(poisoned.poison_indices, dtype=np.int64)
    truth = truth if truth.size else None
    det = results.get("detection") or {}
    flagged = np.asarray(det.get("flagged") or [], dtype=np.int64)
    data = ReportData(results, poisons=truth, flagged=flagged, n_flagged_total=int(flagged.size),
                      one_channel=poisoned.train.image_shape[0] == 1)  # no analyst: no decisions to report
    tests = [int(t) for t in results.get("affected_test_indices") or []]
    if not tests:
        return data
    source = np.asarray(poisoned.psr_source_indices)
    if source.size and all((source == t).any() for t in tests):
        affected = pipe.affected_set(scn, [int(np.flatnonzero(source == t)[0]) for t in tests])
    else:
        affected = splits.test.subset(np.asarray(tests, dtype=np.int64))
    col = pipe.collapse(scn, affected, poisoned.target_class)
    data.affected = [ReportImage(img, f"test #{t}") for img, t in zip(affected.images, tests, strict=True)]
    data.copies = copy_images(col.queries, limit=limit // 2)
    method = det.get("method")
    # The detector's own rule and parameters (the same statistic the run flagged by); a baseline
    # detector's images are shown against the default rule's statistic, without its threshold.
    rule = method if method in RULES else DISPLAY_RULE
    params = RULES.parse_params(rule, scn.detect.params if rule == method else {})
    out = RULES.get(rule)(col, params)
    data.panels = collapse_panels(col.stats, None, kept_only=bool(out.info.get("broken_only", False)))
    data.statistic, data.statistic_name, data.rule = out.statistic, RULES.trait(rule, "statistic"), rule
    evidence, name = None, "score"
    if rule == method:
        data.threshold = rule_cut(out.statistic, out.flagged)
        evidence, name = out.statistic, data.statistic_name
        if name == "votes":
            name = f"votes of {out.info.get('n_copies', '')}".strip()
    if evidence is not None:
        flagged = flagged[np.argsort(-np.nan_to_num(evidence[flagged], nan=-np.inf), kind="stable")]
    data.flagged_images = flagged_images(poisoned.train, flagged, evidence, name, truth, limit=limit)
    return data


__all__ = ["ATTACK_TOOK_HOLD", "EXPLAINER", "ReportData", "ReportImage", "build_report", "collect", "copy_images",
           "evidence_text", "flagged_images", "pct", "verdict", "write_report"]
