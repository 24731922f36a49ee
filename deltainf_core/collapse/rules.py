"""Flagging rules on the collapse evidence, as a registry.

A rule is ``rule(evidence, params, transforms=None) -> RuleResult``: the flagged training
indices, one statistic per training image (higher = more suspicious; what Triage ranks by
and the collapse page plots) and a JSON-able ``info``. ``transforms`` restricts the copies
to some transformations (the app's toggles). Every rule is also a detector of the same
name (``detectors.collapse_rule``).

The default rule, ``delta``, has no threshold to tune per attack or dataset:

1. **Broken copies only** (``broken_only``): only copies the model no longer predicts as
   the target count (``statistics.broken_copies`` says why).
2. **Candidates** are the images with pooled ``d ≥ effect_size`` (2: the magnitude-aware
   form of the published vote).
3. **Split the candidates** (``split``): the poisons form the top group of ``log d``;
   Otsu's two-group split keeps it.

Measured on mnist5k BadNet (3x3, seeds 0-2, max-pooling small CNN): ``d ≥ 2`` on all
copies flagged 434 / 438 / 433 at precision 0.09 (nearly the whole target class; EU
then lost 5.0 / 4.0 / 1.0 accuracy points); broken copies + split flagged 199 / 80 / 40
at recall 1.00 / 1.00 / 0.95 (docs/flagging-rule.md; the runs are in git history before 42bdad0).

A new rule can be a plain function ``fn(scores, queries, predicted, target_class,
**params) -> (flagged, statistic, info)`` registered in one line with ``register_rule``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..registry import Registry, params_from_signature
from .evidence import CollapseEvidence
from .statistics import delta_scores, effect_size


@dataclass
class RuleResult:
    """flagged: sorted int64 training indices; statistic: ``[n_train]`` evidence per image."""

    flagged: np.ndarray
    statistic: np.ndarray
    info: dict = field(default_factory=dict)


Rule = Callable[[CollapseEvidence, Any, "Sequence[str] | None"], RuleResult]

RULES: Registry[Rule] = Registry("flagging rule", {
    "statistic": "score",  # what the per-image statistic is called in figures and Triage
    "needs_retrain": False,  # retrains the model (minutes): run as a detector with progress, not re-applied live
})


# -- building blocks ---------------------------------------------------------------------------------
def candidates(d: np.ndarray, floor: float) -> np.ndarray:
    """Indices with ``d ≥ floor`` (sorted)."""
    return np.flatnonzero(np.asarray(d) >= floor)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's cut of 1-D ``values`` into two groups (max between-group variance).

    Returns the smallest value of the upper group. Exact over every split point.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < 2:
        return float(x[0]) if n else np.inf
    csum = np.cumsum(x)
    i = np.arange(1, n)  # size of the lower group
    mean_lo = csum[:-1] / i
    mean_hi = (csum[-1] - csum[:-1]) / (n - i)
    between = i * (n - i) * (mean_hi - mean_lo) ** 2
    between[x[1:] == x[:-1]] = -1.0  # never split between equal values
    return float(x[int(np.argmax(between)) + 1]) if between.max() > 0 else float(x[0])


def split_rule(d: np.ndarray, floor: float = 2.0, min_candidates: int = 3, tail_sd: float = 0.0) -> np.ndarray:
    """Candidates ``d ≥ floor``, then the upper group of Otsu's split of their ``log d``.

    Scale-free (a log split is unchanged by multiplying ``d``), no threshold to tune;
    with fewer than ``min_candidates`` candidates there is nothing to split. ``+inf``
    (a perfectly constant collapse) stays in the upper group. ``tail_sd > 0`` also keeps
    the upper group's lower tail (``upper_group_tail``).
    """
    if not floor > 0:
        raise ConfigError(f"splitting log d needs a positive candidate effect size, got {floor}")
    d = np.asarray(d, dtype=np.float64)
    cand = candidates(d, floor)
    log_d = np.log(d[cand])  # every candidate is positive; +inf stays +inf
    finite = np.isfinite(log_d)
    if finite.sum() < min_candidates:
        return cand
    cut = otsu_threshold(log_d[finite])
    if tail_sd > 0:
        cut = upper_group_tail(log_d[finite], cut, tail_sd)
    return cand[log_d >= cut]


def upper_group_tail(values: np.ndarray, cut: float, n_sd: float) -> float:
    """Lower a cut to ``n_sd`` standard deviations below the mean of the group above it (never raise it).

    Otsu's cut sits where the two groups separate best, not where the upper group ends: a
    poison whose collapse is weaker than its fellows' (the smooth attack's spread) can fall
    just below it. The upper group's own spread says how far its tail reaches; a tight
    group (every poison collapsing alike) keeps the cut where it is.
    """
    upper = np.asarray(values, dtype=np.float64)
    upper = upper[np.isfinite(upper) & (upper >= cut)]
    if upper.size < 2:
        return float(cut)
    return float(min(cut, upper.mean() - n_sd * upper.std()))


def collapse_votes(delta: np.ndarray, th: float) -> np.ndarray:
    """How many copies each training image's score dropped below ``th`` on."""
    return (np.asarray(delta) < th).sum(axis=0)


def published_vote(delta: np.ndarray, th: float = 0.0, n_tolerate: int = 1) -> np.ndarray:
    """The published rule: flag when ``Δ < th`` on at least ``T − n_tolerate`` copies."""
    return np.flatnonzero(collapse_votes(delta, th) >= delta.shape[0] - n_tolerate)


# -- the registered rules --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EffectSizeParams:
    effect_size: float = field(default=2.0, metadata={
        "help": "candidates have pooled mean/std of influence collapse >= this (2 works across attacks)",
        "min": 0.5, "max": 6.0, "step": 0.1})
    broken_only: bool = field(default=True, metadata={
        "help": "count only copies the model no longer predicts as the target (a copy that still shows "
                "the attack measures only the relabelling, which every target-class image follows)"})
    split: bool = field(default=True, metadata={
        "help": "keep the upper of two groups of candidates (Otsu's split of log d); off: every candidate"})

    def validate(self) -> None:
        if self.split and not self.effect_size > 0:
            raise ConfigError(f"splitting log d needs a positive candidate effect size, got {self.effect_size}")


def pooled_effect_size_rule(evidence: CollapseEvidence, params: EffectSizeParams,
                            transforms: Sequence[str] | None = None) -> RuleResult:
    """The default rule (module docstring): broken copies, ``d ≥ effect_size``, Otsu split."""
    if params.broken_only:
        evidence.require_predictions("the broken-copies rule")
    stats = evidence.stats
    d = effect_size(stats, transforms, kept_only=params.broken_only)
    flagged = split_rule(d, params.effect_size) if params.split else candidates(d, params.effect_size)
    used = int((stats.counts * stats.selection(transforms, params.broken_only)).sum())
    return RuleResult(flagged, d, {**asdict(params), "threshold": params.effect_size,
                                   "n_candidates": int((d >= params.effect_size).sum()), "n_copies_used": used})


@dataclass(frozen=True)
class PublishedVoteParams:
    th: float = field(default=0.0, metadata={
        "help": "a copy votes when the image's score change Δ is below th (published: 0 or −40)", "step": 10.0})
    n_tolerate: int = field(default=1, metadata={
        "help": "copies allowed not to vote (the published code tuned 0–2 by hand)", "min": 0})

    def validate(self) -> None:
        if self.n_tolerate < 0:
            raise ConfigError(f"n_tolerate counts copies, got {self.n_tolerate}")


def published_vote_rule(evidence: CollapseEvidence, params: PublishedVoteParams,
                        transforms: Sequence[str] | None = None) -> RuleResult:
    """Kept for comparison: flag when ``Δ < th`` on at least ``T − n_tolerate`` of the copies."""
    delta, _ = delta_scores(evidence.scores, evidence.queries, transforms)
    votes = collapse_votes(delta, params.th)
    flagged = np.flatnonzero(votes >= delta.shape[0] - params.n_tolerate)
    return RuleResult(flagged, votes.astype(np.float64), {**asdict(params), "n_copies": int(delta.shape[0]),
                                                          "threshold": delta.shape[0] - params.n_tolerate})


# -- plain functions as rules ----------------------------------------------------------------------------
PureRule = Callable[..., tuple[np.ndarray, np.ndarray, dict]]
"""``fn(scores, queries, predicted, target_class, **params) -> (flagged, statistic, info)``."""


@dataclass(frozen=True)
class FunctionRule:
    """A ``PureRule`` in the registry's signature: the evidence restricted to ``transforms``, unpacked."""

    fn: PureRule

    def __call__(self, evidence: CollapseEvidence, params: Any,
                 transforms: Sequence[str] | None = None) -> RuleResult:
        ev = evidence.restricted(transforms)
        flagged, statistic, info = self.fn(ev.scores, ev.queries, ev.predicted, ev.target_class, **asdict(params))
        return RuleResult(np.unique(np.asarray(flagged, dtype=np.int64)), np.asarray(statistic, dtype=np.float64),
                          dict(info or {}))


def register_rule(name: str, fn: PureRule, help: str, *, params: type | None = None, version: int = 1,
                  statistic: str = "score") -> PureRule:
    """Register a plain rule function in one line.

    ``params``: its parameters dataclass; by default one is made from ``fn``'s keyword
    parameters after the first four (each needs a default and a type annotation).
    """
    RULES.register(name, FunctionRule(fn), help, params=params or params_from_signature(fn, 4, name),
                   version=version, statistic=statistic)
    return fn


RULES.register("delta", pooled_effect_size_rule, "Δ-Influence, pooled effect size of influence collapse (default)",
               params=EffectSizeParams, statistic="d")
RULES.register("delta_published", published_vote_rule, "Δ-Influence, the published vote (th, n_tolerate)",
               params=PublishedVoteParams, statistic="votes")
