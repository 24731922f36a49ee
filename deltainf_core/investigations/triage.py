"""Triage's desk without the desk: the flagged set's evidence as a table, its sort, filters and
cut, and the analyst's decisions — plain functions, so the app and its tests share them.

Why decisions are three-valued: a flagged set is a rule's proposal, and on the default digits
three in four flagged images are clean (158 flagged, 40 poisons). Pre-approving it would unlearn
118 clean images unless the analyst undoes it tile by tile; so an image is *undecided* until
the analyst approves or rejects it, one by one, a filter at a time, a box on a scatter, or with
a cut through the sorted set ("approve the top k, reject the rest"). Only approved images are
unlearned. A headless run has no analyst: it unlearns the rule's set and its report says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .record import InvestigationError

APPROVED, REJECTED, UNDECIDED = "approved", "rejected", "undecided"
STATUSES = (UNDECIDED, APPROVED, REJECTED)

STATISTIC, LABEL_BREAK, INDEX = "statistic", "label_break", "index"
"""Sort keys; a transformation's own collapse sorts as ``"transform:<name>"``."""
TRANSFORM_PREFIX = "transform:"


# -- the evidence table ----------------------------------------------------------------------------
@dataclass
class TriageTable:
    """One row per candidate (flagged ∪ added by hand ∪ removed in earlier rounds).

    index: training indices. statistic: the rule's own per-image statistic (``d``, votes, a
    detector's score). label_break: each image's label-break rate (``collapse.label_break_rate``),
    None where the model cannot be asked. per_transform: transformation -> each image's collapse
    ``d`` over that transformation's counted copies. label: training labels. origin: "flagged",
    "added" or "earlier round".
    """

    index: np.ndarray
    statistic: np.ndarray
    label: np.ndarray
    origin: np.ndarray
    label_break: np.ndarray | None = None
    per_transform: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = np.asarray(self.index, dtype=np.int64)
        n = self.index.size
        for name in ("statistic", "label", "origin"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"triage table: {name} has {len(getattr(self, name))} rows, index has {n}")
        if self.label_break is not None and len(self.label_break) != n:
            raise ValueError("triage table: one label-break rate per row")

    def __len__(self) -> int:
        return int(self.index.size)

    def sort_keys(self) -> list[str]:
        """The keys this table can be sorted by (evidence first)."""
        keys = [STATISTIC] + ([LABEL_BREAK] if self.label_break is not None else [])
        return keys + [TRANSFORM_PREFIX + t for t in self.per_transform] + [INDEX]

    def column(self, key: str) -> np.ndarray:
        """The values a sort key orders by (float64)."""
        if key == STATISTIC:
            return np.asarray(self.statistic, dtype=np.float64)
        if key == LABEL_BREAK and self.label_break is not None:
            return np.asarray(self.label_break, dtype=np.float64)
        if key == INDEX:
            return self.index.astype(np.float64)
        if key.startswith(TRANSFORM_PREFIX) and key[len(TRANSFORM_PREFIX):] in self.per_transform:
            return np.asarray(self.per_transform[key[len(TRANSFORM_PREFIX):]], dtype=np.float64)
        raise InvestigationError(f"cannot sort the flagged set by {key!r}; choose one of {', '.join(self.sort_keys())}")


# -- sort and filter -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TriageView:
    """How the desk shows the candidates: a sort key and filters (None: no filter).

    min_statistic: the rule's statistic at least this. label_break: (low, high) in [0, 1].
    labels: training labels to keep. status: only images with this decision.
    """

    sort: str = STATISTIC
    descending: bool = True
    min_statistic: float | None = None
    label_break: tuple[float, float] | None = None
    labels: tuple[int, ...] | None = None
    status: str | None = None

    def validate(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvestigationError(f"decision filter must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.label_break is not None:
            lo, hi = self.label_break
            if not 0.0 <= lo <= hi <= 1.0:
                raise InvestigationError(f"label-break range must lie in 0..1 with low ≤ high, got {lo}..{hi}")


def view_order(table: TriageTable, view: TriageView, approved: Iterable[int] = (),
               rejected: Iterable[int] = ()) -> np.ndarray:
    """The candidates the view keeps, in its order (ties keep the rule's order: strongest first).

    Missing values (NaN) sort last whichever the direction; ``+inf`` (no spread) counts as the
    strongest evidence.
    """
    view.validate()
    values = table.column(view.sort)
    keep = np.ones(len(table), dtype=bool)
    if view.min_statistic is not None:
        keep &= np.nan_to_num(table.column(STATISTIC), nan=-np.inf) >= view.min_statistic
    if view.label_break is not None and table.label_break is not None:
        lb = np.asarray(table.label_break, dtype=np.float64)
        keep &= (lb >= view.label_break[0] - 1e-12) & (lb <= view.label_break[1] + 1e-12)
    if view.labels is not None:
        keep &= np.isin(table.label, list(view.labels))
    if view.status is not None:
        status = statuses(table.index, approved, rejected)
        keep &= status == view.status
    rank = _rule_rank(table)
    signed = np.where(np.isnan(values), np.inf, -values if view.descending else values)
    order = np.lexsort((rank, signed))  # last key first: by value, ties by the rule's rank
    return table.index[order[keep[order]]]


def _rule_rank(table: TriageTable) -> np.ndarray:
    """Each row's place when sorted by the rule's statistic, strongest first (the tie-break)."""
    stat = np.nan_to_num(table.column(STATISTIC), nan=-np.inf)
    order = np.lexsort((table.index, -stat))
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(table))
    return rank


def page_of(order: Sequence[int] | np.ndarray, page: int, size: int) -> tuple[np.ndarray, int, int]:
    """``(indices on the page, the page clamped to 1..n_pages, n_pages)``: every image is on exactly one page."""
    if size < 1:
        raise InvestigationError(f"a page holds at least one image, got {size}")
    order = np.asarray(order, dtype=np.int64)
    n_pages = max(1, -(-order.size // size))
    page = min(max(1, int(page)), n_pages)
    return order[(page - 1) * size: page * size], page, n_pages


# -- decisions -------------------------------------------------------------------------------------
def statuses(indices: Sequence[int] | np.ndarray, approved: Iterable[int], rejected: Iterable[int]) -> np.ndarray:
    """``"approved"``, ``"rejected"`` or ``"undecided"`` for each index."""
    idx = np.asarray(indices, dtype=np.int64)
    out = np.full(idx.size, UNDECIDED, dtype=object)
    out[np.isin(idx, list(approved))] = APPROVED
    out[np.isin(idx, list(rejected))] = REJECTED
    return out


def decide(approved: set[int], rejected: set[int], indices: Iterable[int], status: str) -> tuple[set[int], set[int]]:
    """New ``(approved, rejected)`` with ``indices`` set to ``status`` (an image is never both)."""
    if status not in STATUSES:
        raise InvestigationError(f"a decision is one of {', '.join(STATUSES)}, got {status!r}")
    chosen = {int(i) for i in indices}
    approved, rejected = set(approved) - chosen, set(rejected) - chosen
    if status == APPROVED:
        approved |= chosen
    elif status == REJECTED:
        rejected |= chosen
    return approved, rejected


def cut(order: Sequence[int] | np.ndarray, k: int) -> tuple[list[int], list[int]]:
    """``(the first k, the rest)`` of a view's order: "approve the top k, reject below this tile"."""
    order = [int(i) for i in np.asarray(order, dtype=np.int64)]
    if not 0 <= k <= len(order):
        raise InvestigationError(f"the cut must lie between 0 and {len(order)}, got {k}")
    return order[:k], order[k:]


def apply_cut(approved: set[int], rejected: set[int], order: Sequence[int] | np.ndarray,
              k: int) -> tuple[set[int], set[int]]:
    """Approve the first ``k`` of ``order`` and reject the rest (images outside it keep their decision)."""
    top, rest = cut(order, k)
    approved, rejected = decide(approved, rejected, top, APPROVED)
    return decide(approved, rejected, rest, REJECTED)


def approved_among(candidates: Sequence[int] | np.ndarray, approved: Iterable[int]) -> np.ndarray:
    """The candidates the analyst approved, sorted: what is unlearned."""
    cands = np.asarray(candidates, dtype=np.int64)
    return np.sort(cands[np.isin(cands, list(approved))])


def selection_among(candidates: Sequence[int] | np.ndarray, selected: Iterable[int]) -> np.ndarray:
    """The selected training indices that are candidates (a box on a scatter of every training
    image may catch images the rule never flagged; bulk decisions apply to candidates only)."""
    cands = np.asarray(candidates, dtype=np.int64)
    return np.sort(cands[np.isin(cands, list(selected))])
