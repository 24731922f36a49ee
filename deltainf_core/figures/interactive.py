"""The app's Plotly figures: the collapse scatter and the before/after bars; no Streamlit here.

Figures only draw numbers the core computed (``collapse.collapse_panels`` and a
rule's statistic); they never derive a statistic themselves.

The collapse scatter follows the paper's Figure 2: one panel per transformation,
each training image a point — x its influence on the original affected image(s),
y how much that influence changed on the transformed, relabelled copies (mean
``Δ`` over that transformation's copies). Poisons sit far right and far below
zero ("influence collapse"); clean images scatter around ``Δ = 0``. A first
panel shows the current rule's statistic (the pooled effect size ``d`` for the
default rule) and its threshold.

Raw EK-FAC scores span ±10⁶, so both score axes use a symmetric log scale
(``style.symlog``) with ticks labelled in raw units. Every trace is
WebGL (``go.Scattergl``) with float32 arrays; ``customdata`` holds the int32
training index, so hovering names the image and a selection maps back to
training images without 50,000 text labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..collapse import CollapsePanels
from .style import (
    CLEAN,
    FLAGGED,
    NEUTRAL,
    POISON,
    THRESHOLD,
    copies_text,
    statistic_shown,
    symlog,
    symlog_scale,
    symlog_ticks,
)


# -- collapse scatter ------------------------------------------------------------------
def _mask(n: int, indices: np.ndarray | None) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if indices is not None and len(indices):
        mask[np.asarray(indices, dtype=np.int64)] = True
    return mask


def _axis_name(kind: str, p: int) -> str:
    return kind if p == 0 else f"{kind}{p + 1}"


def collapse_figure(panels: CollapsePanels, statistic: np.ndarray | None = None, statistic_name: str = "d",
                    statistic_title: str = "", threshold: float | None = None, poisons: np.ndarray | None = None,
                    flagged: np.ndarray | None = None, max_cols: int = 4, panel_height: int = 300) -> go.Figure:
    """Figure-2-style scatter, one WebGL panel per transformation (plus a panel of ``statistic``).

    statistic: the current rule's per-image statistic (None: no such panel), named
        ``statistic_name`` on its axis, with a dashed line at ``threshold`` (where the rule
        actually cut: ``evidence.rule_cut``, not its candidate floor).
    poisons: ground-truth poison indices (orange) or None (all points neutral grey).
    flagged: indices the current rule flags, drawn as dark rings on top.
    The layout is written as one dict (no per-panel ``update_*`` calls), which keeps a
    redraw with 50,000 points × 8 panels well under a second.
    """
    n = panels.n_train
    names: list[str] = (["__d__"] if statistic is not None else []) + panels.transforms
    n_panels = max(1, len(names))
    cols = min(max_cols, n_panels)
    rows = math.ceil(n_panels / cols)
    hgap, vgap = 0.05, (0.14 if rows > 1 else 0.0)
    width = (1.0 - hgap * (cols - 1)) / cols
    height = (1.0 - vgap * (rows - 1)) / rows
    idx = np.arange(n, dtype=np.int32)
    cx = symlog_scale([panels.original])
    x_all = symlog(panels.original, cx)
    cy = symlog_scale(panels.delta.values()) if panels.delta else 1.0
    x_ticks = symlog_ticks(cx, float(x_all.min(initial=0)), float(x_all.max(initial=0)),
                           max_ticks=5 if cols > 2 else 7)

    # Drawn in this order: clean points, then the flagged rings, then the poisons on top, so a
    # ring never hides an orange poison (hollow ring around a filled point).
    groups: list[tuple[str, str, np.ndarray, dict]] = []
    poison_mask = _mask(n, poisons)
    if poisons is None:
        groups.append(("training images", "all", idx, {"color": NEUTRAL, "size": 4, "opacity": 0.7}))
    else:
        groups.append(("clean", "clean", idx[~poison_mask], {"color": CLEAN, "size": 4, "opacity": 0.9}))
    flag_idx = idx[_mask(n, flagged)]
    if flag_idx.size:
        groups.append(("flagged by the rule", "flagged", flag_idx,
                       {"color": "rgba(0,0,0,0)", "size": 11, "line": {"color": FLAGGED, "width": 1.2}}))
    if poisons is not None:
        groups.append(("poisoned (ground truth)", "poison", idx[poison_mask],
                       {"color": POISON, "size": 7, "opacity": 1.0, "line": {"color": "#9a4a00", "width": 0.5}}))

    traces: list[dict] = []
    layout: dict[str, Any] = {}
    annotations: list[dict] = []
    shapes: list[dict] = []
    grid = {"showgrid": True, "gridcolor": "#f0f0f0", "zeroline": True, "zerolinecolor": "#c8c8c8"}
    for p, name in enumerate(names):
        r, c = divmod(p, cols)
        xa, ya = _axis_name("x", p), _axis_name("y", p)
        x0 = c * (width + hgap)
        y1 = 1.0 - r * (height + vgap)
        if name == "__d__":
            y_all = statistic_shown(statistic, statistic_name)
            title = statistic_title or statistic_name
            y_axis = {"title": {"text": statistic_name} if c == 0 else None}
            hover = f"train #%{{customdata}}<br>{statistic_name} %{{y:.2f}}"
            if threshold is not None:  # where the rule cut (``evidence.rule_cut``), drawn where it is shown
                y_cut = float(statistic_shown(np.array([threshold]), statistic_name)[0])
                shapes.append({"type": "line", "xref": f"{xa} domain", "x0": 0, "x1": 1, "yref": ya,
                               "y0": y_cut, "y1": y_cut, "line": {"color": THRESHOLD, "dash": "dash", "width": 1}})
        else:
            y_all = symlog(panels.delta[name], cy)
            k = panels.n_copies.get(name, 0)
            title = copies_text(name, k, panels.scored.get(name, k))
            ticks = symlog_ticks(cy, float(y_all.min(initial=0)), float(y_all.max(initial=0)))
            y_axis = {"tickvals": ticks[0], "ticktext": ticks[1],
                      "title": {"text": "Δ score (copy − original)"} if c == 0 else None}
            hover = "train #%{customdata}"
        for label, group, sel, marker in groups:
            traces.append({
                "type": "scattergl", "mode": "markers", "x": x_all[sel], "y": y_all[sel], "customdata": sel,
                "name": label, "legendgroup": group, "showlegend": p == 0, "marker": marker,
                "xaxis": xa, "yaxis": ya, "hovertemplate": hover + f"<extra>{label}</extra>",
            })
        x_axis = {"domain": [round(x0, 6), min(1.0, round(x0 + width, 6))], "anchor": ya,
                  "tickvals": x_ticks[0], "ticktext": x_ticks[1], "tickangle": 0, **grid}
        if r == rows - 1:
            x_axis["title"] = {"text": "influence on the original"}
        layout[_axis_name("xaxis", p)] = x_axis
        layout[_axis_name("yaxis", p)] = {
            "domain": [max(0.0, round(y1 - height, 6)), min(1.0, round(y1, 6))], "anchor": xa, **grid,
            **{k: v for k, v in y_axis.items() if v is not None},
        }
        annotations.append({"text": title, "xref": "paper", "yref": "paper", "x": x0 + width / 2, "y": y1,
                            "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 12}})
    layout.update(
        height=panel_height * rows + 80, margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0 + 0.06 / rows, "x": 0},
        dragmode="select", hovermode="closest", plot_bgcolor="white", annotations=annotations, shapes=shapes,
    )
    return go.Figure({"data": traces, "layout": layout})


def selected_training_indices(event: Any) -> np.ndarray:
    """Training indices behind a ``st.plotly_chart(on_select="rerun")`` event.

    Reads ``customdata`` (scalar index or ``[index, ...]``) of every selected point:
    per-trace ``point_index`` values are ambiguous when a figure has several traces.
    Accepts the event object, its ``selection`` part, or None; returns sorted unique int64.
    """
    if event is None:
        return np.zeros(0, dtype=np.int64)
    selection = _get(event, "selection", event)
    points = _get(selection, "points", None) or []
    out = []
    for pt in points:
        cd = _get(pt, "customdata", None)
        if cd is None:
            continue
        if isinstance(cd, Mapping):  # plotly.js may send a typed-array-like dict
            cd = list(cd.values())
        first = cd[0] if isinstance(cd, (list, tuple, np.ndarray)) else cd
        try:
            value = float(first)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            out.append(round(value))
    return np.unique(np.asarray(out, dtype=np.int64))


def _get(obj: Any, key: str, default: Any) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


# -- before / after ----------------------------------------------------------------------
def before_after_figure(before: Mapping[str, float | None], after: Mapping[str, float | None],
                        after_label: str = "after unlearning", oracle_accuracy: float | None = None,
                        success_psr: float = 0.05, oracle_psr: float | None = None) -> go.Figure:
    """Clean accuracy and poison success rate, before vs. after, as two bar panels (percent).

    before/after: ``{"clean_accuracy": float, "poison_success_rate": float | None}``.
    oracle_accuracy / oracle_psr: a retrain without exactly the true poisons (grey bars).
    A bar's label sits above the dashed success line when the bar is below it, so a "0.0%"
    is never struck through.
    """
    psr_known = before.get("poison_success_rate") is not None or after.get("poison_success_rate") is not None
    # the success line is named in the panel's title: a label beside it would sit on a bar
    psr_title = f"poison success rate (dashed: success < {100 * success_psr:g}%)" if psr_known else \
        "poison success rate"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("clean test accuracy", psr_title), horizontal_spacing=0.14)
    colours = {"poisoned model": "#7f7f7f", after_label: "#2b8cbe", "oracle retrain": "#c7c7c7"}
    line = 100.0 * success_psr

    def bar(label: str, value: float | None, col: int) -> None:
        if value is None:
            return
        y = 100.0 * value
        above_line = col == 2 and y < line  # its label would sit on the line: lift it just above
        fig.add_trace(go.Bar(
            x=[label], y=[y], marker_color=colours.get(label, "#2b8cbe"), name=label,
            text=None if above_line else [f"{y:.1f}%"], textposition="outside", showlegend=False,
            hovertemplate=f"{label}: %{{y:.1f}}%<extra></extra>",
        ), row=1, col=col)
        if above_line:
            fig.add_annotation(x=label, y=line + 1.5, text=f"{y:.1f}%", showarrow=False, yanchor="bottom",
                               xref="x2", yref="y2")

    bar("poisoned model", before.get("clean_accuracy"), 1)
    bar(after_label, after.get("clean_accuracy"), 1)
    if oracle_accuracy is not None:
        bar("oracle retrain", oracle_accuracy, 1)
    bar("poisoned model", before.get("poison_success_rate"), 2)
    bar(after_label, after.get("poison_success_rate"), 2)
    if psr_known and oracle_psr is not None:
        bar("oracle retrain", oracle_psr, 2)
    if psr_known:
        fig.add_hline(y=line, line={"color": "#d62728", "dash": "dash", "width": 1}, row=1, col=2)
    else:
        fig.add_annotation(text="no ground truth:<br>not measurable", showarrow=False, xref="x2 domain",
                           yref="y2 domain", x=0.5, y=0.5, font={"color": "#777"})
    fig.update_yaxes(range=[0, 112], ticksuffix="%", gridcolor="#eee")
    fig.update_layout(height=340, margin={"l": 50, "r": 20, "t": 50, "b": 40}, plot_bgcolor="white",
                      bargap=0.35)
    return fig
