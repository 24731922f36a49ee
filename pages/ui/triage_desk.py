"""Triage's desk: the candidates' evidence as one table, its sort, filters, cut and bulk decisions.

The logic is the core's (``investigations.triage``: sort, filter, cut, decisions); this module
builds the table from what the core computed (the rule's statistic, ``collapse.label_break_rate``,
``collapse.transform_collapse``) and draws the controls. Every bulk action acts on the images
the view shows, never on ones a filter hides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from deltainf_core import DETECTORS
from deltainf_core.collapse import transform_collapse
from deltainf_core.collapse.evidence import label_break_rate
from deltainf_core.collapse.transforms import transform_title
from deltainf_core.config import stable_hash
from deltainf_core.figures import STATISTIC_WORDS
from deltainf_core.investigations.triage import (
    APPROVED,
    INDEX,
    LABEL_BREAK,
    REJECTED,
    STATISTIC,
    STATUSES,
    TRANSFORM_PREFIX,
    UNDECIDED,
    TriageTable,
    TriageView,
    apply_cut,
    decide,
    view_order,
)

from .investigation import Active, Flags, candidates, current_collapse, enabled_transforms, memo
from .jobs import pipeline
from .state import keep, session

ss = st.session_state
ALL = "all"


@dataclass
class Desk:
    """What the page shows: the table, the view the widgets describe and its order."""

    table: TriageTable
    view: TriageView
    order: np.ndarray


def counted_only(flags: Flags) -> bool | None:
    """Whether the rule counts broken copies only (None: the evidence's own default)."""
    return flags.info.get("broken_only") if DETECTORS.trait(flags.rule, "collapse_rule") else None


def triage_table(act: Active, flags: Flags) -> TriageTable:
    """The candidates with their evidence, computed once per flagged set and decisions' candidates."""
    cands = candidates(flags)
    res = current_collapse(act)
    transforms = enabled_transforms(res) if res is not None else []
    flags_memo = session().memo.get("flags")  # the flagged set's own signature (rule, settings, collapse)
    sig = stable_hash(cands.tolist(), flags_memo.sig if flags_memo else flags.rule, transforms)

    def build() -> TriageTable:
        train = pipeline().poisoned(act.scenario).train
        s = session()
        flagged = set(flags.flagged.tolist())
        origin = np.array(["flagged" if i in flagged else "added" if i in s.added else "earlier round"
                           for i in cands.tolist()], dtype=object)
        label_break, per_transform = None, {}
        if res is not None and transforms and cands.size:
            tc = transform_collapse(res, cands, transforms, counted_only(flags))
            per_transform = {t: tc.effect_size[:, j] for j, t in enumerate(tc.transforms)}
            with st.spinner("Asking the model how it labels the candidates' transformed copies…"):
                breaks = label_break_rate(res, cands, transforms, flags.info.get("breaking_transforms"))
            if breaks is not None and breaks.transforms:
                label_break = breaks.rate
        return TriageTable(cands, np.asarray(flags.statistic, dtype=np.float64)[cands],
                           train.labels.numpy()[cands], origin, label_break, per_transform)

    return memo("triage_table", sig, build)


def sort_label(key: str, statistic_name: str, rule: str = "", short: bool = False) -> str:
    """A sort key in words (``short``: as an axis title)."""
    if key == STATISTIC:
        words = STATISTIC_WORDS.get(statistic_name or "score", "score")
        return words if short or not rule else f"{words} (what {rule} ranks by)"
    if key == LABEL_BREAK:
        return "label-break rate" + ("" if short else " (share of its transformed copies no longer called its label)")
    if key == INDEX:
        return "training index"
    title = transform_title(key[len(TRANSFORM_PREFIX):])
    return f"{title}: collapse d" + ("" if short else " on its copies alone")


def view_controls(table: TriageTable, flags: Flags, classes: tuple[str, ...]) -> TriageView:
    """Sort and filter widgets → the core's ``TriageView``."""
    keys = table.sort_keys()
    if ss.get("tri_sort") not in keys:
        ss["tri_sort"] = STATISTIC
    a, b, c = st.columns([2.2, 1, 1.3])
    a.selectbox("Sort by (highest first)", keys, **keep("tri_sort"),
                format_func=lambda k: sort_label(k, flags.statistic_name, flags.rule),
                help="the evidence the rule used, or one transformation's collapse alone: a poison collapses on "
                     "every transformation that breaks its trigger, a clean image often on one or two")
    b.selectbox("Show", [ALL, *STATUSES], **keep("tri_status"),
                format_func=lambda v: {ALL: "every candidate", UNDECIDED: "undecided only", APPROVED: "approved only",
                                       REJECTED: "rejected only"}[v])
    present = sorted({int(v) for v in table.label.tolist()})
    ss["tri_labels"] = [v for v in ss.get("tri_labels") or [] if v in present]  # labels a new set lacks go
    c.multiselect("Training labels", present, **keep("tri_labels"), placeholder="every label",
                  format_func=lambda v: classes[v] if v < len(classes) else str(v))
    low = None
    d, e = st.columns(2)
    if table.label_break is not None:
        if not isinstance(ss.get("tri_lbr"), (list, tuple)) or len(ss["tri_lbr"]) != 2:
            ss["tri_lbr"] = [0, 100]
        d.slider("Label-break rate (%)", 0, 100, **keep("tri_lbr"), step=5,
                 help="keep images whose label-break rate lies in this range")
        lo, hi = ss["tri_lbr"]
        low = None if (lo, hi) == (0, 100) else (lo / 100.0, hi / 100.0)
    name = flags.statistic_name or "score"
    e.number_input(f"{name} at least (0 = no filter)", min_value=0.0, step=0.5, **keep("tri_min_stat"),
                   help=f"keep images whose {STATISTIC_WORDS.get(name, name)} is at least this")
    status = None if ss["tri_status"] == ALL else ss["tri_status"]
    return TriageView(sort=ss["tri_sort"], min_statistic=float(ss["tri_min_stat"]) or None, label_break=low,
                      labels=tuple(ss["tri_labels"]) if ss.get("tri_labels") else None, status=status)


def desk(act: Active, flags: Flags, classes: tuple[str, ...]) -> Desk:
    table = triage_table(act, flags)
    view = view_controls(table, flags, classes)
    s = session()
    return Desk(table, view, view_order(table, view, s.approved, s.rejected))


def _decide(indices: list[int], status: str) -> None:
    s = session()
    s.approved, s.rejected = decide(s.approved, s.rejected, indices, status)


def _cut(order: list[int]) -> None:
    s = session()
    s.approved, s.rejected = apply_cut(s.approved, s.rejected, order, min(int(ss["tri_cut"]), len(order)))


def value_text(table: TriageTable, key: str, i: int) -> str:
    """One image's value of a sort key, as the tile and the cut caption say it."""
    v = float(table.column(key)[np.flatnonzero(table.index == i)[0]])
    if key == LABEL_BREAK:
        return "label lost ?" if np.isnan(v) else f"label lost {v:.0%}"
    if key == INDEX:
        return f"#{i}"
    name = "d" if key.startswith(TRANSFORM_PREFIX) else None
    return f"{name or 'value'} {'∞' if np.isinf(v) else f'{v:.1f}'}"


def bulk_controls(dk: Desk) -> None:
    """The cut through the sorted view and the view-wide decisions."""
    order = [int(i) for i in dk.order]
    n = len(order)
    if n == 0:
        st.info("No candidate matches these filters.")
        return
    s = session()
    ss["tri_cut"] = min(max(0, int(ss.get("tri_cut") or 0)), n)
    st.slider("Cut: approve the top k of the images shown, reject the rest", 0, n, step=1, **keep("tri_cut"),
              help="drag to where the evidence drops; the tiles below show where the cut falls")
    k = int(ss["tri_cut"])
    key = dk.view.sort
    at = (f"the last image above it: {value_text(dk.table, key, order[k - 1])}" if k else "nothing above it")
    below = f"the first below it: {value_text(dk.table, key, order[k])}" if k < n else "nothing below it"
    st.caption(f"The cut falls after tile {k} of {n}: {at}; {below}.")
    a, b, c, d = st.columns([1.6, 1, 1, 1])
    a.button(f"Approve the top {k}, reject the other {n - k}", type="primary", key="tri_cut_apply",
             on_click=_cut, args=(order,), icon=":material/content_cut:")
    b.button(f"Approve all {n} shown", key="tri_all_yes", on_click=_decide, args=(order, APPROVED),
             icon=":material/done_all:")
    c.button(f"Reject all {n} shown", key="tri_all_no", on_click=_decide, args=(order, REJECTED),
             icon=":material/remove_done:")
    decided = sum(1 for i in order if i in s.approved or i in s.rejected)
    d.button(f"Undo decisions on the {n} shown", key="tri_all_clear", on_click=_decide, args=(order, UNDECIDED),
             icon=":material/undo:", disabled=decided == 0)
