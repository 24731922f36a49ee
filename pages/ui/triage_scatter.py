"""Triage's evidence scatter: the shown candidates by two pieces of evidence, box- or lasso-selectable,
and the selection approved or rejected in one click.

Each point's ``customdata`` is its training index; a selection maps back through it
(``figures.selected_training_indices``, then ``investigations.triage.selection_among``), never
through per-trace point numbers. AppTest cannot draw a box, so the mapping is tested as plain
functions and the chart itself in headless Chromium.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from deltainf_core.figures import FLAGGED, NEUTRAL, POISON, selected_training_indices
from deltainf_core.investigations.triage import (
    APPROVED,
    INDEX,
    REJECTED,
    STATISTIC,
    UNDECIDED,
    TriageTable,
    decide,
    selection_among,
    statuses,
)

from .investigation import Flags
from .state import session
from .triage_desk import Desk, sort_label

ss = st.session_state
COLOURS = {UNDECIDED: NEUTRAL, APPROVED: "#2ca02c", REJECTED: "#d9d9d9"}


def scatter_figure(table: TriageTable, shown: np.ndarray, x_key: str, y_key: str, x_title: str, y_title: str,
                   approved: set[int], rejected: set[int], poisons: np.ndarray | None) -> go.Figure:
    """One WebGL trace per decision (poisons ringed in orange when known); ``customdata`` = training index."""
    rows = np.flatnonzero(np.isin(table.index, shown))
    x, y = table.column(x_key)[rows], table.column(y_key)[rows]
    finite = np.isfinite(x) & np.isfinite(y)
    rows, x, y = rows[finite], x[finite], y[finite]
    idx = table.index[rows]
    status = statuses(idx, approved, rejected)
    poison = np.isin(idx, poisons) if poisons is not None else np.zeros(idx.size, dtype=bool)
    traces = []
    for name in (UNDECIDED, APPROVED, REJECTED):
        sel = status == name
        if sel.any():
            traces.append(go.Scattergl(
                x=x[sel].astype(np.float32), y=y[sel].astype(np.float32), customdata=idx[sel].astype(np.int32),
                mode="markers", name=name,
                marker={"color": COLOURS[name], "size": 8,
                        "line": {"color": np.where(poison[sel], POISON, FLAGGED).tolist(), "width": 1.5}},
                hovertemplate=f"#%{{customdata}}<br>{x_title} %{{x:.3g}}<br>{y_title} %{{y:.3g}}<extra>{name}</extra>"))
    positive = x.size and bool((x > 0).all())
    fig = go.Figure(traces)
    fig.update_layout(height=380, margin={"l": 60, "r": 20, "t": 30, "b": 50}, dragmode="select",
                      plot_bgcolor="white", legend={"orientation": "h", "y": 1.08},
                      xaxis={"title": x_title + (" (log scale)" if positive else ""), "gridcolor": "#eee",
                             "type": "log" if positive else "linear"},
                      yaxis={"title": y_title, "gridcolor": "#eee"})
    return fig


@st.fragment
def evidence_scatter(dk: Desk, flags: Flags, truth: np.ndarray | None) -> None:
    """The shown candidates by the rule's statistic and a second piece of evidence; a box decides them."""
    options = [k for k in dk.table.sort_keys() if k not in (STATISTIC, INDEX)]
    if not options or dk.order.size == 0:
        return
    with st.expander("Select on an evidence scatter (box or lasso)", expanded=True):
        if ss.get("tri_scatter_y") not in options:
            ss["tri_scatter_y"] = dk.view.sort if dk.view.sort in options else options[0]
        name = flags.statistic_name or "score"
        st.selectbox("Against", options, key="tri_scatter_y",
                     format_func=lambda k: sort_label(k, name, flags.rule))
        x_title, y_title = sort_label(STATISTIC, name, short=True), sort_label(ss["tri_scatter_y"], name, short=True)
        s = session()
        poisons = truth if (truth is not None and ss.get("tri_show_truth")) else None
        fig = scatter_figure(dk.table, dk.order, STATISTIC, ss["tri_scatter_y"], x_title, y_title, s.approved,
                             s.rejected, poisons)
        event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso"), key="tri_scatter",
                                config={"displaylogo": False, "scrollZoom": False})
        chosen = selection_among(dk.order, selected_training_indices(event))
        if chosen.size == 0:
            ring = " (orange ring: a known poison)" if poisons is not None else ""
            st.caption(f"Each point is a candidate shown above{ring}. Drag a box or a lasso around a group to approve "
                       "or reject it at once.")
            return
        rest = dk.order[~np.isin(dk.order, chosen)].tolist()
        st.markdown(f"**{chosen.size} selected** of the {dk.order.size} shown"
                    + (f" ({int(np.isin(chosen, poisons).sum())} known poisons)" if poisons is not None else ""))
        row = st.container(horizontal=True, wrap=True, gap="small")
        if row.button(f"Approve the {chosen.size} selected, reject the other {len(rest)}", type="primary",
                    key="tri_sel_split", icon=":material/rule:"):
            s.approved, s.rejected = decide(s.approved, s.rejected, chosen.tolist(), APPROVED)
            s.approved, s.rejected = decide(s.approved, s.rejected, rest, REJECTED)
            st.rerun()
        if row.button(f"Approve the {chosen.size} selected", key="tri_sel_yes", icon=":material/check:"):
            s.approved, s.rejected = decide(s.approved, s.rejected, chosen.tolist(), APPROVED)
            st.rerun()
        if row.button(f"Reject the {chosen.size} selected", key="tri_sel_no", icon=":material/close:"):
            s.approved, s.rejected = decide(s.approved, s.rejected, chosen.tolist(), REJECTED)
            st.rerun()
