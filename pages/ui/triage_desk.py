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
from .state import Keyed, keep, session

ss = st.session_state
ALL = "all"


@dataclass
class Desk:
    """What the page shows: the table, the view the widgets describe and its order."""

    table: TriageTable
    view: TriageView
    order: np.ndarray
    statistic_name: str = "d"


def counted_only(flags: Flags) -> bool | None:
    """Whether the rule counts broken copies only (None: the evidence's own default)."""
    return flags.info.get("broken_only") if DETECTORS.trait(flags.rule, "collapse_rule") else None


def _signature(act: Active, flags: Flags) -> str:
    cands = candidates(flags)
    res = current_collapse(act)
    flags_memo = session().memo.get("flags")  # the flagged set's own signature (rule, settings, collapse)
    return stable_hash(cands.tolist(), flags_memo.sig if flags_memo else flags.rule,
                       enabled_transforms(res) if res is not None else [])


def label_breaks_measured(act: Active, flags: Flags) -> bool:
    """Whether every candidate's label-break rate is in the table. It costs forward passes through
    seeded transformed copies (0.3 s an image on a 2-core CPU for the digits: a minute for 184, five
    for a thousand), so it is measured for all on request, or when the rule has measured it already
    (``delta_label``: its rates are memoised by the label check); a page's tiles always show theirs."""
    entry = session().memo.get("label_breaks_all")
    return bool(flags.info.get("breaking_transforms")) or (entry is not None and entry.sig == _signature(act, flags))


def measure_label_breaks(act: Active, flags: Flags) -> None:
    session().memo["label_breaks_all"] = Keyed(_signature(act, flags), True)


def triage_table(act: Active, flags: Flags) -> TriageTable:
    """The candidates with their evidence, computed once per flagged set (and once more when every
    label-break rate is measured)."""
    cands = candidates(flags)
    res = current_collapse(act)
    transforms = enabled_transforms(res) if res is not None else []
    with_breaks = label_breaks_measured(act, flags)

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
            if with_breaks:
                with st.spinner(f"Asking the model how it labels the {cands.size} candidates' transformed copies…"):
                    breaks = label_break_rate(res, cands, transforms, flags.info.get("breaking_transforms"))
                if breaks is not None and breaks.transforms:
                    label_break = breaks.rate
        return TriageTable(cands, np.asarray(flags.statistic, dtype=np.float64)[cands],
                           train.labels.numpy()[cands], origin, label_break, per_transform)

    return memo("triage_table", stable_hash(_signature(act, flags), with_breaks), build)


def page_label_breaks(act: Active, flags: Flags, indices: np.ndarray) -> dict[int, float]:
    """The label-break rate of the tiles on a page (all of it known once measured for every candidate)."""
    res = current_collapse(act)
    if res is None or not len(indices):
        return {}
    with st.spinner("Asking the model how it labels these images' transformed copies…"):
        breaks = label_break_rate(res, indices, enabled_transforms(res), flags.info.get("breaking_transforms"))
    if breaks is None or not breaks.transforms:
        return {}
    return dict(zip((int(i) for i in indices), breaks.rate.tolist(), strict=True))


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


def view_controls(act: Active, table: TriageTable, flags: Flags, classes: tuple[str, ...]) -> TriageView:
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
    if table.label_break is None and table.per_transform:
        d.button(f"Measure all {len(table):,} label-break rates to sort and filter by them",
                 key="tri_measure_breaks", on_click=measure_label_breaks, args=(act, flags),
                 icon=":material/speed:", help="forward passes through seeded transformed copies of every "
                 "candidate: about 0.3 s an image on a 2-core CPU (the tiles of a page show theirs already)")
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
    view = view_controls(act, table, flags, classes)
    s = session()
    return Desk(table, view, view_order(table, view, s.approved, s.rejected), flags.statistic_name or "score")


def _decide(indices: list[int], status: str) -> None:
    s = session()
    s.approved, s.rejected = decide(s.approved, s.rejected, indices, status)


def _cut(order: list[int]) -> None:
    s = session()
    s.approved, s.rejected = apply_cut(s.approved, s.rejected, order, min(int(ss["tri_cut"]), len(order)))


def value_text(table: TriageTable, key: str, i: int, statistic_name: str = "d") -> str:
    """One image's value of a sort key, as the tile and the cut caption say it."""
    v = float(table.column(key)[np.flatnonzero(table.index == i)[0]])
    if key == LABEL_BREAK:
        return "label lost ?" if np.isnan(v) else f"label lost {v:.0%}"
    if key == INDEX:
        return f"#{i}"
    name = "d" if key.startswith(TRANSFORM_PREFIX) else statistic_name
    return f"{name} {'∞' if np.isinf(v) else f'{v:.1f}'}"


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
    at = (f"the last image above it: {value_text(dk.table, key, order[k - 1], dk.statistic_name)}" if k
          else "nothing above it")
    below = (f"the first below it: {value_text(dk.table, key, order[k], dk.statistic_name)}" if k < n
             else "nothing below it")
    st.caption(f"The cut falls after tile {k} of {n}: {at}; {below}.")
    row = st.container(horizontal=True, wrap=True, gap="small")  # buttons keep their labels whole
    row.button(f"Approve the top {k}, reject the other {n - k}", type="primary", key="tri_cut_apply",
               on_click=_cut, args=(order,), icon=":material/content_cut:")
    row.button(f"Approve all {n} shown", key="tri_all_yes", on_click=_decide, args=(order, APPROVED),
               icon=":material/done_all:")
    row.button(f"Reject all {n} shown", key="tri_all_no", on_click=_decide, args=(order, REJECTED),
               icon=":material/remove_done:")
    decided = sum(1 for i in order if i in s.approved or i in s.rejected)
    row.button("Undo all shown", key="tri_all_clear", on_click=_decide, args=(order, UNDECIDED),
               icon=":material/undo:", disabled=decided == 0, help=f"the {n} images shown become undecided again")
