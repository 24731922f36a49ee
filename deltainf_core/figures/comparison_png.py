"""A PNG of the comparison table in the paper's Figure 3 style, drawn with Pillow.

Which rows make each figure is said here once: the comparison (``compare``) runs those cells
and writes its Markdown table from the same two names.

Plotly's static export needs a browser-driving extra (kaleido); a table of
coloured cells needs nothing beyond Pillow, which the project already uses.
"""

from __future__ import annotations

import os

from PIL import Image, ImageDraw

from ..config import DetectConfig
from .style import typeface

DEFAULT_DETECTOR = DetectConfig().detector
"""Figure 4 compares unlearners on the default detector's flagged set."""
FIGURE3_UNLEARNER = "eu"
"""Figure 3 unlearns every detector's set with exact unlearning, the gold standard."""

GOOD = (198, 239, 206)
BAD = (255, 199, 206)
NEUTRAL = (235, 235, 235)
INK = (30, 30, 30)


def comparison_png(result: dict, path: str) -> str:
    """Write ``comparison_image(result)`` to ``path``."""
    comparison_image(result).save(path)
    return path


def comparison_image(result: dict) -> Image.Image:
    """Rows = detectors (and unlearners on Δ-Influence's set), columns = attacks.

    Each cell: PSR after unlearning with ✓/× (green when < 5%) and clean accuracy. The
    image is at least as wide as its title (one attack's table is narrower than the title).
    """
    attacks = result["attacks"]
    groups = [("detector", [r for r in result["rows"] if r["unlearner"] == FIGURE3_UNLEARNER])]
    fig4 = [r for r in result["rows"] if r["detector"] == DEFAULT_DETECTOR]
    if len({r["unlearner"] for r in fig4}) > 1:
        groups.append(("unlearner", fig4))
    font, bold = typeface(15), typeface(17)
    cell_w, cell_h, label_w, head_h = 190, 46, 190, 34
    n_rows = sum(len(dict.fromkeys(r[k] for r in rows)) + 1 for k, rows in groups)
    dataset = os.path.basename(os.path.normpath(str(result.get("dataset") or "?")))
    title = f"{dataset} · {result.get('model', '?')} · PSR after unlearning / clean accuracy (%)"
    title_w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=bold))
    width = max(label_w + cell_w * len(attacks) + 20, title_w + 20)
    img = Image.new("RGB", (width, head_h + cell_h * n_rows + 40), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill=INK, font=bold)
    y = head_h + 10
    for key, rows in groups:
        draw.text((10, y + 14), "detector (EU)" if key == "detector" else "unlearner (Δ-Inf.)", fill=INK, font=bold)
        for j, a in enumerate(attacks):
            draw.text((label_w + j * cell_w + 8, y + 14), a, fill=INK, font=bold)
        y += cell_h
        for name in dict.fromkeys(r[key] for r in rows):
            draw.text((10, y + 14), name, fill=INK, font=font)
            for j, a in enumerate(attacks):
                r = next((x for x in rows if x[key] == name and x["attack"] == a), None)
                x0 = label_w + j * cell_w
                if r is None or "error" in r or r.get("psr_after") is None:
                    colour, text = NEUTRAL, "n/a" if r is None else "failed"
                else:
                    colour = GOOD if r["success"] else BAD
                    mark = "✓" if r["success"] else "×"
                    text = f"{mark} {100 * r['psr_after']:.1f} / {100 * r['acc_after']:.1f}"
                draw.rectangle([x0 + 2, y + 2, x0 + cell_w - 2, y + cell_h - 2], fill=colour)
                draw.text((x0 + 10, y + 14), text, fill=INK, font=font)
            y += cell_h
    return img
