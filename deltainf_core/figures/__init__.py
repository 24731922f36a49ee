"""Every picture the tool draws: the app's Plotly figures, the report's PNGs, the comparison table's PNG.

They draw only numbers the core computed, with one set of colours, axes and words, so the
app and the report show the same picture. Names are imported on first use (PEP 562): a PNG
written headless does not load Plotly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    ".interactive": ("before_after_figure", "collapse_figure", "selected_training_indices"),
    ".style": (
        "CLEAN", "D_CLIP", "FLAGGED", "NEUTRAL", "POISON", "STATISTIC_WORDS", "THRESHOLD", "copies_text",
        "hex_to_rgb", "hidden_panel_notes", "statistic_shown", "statistic_title", "symlog", "symlog_scale",
        "symlog_ticks", "typeface",
    ),
    ".tiles": ("faded", "framed", "to_display"),
    ".report_png": ("before_after_png", "collapse_png", "png_bytes"),
    ".comparison_png": ("DEFAULT_DETECTOR", "FIGURE3_UNLEARNER", "comparison_image", "comparison_png"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
