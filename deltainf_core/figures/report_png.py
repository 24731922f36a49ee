"""The report's figures as PNG, drawn with NumPy and Pillow.

A stakeholder report must open anywhere, offline, printed or mailed: Plotly's
static export needs kaleido and its HTML needs JavaScript (and WebGL for the
scatter), so the Figure-2 panels and the before/after bars are rasterised here.
They use the same statistics, colours and symlog axes as the app's Plotly figures
(``interactive``; both take them from ``style``), so a reader sees the same picture in
both. Points are stamped with NumPy (50,000 points × 8 panels in well under a second); poisons are drawn
last so a flagged ring never hides one.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from ..collapse import CollapsePanels
from .style import (
    CLEAN,
    D_CLIP,
    FLAGGED,
    NEUTRAL,
    POISON,
    THRESHOLD,
    copies_text,
    hex_to_rgb,
    statistic_shown,
    statistic_title,
    symlog,
    symlog_scale,
    symlog_ticks,
    typeface,
)

INK = (40, 40, 40)
GRID = (236, 236, 236)
AXIS = (190, 190, 190)
AFTER = "#2b8cbe"
BEFORE = "#7f7f7f"
ORACLE = "#c7c7c7"
SUCCESS_LINE = "#d62728"


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """Encode an RGB/L array or a PIL image as PNG bytes."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _disk(radius: int, ring: bool = False) -> list[tuple[int, int]]:
    r2 = radius * radius
    inner = (radius - 1.3) ** 2
    return [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)
            if dx * dx + dy * dy <= r2 + radius * 0.8 and (not ring or dx * dx + dy * dy >= inner)]


def _stamp(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int],
           offsets: list[tuple[int, int]], box: tuple[int, int, int, int]) -> None:
    """Set every pixel of a small shape at each (x, y), clipped to the plot box."""
    x0, y0, x1, y1 = box
    for dx, dy in offsets:
        px, py = xs + dx, ys + dy
        keep = (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)
        canvas[py[keep], px[keep]] = colour


def _scale(values: np.ndarray, lo: float, hi: float, a: int, b: int) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return np.rint(a + (np.asarray(values, dtype=np.float64) - lo) / span * (b - a)).astype(np.int64)


def _limits(values: np.ndarray, extra: tuple[float, ...] = ()) -> tuple[float, float]:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    lo = min([0.0, *extra, float(finite.min(initial=0.0))])
    hi = max([0.0, *extra, float(finite.max(initial=0.0))])
    pad = 0.06 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _nice_step(span: float, max_ticks: int = 8) -> float:
    """The smallest of 1, 2, 5 × 10^k giving at most ``max_ticks`` ticks over ``span``."""
    k = 10.0 ** math.floor(math.log10(max(span, 1e-9) / max_ticks))
    return next(m * k for m in (1, 2, 5, 10) if span / (m * k) <= max_ticks)


def collapse_png(panels: CollapsePanels, statistic: np.ndarray | None = None, statistic_name: str = "d",
                 poisons: np.ndarray | None = None, flagged: np.ndarray | None = None,
                 threshold: float | None = None, max_cols: int = 4, panel_w: int = 300, panel_h: int = 230,
                 rule: str = "the rule") -> bytes:
    """The Figure-2 panels (the rule's ``statistic``, then one per transformation) as one PNG.

    Like ``figures.collapse_figure``: the statistic is the rule's own (never recomputed here), the
    dashed line at ``threshold`` is where the rule cut it, and the titles are the app's.
    """
    n = panels.n_train
    names = (["__d__"] if statistic is not None else []) + panels.transforms
    cols = min(max_cols, len(names))
    rows = math.ceil(len(names) / cols)
    left, top, gap_x, gap_y, legend_h = 62, 28, 26, 58, 34
    width = left + cols * panel_w + (cols - 1) * gap_x + 16
    height = legend_h + rows * (top + panel_h + gap_y)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    font, small = typeface(13), typeface(11)
    poison_mask = np.zeros(n, dtype=bool)
    if poisons is not None and len(poisons):
        poison_mask[np.asarray(poisons, dtype=np.int64)] = True
    flag_mask = np.zeros(n, dtype=bool)
    if flagged is not None and len(flagged):
        flag_mask[np.asarray(flagged, dtype=np.int64)] = True
    cx = symlog_scale([panels.original])
    x_all = symlog(panels.original, cx)
    x_lo, x_hi = _limits(x_all)
    cy = symlog_scale(panels.delta.values()) if panels.delta else 1.0
    boxes, texts, lines = [], [], []
    for p, name in enumerate(names):
        r, c = divmod(p, cols)
        bx0 = left + c * (panel_w + gap_x)
        by0 = legend_h + r * (top + panel_h + gap_y) + top
        box = (bx0, by0, bx0 + panel_w - 1, by0 + panel_h - 1)
        if name == "__d__":
            y = statistic_shown(statistic, statistic_name, D_CLIP)
            y_cut = None if threshold is None else float(statistic_shown(np.array([threshold]), statistic_name)[0])
            y_lo, y_hi = _limits(y, () if y_cut is None else (y_cut,))
            step = _nice_step(y_hi - y_lo)
            y_ticks = [(float(v), f"{v:g}") for v in np.arange(math.ceil(y_lo / step) * step, y_hi, step)]
            title = statistic_title(rule, statistic_name, threshold)
            if y_cut is not None:
                ty = int(_scale(np.array([y_cut]), y_lo, y_hi, box[3], box[1])[0])
                lines.append(((box[0], ty, box[2], ty), THRESHOLD, True))
        else:
            y = symlog(panels.delta[name], cy)
            y_lo, y_hi = _limits(y)
            vals, labels = symlog_ticks(cy, y_lo, y_hi)
            y_ticks = list(zip(vals, labels, strict=True))
            k = panels.n_copies.get(name, 0)
            title = copies_text(name, k, panels.scored.get(name, k))
        boxes.append(box)
        canvas[box[1]:box[3] + 1, box[0]:box[2] + 1] = 255
        for v, label in y_ticks:
            py = int(_scale(np.array([v]), y_lo, y_hi, box[3], box[1])[0])
            canvas[py, box[0]:box[2] + 1] = AXIS if v == 0 else GRID
            texts.append(((box[0] - 6, py), label, "rm", small))
        xv, xl = symlog_ticks(cx, x_lo, x_hi, max_ticks=5 if cols > 2 else 7)
        for v, label in zip(xv, xl, strict=True):
            px = int(_scale(np.array([v]), x_lo, x_hi, box[0], box[2])[0])
            canvas[box[1]:box[3] + 1, px] = AXIS if v == 0 else GRID
            texts.append(((px, box[3] + 4), label, "mt", small))
        texts.append((((box[0] + box[2]) // 2, box[1] - 6), title, "mb", font))
        if r == rows - 1 or p + cols >= len(names):
            texts.append((((box[0] + box[2]) // 2, box[3] + 20), "influence on the original", "mt", small))
        xs = _scale(x_all, x_lo, x_hi, box[0], box[2])
        ys = _scale(y, y_lo, y_hi, box[3], box[1])
        groups = [(~poison_mask, hex_to_rgb(NEUTRAL if poisons is None else CLEAN), _disk(2)),
                  (flag_mask, hex_to_rgb(FLAGGED), _disk(5, ring=True)),
                  (poison_mask, hex_to_rgb(POISON), _disk(3))]
        for mask, colour, shape in groups:  # poisons last: a flagged ring never covers one
            _stamp(canvas, xs[mask], ys[mask], colour, shape, box)
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0, y0, x1, y1], outline=AXIS)
    for (x0, y0, x1, y1), colour, dashed in lines:
        for sx in range(x0, x1, 8 if dashed else x1 - x0):
            draw.line([(sx, y0), (min(x1, sx + 4), y1)], fill=hex_to_rgb(colour), width=1)
    for xy, text, anchor, f in texts:
        draw.text(xy, text, fill=INK, font=f, anchor=anchor)
    legend = [("training images", NEUTRAL)] if poisons is None else [("clean", CLEAN), ("poisoned (ground truth)",
                                                                                         POISON)]
    if flag_mask.any():
        legend.append(("flagged by the rule (ring)", FLAGGED))
    x = left
    for label, colour in legend:
        draw.ellipse([x, 10, x + 10, 20], fill=None if "ring" in label else hex_to_rgb(colour),
                     outline=hex_to_rgb(colour), width=2)
        draw.text((x + 16, 15), label, fill=INK, font=font, anchor="lm")
        x += 30 + int(draw.textlength(label, font=font))
    return png_bytes(im)


def before_after_png(before: dict, after: dict, after_label: str, oracle: dict | None = None,
                     success_psr: float = 0.05) -> bytes:
    """Clean accuracy and poison success rate as two bar panels (percent), oracle in grey.

    before/after/oracle: ``{"clean_accuracy": float | None, "poison_success_rate": float | None}``.
    A bar's label moves above the success line rather than being struck through by it.
    """
    oracle = oracle or {}
    width, height, left, top, bottom, gap = 760, 330, 56, 44, 58, 70
    panel_w = (width - left - gap - 20) // 2
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    font, bold, small = typeface(13), typeface(14), typeface(11)
    plot_top, plot_bottom = top, height - bottom

    def y_of(pct: float) -> int:
        return round(plot_bottom - (plot_bottom - plot_top) * min(max(pct, 0.0), 112.0) / 112.0)

    for col, (key, title) in enumerate((("clean_accuracy", "clean test accuracy"),
                                        ("poison_success_rate", "poison success rate"))):
        x0 = left + col * (panel_w + gap)
        x1 = x0 + panel_w
        for tick in (0, 20, 40, 60, 80, 100):
            y = y_of(tick)
            draw.line([(x0, y), (x1, y)], fill=GRID if tick else AXIS)
            draw.text((x0 - 6, y), f"{tick}%", fill=INK, font=small, anchor="rm")
        draw.text(((x0 + x1) // 2, 14), title, fill=INK, font=bold, anchor="mt")
        bars = [("poisoned model", before.get(key), BEFORE), (after_label, after.get(key), AFTER),
                ("oracle retrain", oracle.get(key), ORACLE)]
        bars = [b for b in bars if b[1] is not None]
        line_y = y_of(100.0 * success_psr) if key == "poison_success_rate" and bars else None
        if not bars:
            draw.text(((x0 + x1) // 2, (plot_top + plot_bottom) // 2), "no ground truth: not measurable",
                      fill=(120, 120, 120), font=font, anchor="mm")
        if line_y is not None:
            for sx in range(x0, x1, 10):
                draw.line([(sx, line_y), (min(x1, sx + 5), line_y)], fill=hex_to_rgb(SUCCESS_LINE), width=2)
            draw.text((x1, line_y - 4), f"success < {100 * success_psr:g}%", fill=hex_to_rgb(SUCCESS_LINE),
                      font=small, anchor="rb")
        slot = panel_w // max(1, len(bars))
        for j, (label, value, colour) in enumerate(bars):
            cx = x0 + slot * j + slot // 2
            half = min(44, slot // 3)
            y_top = y_of(100.0 * value)
            draw.rectangle([cx - half, y_top, cx + half, plot_bottom], fill=hex_to_rgb(colour))
            text_y = y_top - 4
            if line_y is not None and line_y - 18 <= text_y <= line_y + 14:
                text_y = line_y - 20  # above the dashed line, never struck through
            draw.text((cx, text_y), f"{100.0 * value:.1f}%", fill=INK, font=font, anchor="mb")
            draw.text((cx, plot_bottom + 8), label, fill=INK, font=small, anchor="mt")
    return png_bytes(im)
