"""Evaluation numbers: poison success rate, clean accuracy, detection precision/recall."""

from __future__ import annotations

import numpy as np
from torch import nn

from .attacks.base import PoisonedScenario
from .data.base import ImageSet
from .training import accuracy, predict

SUCCESS_PSR = 0.05
"""An unlearning run succeeds when the poison success rate drops below 5% (the paper's bar)."""


def poison_success_rate(model: nn.Module, poisoned: PoisonedScenario) -> float | None:
    """Share of the attack's evaluation images predicted as the target (None: no such images)."""
    if poisoned.target_class is None or len(poisoned.psr_set) == 0:
        return None
    return float((predict(model, poisoned.psr_set.images) == poisoned.target_class).float().mean())


def clean_accuracy(model: nn.Module, test: ImageSet) -> float:
    return accuracy(model, test)


def still_affected(model: nn.Module, affected: ImageSet, target: int | None) -> int:
    """How many affected images the model still predicts as the attack target (whether another round is due)."""
    if target is None or len(affected) == 0:
        return 0
    return int((predict(model, affected.images).numpy() == target).sum())


def precision_recall(flagged: np.ndarray, poisons: np.ndarray | None) -> tuple[float | None, float | None]:
    """Detection precision and recall against known poison indices (None without ground truth).

    Precision of an empty flagged set is 0 when poisons exist (nothing useful was found).
    """
    if poisons is None or len(poisons) == 0:
        return None, None
    flagged_set = set(np.asarray(flagged).tolist())
    tp = len(flagged_set & set(np.asarray(poisons).tolist()))
    precision = tp / len(flagged_set) if flagged_set else 0.0
    return precision, tp / len(poisons)
