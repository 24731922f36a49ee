"""Why an image was flagged: its influence collapse on each transformation (UI only).

The Triage page calls ``render_flagged_evidence``; the numbers come from the core's
``collapse.transform_collapse`` (the same copies and the same ``d`` the rule used), so
an analyst can see whether a clean-looking image collapsed on every transformation or
on one only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from deltainf_core.collapse import CollapseEvidence, TransformCollapse, transform_collapse

MAX_ROWS = 200
"""The heatmap shows at most this many flagged images (strongest pooled d first)."""


def evidence_heatmap(tc: TransformCollapse, threshold: float | None = None) -> go.Figure:
    """Flagged images (rows) x transformations (columns), coloured by that transformation's ``d``.

    A ``d`` that is not finite (the copies counted there all moved the image's support by the same
    amount: one copy, or a flat Δ) is no effect size at all, so its cell is left blank rather than
    painted at the end of the scale; the hover gives the mean Δ instead.
    """
    order = np.argsort(-np.nan_to_num(tc.pooled, posinf=1e12))[:MAX_ROWS]
    d = tc.effect_size[order]
    z = np.where(np.isfinite(d), np.clip(d, -10.0, 10.0), np.nan)
    shown = np.where(np.isfinite(d), np.round(d, 2).astype(str), "undefined (no spread over the copies)")
    hover = np.dstack([shown, np.vectorize(lambda v: f"{v:.3g}")(tc.mean_delta[order])]) if d.size else None
    labels = [f"#{int(i)} (d {tc.pooled[j]:.1f})" for j, i in zip(order, tc.indices[order], strict=True)]
    columns = [t if tc.break_rate is None else f"{t} ({tc.break_rate[k]:.0%} broken)"
               for k, t in enumerate(tc.transforms)]
    fig = go.Figure(go.Heatmap(z=z, x=columns, y=labels, colorscale="RdBu", reversescale=True, zmid=threshold or 0.0,
                               colorbar={"title": "d"}, customdata=hover, hoverongaps=True,
                               hovertemplate="%{y}<br>%{x}<br>d = %{customdata[0]}<br>mean Δ = %{customdata[1]}"
                                             "<extra></extra>"))
    fig.update_layout(height=min(900, 120 + 16 * len(labels)), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis={"autorange": "reversed"}, title="Collapse effect size per transformation")
    return fig


def render_flagged_evidence(evidence: CollapseEvidence, flagged: Sequence[int] | np.ndarray,
                            transforms: Sequence[str] | None = None, *, kept_only: bool | None = None,
                            threshold: float | None = None, key: str = "tri_evidence") -> None:
    """The per-transformation collapse of every flagged image, and one image's numbers in a table.

    ``transforms`` and ``kept_only`` must be what the rule used (the collapse page's toggles and
    the rule's ``broken_only``); ``threshold`` (the rule's effect size) centres the colour scale.
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
    st.caption(f"Influence collapse per transformation over {counted}: d = mean/std of the drop in support. "
               "A poison collapses on every transformation that breaks the trigger; an image that collapses "
               "on one transformation only is weak evidence.")
    st.plotly_chart(evidence_heatmap(tc, threshold), key=f"{key}_heatmap", width="stretch")
    pick = st.selectbox("Evidence for image", tc.indices.tolist(), key=f"{key}_pick", format_func=lambda i: f"#{i}")
    st.dataframe(tc.rows(int(np.flatnonzero(tc.indices == pick)[0])), hide_index=True, key=f"{key}_table")
