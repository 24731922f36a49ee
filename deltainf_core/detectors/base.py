"""What every detector receives and returns.

A detector sees the model, the training set and the affected test images — never
the ground-truth poison indices — and returns flagged indices plus a per-image
score (higher = more suspicious) so the app can rank and re-threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from torch import nn

from ..config import CollapseConfig, DetectConfig
from ..data.base import ImageSet
from ..training import Progress, no_progress


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


def budget(ctx: DetectionContext) -> int:
    """Number of images a count-based baseline flags: top_k, else the poison budget."""
    if ctx.cfg.top_k is not None:
        return int(ctx.cfg.top_k)
    if ctx.expected_poisons is not None:
        return int(ctx.expected_poisons)
    return max(1, len(ctx.train) // 100)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    k = int(min(max(k, 0), len(scores)))
    return np.sort(np.argsort(-scores, kind="stable")[:k])
