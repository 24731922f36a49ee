"""Why an image was flagged: its influence collapse on each transformation (UI only).

The Triage page calls ``render_flagged_evidence`` with the tiles it shows; the numbers come
from the core's ``collapse.transform_collapse`` (the same copies and the same ``d`` the rule
used) and ``LabelCheck.break_rates`` (the tile's label-break rate, per transformation), so an
analyst can see whether an image collapsed on every transformation or on one only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from deltainf_core.collapse import CollapseEvidence, TransformCollapse, transform_collapse
from deltainf_core.collapse.evidence import label_break_rate
from deltainf_core.collapse.transforms import transform_title

MAX_ROWS = 200
"""The heatmap shows at most this many images (in the order given)."""
LABELLED_ROWS = 60
"""Up to this many rows each get a label; beyond, the hover names the image."""


def _shade(d: np.ndarray) -> np.ndarray:
    """``sign(d)·log10(1 + |d|)``: d runs from about 2 to several hundred (blur on a poison), so a
    linear scale would paint every poison alike; on this one 5, 15 and 150 stay apart."""
    return np.sign(d) * np.log10(1.0 + np.abs(d))


def _colour_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    values = [v for v in (-100, -10, -2, 0, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if lo <= _shade(v) <= hi]
    return [float(_shade(v)) for v in values], [f"{v:g}" for v in values]


def evidence_heatmap(tc: TransformCollapse, threshold: float | None = None) -> go.Figure:
    """Images (rows, in the order given) × transformations (columns), coloured by that transformation's ``d``.

    A ``d`` that is not finite (every counted copy moved the image's support by the same amount:
    one copy, or a flat Δ) is no effect size at all, so its cell is left blank rather than painted
    at the end of the scale; the hover gives the mean Δ instead. The colour range is the data's
    own (on ``_shade``'s log scale), so nothing saturates; a ``d`` below ``threshold`` (the rule's
    effect size) gets the palest colour.
    """
    rows = np.arange(min(MAX_ROWS, tc.indices.size))
    d = tc.effect_size[rows]
    finite = np.isfinite(d)
    z = np.where(finite, _shade(np.where(finite, d, 0.0)), np.nan)
    shown = np.where(finite, np.vectorize(lambda v: f"{v:.1f}")(np.where(finite, d, 0.0)),
                     "undefined (no spread over the copies)") if d.size else np.zeros((0, 0), dtype=object)
    hover = np.dstack([shown, np.vectorize(lambda v: f"{v:.3g}")(tc.mean_delta[rows])]) if d.size else None
    labels = [f"#{int(i)} (d {tc.pooled[j]:.1f})" for j, i in zip(rows, tc.indices[rows], strict=True)]
    columns = [transform_title(t) for t in tc.transforms]
    broke = ([f"{r:.0%} of the affected images' copies" for r in tc.break_rate] if tc.break_rate is not None
             else ["?"] * len(columns))
    custom = None if hover is None else np.concatenate(
        [hover, np.broadcast_to(np.array(broke, dtype=object)[None, :, None], (*hover.shape[:2], 1))], axis=2)
    lo = float(np.nanmin(z)) if np.isfinite(z).any() else 0.0
    hi = float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
    if threshold is not None and math.isfinite(threshold) and lo < _shade(threshold) < hi:
        lo = float(_shade(threshold))  # below the rule's effect size: the palest colour
    hi = max(hi, lo + 1e-6)
    tickvals, ticktext = _colour_ticks(lo, hi)
    scale = "YlOrRd" if lo >= 0 else "RdBu_r"  # a gain of support (d < 0) is the other colour
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=labels, colorscale=scale, zmin=lo, zmax=hi, **({"zmid": 0.0} if lo < 0 else {}),
        colorbar={"title": "collapse d", "tickvals": tickvals, "ticktext": ticktext}, customdata=custom,
        hoverongaps=True, xgap=1, ygap=1,
        hovertemplate="%{y}<br>%{x} (it broke the attack on %{customdata[2]})<br>collapse d = %{customdata[0]}"
                      "<br>mean Δ score = %{customdata[1]}<extra></extra>"))
    every = len(labels) <= LABELLED_ROWS
    fig.update_layout(height=min(1400, 140 + (18 if every else 6) * len(labels)),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"autorange": "reversed", "tickmode": "array" if every else "auto",
                             **({"tickvals": labels, "ticktext": labels} if every else {"showticklabels": False})},
                      title="Collapse effect size d per transformation (log colour scale)")
    return fig


def render_flagged_evidence(evidence: CollapseEvidence, flagged: Sequence[int] | np.ndarray,
                            transforms: Sequence[str] | None = None, *, kept_only: bool | None = None,
                            threshold: float | None = None, breaking: Sequence[str] | None = None,
                            key: str = "tri_evidence") -> None:
    """The per-transformation collapse of the given images (Triage: the tiles shown), and one image's
    numbers in a table, in words.

    ``transforms`` and ``kept_only`` must be what the rule used (the collapse page's toggles and
    the rule's ``broken_only``); ``breaking`` the transformations its label-break rate is taken
    over (a rule's ``info["breaking_transforms"]``; found here when None).
    """
    flagged = np.asarray(flagged, dtype=np.int64)
    if flagged.size == 0:
        st.caption("Nothing flagged: no evidence to show.")
        return
    tc = transform_collapse(evidence, flagged, transforms, kept_only)
    if not tc.transforms:
        st.caption("No transformed copies were counted, so there is no per-transformation evidence.")
        return
    counted = "broken copies only (the model no longer predicts the target)" if tc.kept_only else "every copy"
    st.subheader("Evidence per transformation")
    st.caption(f"The images on this page, over {counted}: d = mean/std of the drop in support. A poison collapses "
               "on every transformation that breaks the trigger; an image that collapses on one or two only is "
               "weak evidence. Hover a cell for its numbers.")
    st.plotly_chart(evidence_heatmap(tc, threshold), key=f"{key}_heatmap", width="stretch")
    pick = st.selectbox("Evidence for image", tc.indices.tolist(), key=f"{key}_pick", format_func=lambda i: f"#{i}")
    position = int(np.flatnonzero(tc.indices == pick)[0])
    lost, used = None, []
    if evidence.label_check is not None and evidence.predicted is not None:
        lost = evidence.label_check.break_rates([pick], tc.transforms)[0]
        breaks = label_break_rate(evidence, [pick], transforms, breaking)
        used = breaks.transforms if breaks is not None else []
    st.dataframe(tc.table(position, lost, used), hide_index=True, key=f"{key}_table", width="stretch")
    if lost is not None:
        st.caption("Label lost: the share of this image's own transformed copies the model no longer calls its "
                   "training label; its tile shows the mean over the transformations that broke the attack"
                   + (f" ({', '.join(transform_title(t) for t in used)})." if used else " (none did here)."))
