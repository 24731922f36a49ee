"""What a flagging rule looks at: one scoring pass of the collapse queries.

``CollapseEvidence`` is the score matrix with what each row is and what the model
predicted for it; its collapse statistics are computed once per pass and shared by
the rule, the scatter and Triage (``evidence.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import ConfigError
from .queries import CollapseQueries
from .statistics import CollapseStats, broken_copies, collapse_stats


@dataclass
class CollapseEvidence:
    """One influence pass over the collapse queries.

    scores: ``[n_query, n_train]`` float32, ``scores[q, i]`` = influence of training
        image ``i`` on query ``q``.
    queries: what each row is (original or copy, of which affected image, which transformation).
    predicted: the model's label for every query (which copies broke the attack); None
        when unknown, which rules that count broken copies refuse.
    target_class: the class the affected images are wrongly predicted as.
    label_check: asks the model how it labels transformed training images
        (``label_consistency.LabelCheck``); None for saved scores without the model,
        which rules that check labels refuse.
    heldout: retrains the model without given training images and asks it about them
        (``heldout.HeldOutRetrain``); None where no retraining is possible, which
        ``delta_heldout`` refuses.
    """

    scores: np.ndarray
    queries: CollapseQueries
    predicted: np.ndarray | None
    target_class: int
    label_check: Any = None
    heldout: Any = None

    @property
    def n_train(self) -> int:
        return int(self.scores.shape[1])

    @cached_property
    def broken(self) -> np.ndarray | None:
        """Mask over query rows of the copies that broke the attack (``broken_copies``)."""
        if self.predicted is None:
            return None
        return broken_copies(self.queries, self.predicted, self.target_class)

    @cached_property
    def stats(self) -> CollapseStats:
        """Sufficient statistics of the collapse, kept = broken copies (computed once)."""
        return collapse_stats(self.scores, self.queries, self.broken)

    def require_predictions(self, why: str) -> np.ndarray:
        if self.broken is None:
            raise ConfigError(f"{why} needs the model's prediction for every query")
        return self.broken

    def break_rates(self, transforms: Sequence[str], why: str = "a break rate") -> np.ndarray:
        """``[T]`` share of each transformation's copies the model no longer calls the target
        (what Triage shows per column, and what decides which transformations broke the attack)."""
        self.require_predictions(why)
        q = self.queries
        left = ~q.is_original & (np.asarray(self.predicted) != self.target_class)
        return np.array([left[q.transform == t].mean() for t in transforms], dtype=np.float64)

    def restricted(self, transforms: Sequence[str] | None) -> CollapseEvidence:
        """The originals plus the copies of ``transforms`` only (all when None)."""
        if transforms is None:
            return self
        q = self.queries
        rows = np.flatnonzero(q.is_original | np.isin(q.transform, list(transforms)))
        predicted = None if self.predicted is None else np.asarray(self.predicted)[rows]
        return CollapseEvidence(np.asarray(self.scores)[rows], q.subset(rows), predicted, self.target_class,
                                self.label_check, self.heldout)


@dataclass
class LabelBreaks:
    """Each image's label-break rate and the transformations it is taken over.

    rate: ``[n]`` share of the image's own transformed copies, under ``transforms``, that the
        model no longer calls its training label (``label_consistency.LabelCheck``); what
        Triage's tiles, sort and filter show and what ``delta_label`` splits.
    transforms: the transformations that broke the attack (most of the affected images'
        copies are no longer called the target); empty: none did, and ``rate`` is all NaN.
    """

    rate: np.ndarray
    transforms: list[str]


def attack_breaking_transforms(evidence: CollapseEvidence, transforms: Sequence[str] | None = None,
                               min_share: float = 0.5) -> list[str]:
    """The transformations that broke the attack: most of their copies are no longer called the target."""
    present = evidence.queries.transforms_present()
    names = present if transforms is None else [t for t in present if t in transforms]
    rates = evidence.break_rates(names, "finding the transformations that broke the attack")
    return [t for t, rate in zip(names, rates, strict=True) if rate >= min_share]


def label_break_rate(evidence: CollapseEvidence, indices: Sequence[int] | np.ndarray,
                     transforms: Sequence[str] | None = None, breaking: Sequence[str] | None = None,
                     ) -> LabelBreaks | None:
    """The label-break rate of ``indices`` (forward passes only, memoised by the label check).

    ``breaking``: the transformations to take it over when a rule already chose them (its
    ``info["breaking_transforms"]``); otherwise those of ``transforms`` that broke the attack.
    None when the evidence cannot ask the model (saved scores, no predictions).
    """
    if evidence.label_check is None or evidence.predicted is None:
        return None
    chosen = list(breaking) if breaking is not None else attack_breaking_transforms(evidence, transforms)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not chosen or idx.size == 0:
        return LabelBreaks(np.full(idx.size, np.nan), chosen)
    return LabelBreaks(evidence.label_check.break_rates(idx, chosen).mean(axis=1), chosen)


def rule_cut(statistic: np.ndarray, flagged: Sequence[int] | np.ndarray) -> float | None:
    """Where a rule actually cut its statistic: the smallest value it flagged, when the flagged
    set is exactly every image at or above that value (``delta``'s Otsu split, the published
    vote); None when it is not a cut on the statistic (``delta_label`` keeps a subset) or
    nothing is flagged. The line a figure draws, rather than the candidate floor."""
    flagged = np.asarray(flagged, dtype=np.int64)
    if flagged.size == 0:
        return None
    v = np.nan_to_num(np.asarray(statistic, dtype=np.float64), nan=-np.inf)
    cut = float(v[flagged].min())
    if not np.isfinite(cut) or int((v >= cut).sum()) != flagged.size:
        return None
    return cut


@dataclass
class TransformCollapse:
    """Per flagged image, its collapse on each transformation: the evidence Triage shows.

    indices: the training images described (rows), in the order asked.
    transforms: the transformations (columns) that had counted copies.
    n_copies: ``[T]`` copies of each transformation the rule counted.
    break_rate: ``[T]`` share of each transformation's copies the model no longer calls
        the target (None when the predictions are unknown; an affected image with too few
        broken copies has all of its copies counted, so this is not ``n_copies``' share).
    effect_size: ``[n, T]`` each image's ``d`` over that transformation's counted copies.
    mean_delta: ``[n, T]`` its mean ``Δ`` there (negative: it lost support).
    pooled: ``[n]`` the pooled ``d`` over every counted copy (what ``delta`` thresholds).
    kept_only: whether only broken copies were counted.
    """

    indices: np.ndarray
    transforms: list[str]
    n_copies: np.ndarray
    break_rate: np.ndarray | None
    effect_size: np.ndarray
    mean_delta: np.ndarray
    pooled: np.ndarray
    kept_only: bool

    def rows(self, position: int) -> list[dict]:
        """One image's evidence as JSON-able rows, one per transformation."""
        rate = [None] * len(self.transforms) if self.break_rate is None else self.break_rate.tolist()
        d, delta = self.effect_size[position], self.mean_delta[position]
        return [{"transform": t, "n_copies": int(n), "break_rate": r, "effect_size": _finite(d[j]),
                 "mean_delta": _finite(delta[j])}
                for j, (t, n, r) in enumerate(zip(self.transforms, self.n_copies, rate, strict=True))]


    def table(self, position: int, label_lost: Sequence[float] | None = None,
              breaking: Sequence[str] = ()) -> list[dict]:
        """One image's evidence in words, one row per transformation (what Triage's table shows).

        ``label_lost``: the image's own label-break rate under each transformation
        (``LabelCheck.break_rates``); its tile shows the mean over ``breaking``.
        """
        from .transforms import transform_title

        d, delta = self.effect_size[position], self.mean_delta[position]
        rows = []
        for j, (t, n) in enumerate(zip(self.transforms, self.n_copies, strict=True)):
            row = {"Transformation": transform_title(t),
                   "Copies counted": f"{int(n)} broken" if self.kept_only else f"{int(n)}",
                   "Collapse d": _d_text(float(d[j])), "Mean Δ score (copy − original)": _score_text(float(delta[j]))}
            if self.break_rate is not None:
                row["Breaks the attack (share of affected copies)"] = f"{self.break_rate[j]:.0%}"
            if label_lost is not None:
                row["Label lost on this image's copies"] = f"{float(label_lost[j]):.0%}" + (
                    " (counts in its rate)" if t in breaking else "")
            rows.append(row)
        return rows


def _d_text(d: float) -> str:
    if np.isfinite(d):
        return f"{d:.1f}"
    return "undefined: every copy moved it alike" if d != 0 else "0.0"


def _score_text(v: float) -> str:
    """Raw EK-FAC scores span ±10⁶: three significant digits, thousands separated."""
    if not np.isfinite(v):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def transform_collapse(evidence: CollapseEvidence, indices: Sequence[int] | np.ndarray,
                       transforms: Sequence[str] | None = None, kept_only: bool | None = None) -> TransformCollapse:
    """Each image's collapse per transformation, over the copies the rule counts.

    ``kept_only`` defaults to what the default rule does: broken copies only when the
    predictions are known. The pooled ``d`` is the same number the rule thresholds.
    """
    from .statistics import collapse_panels, effect_size

    kept = evidence.broken is not None if kept_only is None else bool(kept_only)
    if kept:
        evidence.require_predictions("counting broken copies")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    stats = evidence.stats
    panels = collapse_panels(stats, transforms, kept)
    names = panels.transforms
    d = np.stack([effect_size(stats, [t], kept)[idx] for t in names], axis=1) if names else np.zeros((idx.size, 0))
    delta = np.stack([panels.delta[t][idx] for t in names], axis=1) if names else np.zeros((idx.size, 0))
    rate = None if evidence.predicted is None else evidence.break_rates(names)
    pooled = effect_size(stats, transforms, kept)[idx]
    return TransformCollapse(idx, names, np.array([panels.n_copies[t] for t in names], dtype=np.int64), rate,
                             d.astype(np.float64), delta.astype(np.float64), pooled, kept)
