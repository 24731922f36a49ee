"""What every detector receives and returns.

A detector sees the model, the training set and the affected test images — never
the ground-truth poison indices — and returns flagged indices plus a per-image
score (higher = more suspicious) so the app can rank and re-threshold. Its
parameters are a dataclass registered with it; the pipeline parses
``DetectConfig.params`` into it before any work (``ctx.params``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from torch import nn

from ..config import CollapseConfig, DetectConfig
from ..data.base import ImageSet
from ..registry import parse_params
from ..training import Progress, no_progress

P = TypeVar("P")


class InfluenceScorer(Protocol):
    """Scores queries against the training set in one pass: ``[n_query, n_train]`` float32."""

    def scores(self, queries: ImageSet) -> np.ndarray: ...


@dataclass
class DetectionContext:
    """Inputs of a detector.

    model: the trained (possibly poisoned) classifier; read-only.
    train: its training set.
    affected: the affected test images; labels are the labels the model predicts
        for them (the attacker's target), which is what influence explains.
    target_class: the class the affected images are (wrongly) predicted as.
    influence: one-pass influence scorer (cached by the pipeline).
    expected_poisons: how many poisons a budget-based baseline should flag when it
        needs a count (the attack's poison budget; never the true indices).
    params: the detector's parameters dataclass, parsed from ``cfg.params`` by the
        pipeline (None: the detector parses ``cfg.params`` itself).
    heldout: retrains without given training images (``collapse.heldout.HeldOutRetrain``);
        None where the caller cannot retrain, which ``delta_heldout`` refuses.
    """

    model: nn.Module
    train: ImageSet
    affected: ImageSet
    target_class: int
    cfg: DetectConfig = field(default_factory=DetectConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    influence: InfluenceScorer | None = None
    expected_poisons: int | None = None
    progress: Progress = no_progress
    params: Any = None
    heldout: Any = None

    def parameters(self, cls: type[P]) -> P:
        """The detector's parameters as ``cls``: as parsed by the pipeline, else from ``cfg.params``."""
        if isinstance(self.params, cls):
            return self.params
        return parse_params(cls, self.cfg.params, f"detector {self.cfg.detector!r}")


@dataclass
class Detection:
    """Flagged training indices (sorted) and a per-training-image suspicion score."""

    method: str
    flagged: np.ndarray
    scores: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_flagged(self) -> int:
        return len(self.flagged)


DetectFn = Callable[[DetectionContext], Detection]


@dataclass(frozen=True)
class BudgetParams:
    """Parameters of the count-based baselines."""

    top_k: int | None = field(default=None, metadata={
        "help": "flag this many images (default: the attack's poison budget, or 1% of the training set)",
        "min": 1})

    def validate(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            from ..errors import ConfigError

            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")


def budget(ctx: DetectionContext) -> int:
    """Number of images a count-based baseline flags: top_k, else the poison budget."""
    top_k = ctx.parameters(BudgetParams).top_k
    if top_k is not None:
        return int(top_k)
    if ctx.expected_poisons is not None:
        return int(ctx.expected_poisons)
    return max(1, len(ctx.train) // 100)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    k = int(min(max(k, 0), len(scores)))
    return np.sort(np.argsort(-scores, kind="stable")[:k])
