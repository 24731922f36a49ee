"""What every figure shares, so the app's Plotly figures and the report's PNGs show the same picture.

The colours, the symmetric log axes (raw EK-FAC scores span ±10⁶), a rule's statistic as it is
drawn, the panels' titles in words and the one typeface of every PNG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from PIL import ImageFont

from ..collapse import TRANSFORMS, CollapsePanels
from ..collapse.transforms import transform_title

CLEAN = "#9ecae1"
"""Light blue: clean training images when ground truth is known."""
NEUTRAL = "#a3a3a3"
"""Grey: every training image when there is no ground truth."""
POISON = "#f28e2b"
"""Orange: the attack's poisons (ground truth)."""
FLAGGED = "#3b0f70"
"""Dark purple rings: images the current rule flags (the fill stays visible inside)."""
THRESHOLD = "#444444"

D_CLIP = 12.0
"""Effect sizes are drawn clipped to ±D_CLIP (an item with zero spread has d = ±inf)."""


# -- panels in words -------------------------------------------------------------------
STATISTIC_WORDS = {"d": "collapse effect size d", "votes": "copies whose score dropped (votes)",
                   "score": "detector score"}


def copies_text(transform: str, counted: int, scored: int) -> str:
    """"Invert · 11 of 19 copies counted": a transformation's toggle, panel and reports say it alike."""
    noun = "copy" if (scored if counted != scored else counted) == 1 else "copies"
    n = f"{counted} of {scored} {noun} counted" if counted != scored else f"{counted} {noun}"
    return f"{transform_title(transform)} · {n}"


def statistic_title(rule: str, statistic_name: str, cut: float | None) -> str:
    """The statistic panel's title in words, with where the rule cut (``evidence.rule_cut``)."""
    words = STATISTIC_WORDS.get(statistic_name, statistic_name)
    words = words[0].upper() + words[1:]
    if cut is None:
        return f"{words} · {rule}'s flagged set is not a cut on it"
    shown = "∞" if math.isinf(cut) else f"{cut:.1f}" if statistic_name == "d" else f"{cut:g}"
    return f"{words} · {rule} flags {statistic_name} ≥ {shown}"


def hidden_panel_notes(panels: CollapsePanels, one_channel: bool = False) -> list[str]:
    """One sentence per transformation that was scored but has no panel (no copy counted): why."""
    notes = []
    for t, n in panels.scored.items():
        if t in panels.delta:
            continue
        copies = f"{n} cop{'y' if n == 1 else 'ies'}"
        if one_channel and t in TRANSFORMS and TRANSFORMS.trait(t, "identity_on_gray"):
            why = f"it leaves a one-channel image unchanged, so none of its {copies} broke the attack"
        else:
            why = f"none of its {copies} broke the attack (the model still calls each one the target)"
        title = transform_title(t)
        notes.append(f"{title[:1].upper() + title[1:]} has no panel: {why}, and only copies that broke it are counted.")
    return notes


# -- symmetric log axes ------------------------------------------------------------------
def symlog(values: np.ndarray, c: float) -> np.ndarray:
    """``sign(v) · log10(1 + |v| / c)`` as float32 (0 stays 0, sign is kept)."""
    v = np.asarray(values, dtype=np.float64)
    return (np.sign(v) * np.log10(1.0 + np.abs(v) / c)).astype(np.float32)


def symlog_scale(values: Iterable[np.ndarray], sample: int = 20_000) -> float:
    """A linear-zone width ``c``: the decade just below the 5th percentile of non-zero |values|."""
    mags = np.concatenate([np.abs(np.asarray(v, dtype=np.float64)).ravel()[:sample] for v in values])
    mags = mags[np.isfinite(mags) & (mags > 0)]
    if mags.size == 0:
        return 1.0
    return float(10.0 ** math.floor(math.log10(np.percentile(mags, 5))))


def _superscript(k: int) -> str:
    table = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    return str(k).translate(table)


def symlog_ticks(c: float, lo: float, hi: float, max_per_side: int = 4,
                 max_ticks: int = 7) -> tuple[list[float], list[str]]:
    """Tick positions (in symlog units) and raw-unit labels at 0 and ±powers of ten within ``[lo, hi]``.

    Labels never crowd: 0 is kept, then the largest decades, each at least
    ``(hi − lo) / max_ticks`` away from the ones already kept.
    """
    first = round(math.log10(c))
    decades = []
    for k in range(first, first + 40):
        pos = float(math.log10(1.0 + 10.0**k / c))
        if pos > max(abs(lo), abs(hi)) * 1.02:
            break
        decades.append((k, pos))
    step = max(1, math.ceil(len(decades) / max_per_side))
    decades = decades[::-1][::step][::-1]  # keep the largest decade, thin out the small ones
    vals, text = [0.0], ["0"]
    for k, pos in decades:
        label = f"10{_superscript(k)}"
        if pos <= hi * 1.02:
            vals.append(pos)
            text.append(label)
        if -pos >= lo * 1.02:
            vals.append(-pos)
            text.append(f"−{label}")
    gap = (max(hi, 0.0) - min(lo, 0.0)) / max(1, max_ticks)
    kept: list[tuple[float, str]] = []
    for v, t in sorted(zip(vals, text, strict=True), key=lambda pair: (pair[0] != 0.0, -abs(pair[0]))):
        if all(abs(v - k) >= gap for k, _ in kept):
            kept.append((v, t))
    kept.sort()
    return [v for v, _ in kept], [t for _, t in kept]


def statistic_shown(statistic: np.ndarray, name: str = "d", clip: float = D_CLIP) -> np.ndarray:
    """A rule's statistic as the scatter draws it: NaN as 0, float32; the effect size ``d`` is
    clipped to ``±clip`` (zero spread gives ±inf), other statistics (e.g. vote counts) keep
    their range with infinities drawn at the finite extremes."""
    v = np.nan_to_num(np.asarray(statistic, dtype=np.float64), nan=0.0)
    if name == "d":
        return np.clip(v, -clip, clip).astype(np.float32)
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return np.clip(v, lo, hi).astype(np.float32)


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def typeface(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans where installed (every PNG in one typeface), else Pillow's own."""
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()
