"""Triage's sort, filters, cut, paging, decisions and selection mapping, as plain functions
(``deltainf_core.investigations.triage``; no Streamlit): what the desk does with a thousand tiles."""

from __future__ import annotations

import numpy as np
import pytest

from deltainf_core.figures import selected_training_indices
from deltainf_core.investigations import InvestigationError
from deltainf_core.investigations.triage import (
    APPROVED,
    LABEL_BREAK,
    REJECTED,
    STATISTIC,
    TRANSFORM_PREFIX,
    UNDECIDED,
    TriageTable,
    TriageView,
    apply_cut,
    approved_among,
    cut,
    decide,
    page_of,
    selection_among,
    statuses,
    view_order,
)


def table(n: int = 10, seed: int = 0) -> TriageTable:
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(5000, size=n, replace=False))
    return TriageTable(index, rng.normal(8, 3, n), rng.integers(0, 3, n), np.array(["flagged"] * n, dtype=object),
                       rng.uniform(0, 1, n), {"elastic": rng.normal(10, 5, n), "blur": rng.normal(50, 30, n)})


def test_sorting_by_each_piece_of_evidence_strongest_first():
    t = table()
    for key in t.sort_keys():
        order = view_order(t, TriageView(sort=key))
        values = t.column(key)[np.searchsorted(t.index, order)]
        assert sorted(order.tolist()) == t.index.tolist()  # every candidate, once
        assert np.all(np.diff(values) <= 0), key
    assert view_order(t, TriageView(sort="index", descending=False)).tolist() == t.index.tolist()
    assert set(t.sort_keys()) == {STATISTIC, LABEL_BREAK, "transform:elastic", "transform:blur", "index"}


def test_ties_keep_the_rules_order_and_missing_values_sort_last():
    t = TriageTable(np.array([3, 5, 8, 9]), np.array([1.0, np.inf, 2.0, 5.0]), np.zeros(4, int),
                    np.array(["flagged"] * 4, dtype=object), np.array([0.5, np.nan, 0.5, 0.9]))
    assert view_order(t, TriageView()).tolist() == [5, 9, 8, 3]  # +inf (no spread) is the strongest
    assert view_order(t, TriageView(sort=LABEL_BREAK)).tolist() == [9, 8, 3, 5]  # tie 8/3 by d; NaN last
    assert view_order(t, TriageView(sort=LABEL_BREAK, descending=False)).tolist() == [8, 3, 9, 5]


def test_filters_combine_and_hide_nothing_they_should_keep():
    t = table(200, seed=1)
    view = TriageView(min_statistic=8.0, label_break=(0.25, 0.75), labels=(1, 2))
    order = view_order(t, view)
    pos = np.searchsorted(t.index, order)
    assert (t.statistic[pos] >= 8).all() and ((t.label_break[pos] >= 0.25) & (t.label_break[pos] <= 0.75)).all()
    assert set(t.label[pos].tolist()) <= {1, 2}
    expected = (t.statistic >= 8) & (t.label_break >= 0.25) & (t.label_break <= 0.75) & np.isin(t.label, [1, 2])
    assert len(order) == int(expected.sum()) > 0
    undecided = view_order(t, TriageView(status=UNDECIDED), approved={int(t.index[0])}, rejected={int(t.index[1])})
    assert int(t.index[0]) not in undecided and int(t.index[1]) not in undecided and len(undecided) == 198
    with pytest.raises(InvestigationError, match="decision filter"):
        view_order(t, TriageView(status="maybe"))
    with pytest.raises(InvestigationError, match="label-break range"):
        view_order(t, TriageView(label_break=(0.8, 0.2)))
    with pytest.raises(InvestigationError, match="cannot sort"):
        view_order(t, TriageView(sort=TRANSFORM_PREFIX + "invert"))


def test_paging_shows_every_image_exactly_once_and_decisions_stay_exact():
    """A thousand candidates over pages of 48: a decision on one page never touches another's."""
    t = table(1000, seed=2)
    order = view_order(t, TriageView(sort=LABEL_BREAK))
    pages = [page_of(order, p, 48) for p in range(1, 23)]
    assert pages[0][2] == 21 and pages[-1][1] == 21  # 21 pages; asking past the end shows the last
    seen = np.concatenate([p[0] for p, n in zip(pages[:21], range(21), strict=True)])
    assert seen.tolist() == order.tolist()
    approved, rejected = set(), set()
    for p in range(1, 22):  # approve odd pages, reject even ones, one page at a time
        on_page = page_of(order, p, 48)[0].tolist()
        approved, rejected = decide(approved, rejected, on_page, APPROVED if p % 2 else REJECTED)
    status = statuses(order, approved, rejected)
    expected = np.array([APPROVED if (k // 48) % 2 == 0 else REJECTED for k in range(1000)], dtype=object)
    assert (status == expected).all() and not approved & rejected
    assert len(approved) + len(rejected) == 1000
    assert approved_among(t.index, approved).tolist() == sorted(approved)
    with pytest.raises(InvestigationError, match="at least one image"):
        page_of(order, 1, 0)


def test_the_cut_approves_the_top_k_and_rejects_the_rest_of_the_view_only():
    t = table(20, seed=3)
    view = TriageView(sort="transform:elastic", labels=(0, 1))
    order = view_order(t, view)
    hidden = sorted(set(t.index.tolist()) - set(order.tolist()))
    approved, rejected = {hidden[0]}, {int(order[0])}
    approved, rejected = apply_cut(approved, rejected, order, 3)
    assert approved == {hidden[0], *order[:3].tolist()} and rejected == set(order[3:].tolist())
    assert hidden[0] in approved and not set(hidden[1:]) & (approved | rejected)  # what a filter hides keeps its state
    assert cut(order, 0) == ([], order.tolist()) and cut(order, len(order)) == (order.tolist(), [])
    with pytest.raises(InvestigationError, match="between 0 and"):
        cut(order, len(order) + 1)


def test_decisions_are_exclusive_and_undoable():
    approved, rejected = decide(set(), set(), [1, 2, 3], APPROVED)
    approved, rejected = decide(approved, rejected, [3, 4], REJECTED)
    assert approved == {1, 2} and rejected == {3, 4}
    approved, rejected = decide(approved, rejected, [2, 4], UNDECIDED)
    assert approved == {1} and rejected == {3}
    assert statuses([1, 2, 3], approved, rejected).tolist() == [APPROVED, UNDECIDED, REJECTED]
    with pytest.raises(InvestigationError, match="a decision is one of"):
        decide(approved, rejected, [1], "keep")


def test_a_box_selection_maps_to_candidates_through_customdata():
    """Plotly's selection event: several traces, so point numbers are ambiguous; customdata is the index."""
    event = {"selection": {"points": [
        {"curve_number": 0, "point_index": 0, "customdata": 812},
        {"curve_number": 1, "point_index": 0, "customdata": [17]},  # a trace with array customdata
        {"curve_number": 2, "point_index": 3, "customdata": 4999},  # an image that is not a candidate
        {"curve_number": 0, "point_index": 1, "customdata": 812.0},  # the same image twice
        {"curve_number": 0, "point_index": 2},  # no customdata: ignored
    ]}}
    chosen = selected_training_indices(event)
    assert chosen.tolist() == [17, 812, 4999]
    assert selection_among(np.array([3, 17, 400, 812]), chosen).tolist() == [17, 812]
    assert selection_among(np.array([3, 17]), selected_training_indices(None)).tolist() == []


def test_a_table_refuses_ragged_columns():
    with pytest.raises(ValueError, match="statistic"):
        TriageTable(np.array([1, 2]), np.array([1.0]), np.zeros(2, int), np.array(["flagged"] * 2, dtype=object))
