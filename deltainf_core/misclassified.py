"""Which test images does the model get wrong? The analyst's starting point without an attack.

With the analyst's own model there is no trigger and no attack target: the affected
images are test images the model misclassifies, picked by their index in the test
set (ImageFolder order: classes, then files, sorted). The investigation explains the
model's *own* prediction on each, so that prediction becomes the image's label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data.base import ImageSet
from .errors import ConfigError
from .training import predict_logits


@dataclass
class Misclassified:
    """Test images the model gets wrong, in test-set order.

    indices: positions in the test set.
    predicted: the model's class for each (the investigation's target).
    labels: the true class of each.
    confidence: the model's softmax probability of ``predicted`` (for sorting a gallery).
    """

    indices: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def misclassified(model: nn.Module, test: ImageSet, batch_size: int = 256) -> Misclassified:
    """Every test image whose predicted class differs from its label."""
    if len(test) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Misclassified(empty, empty, empty, np.zeros(0, dtype=np.float32))
    logits = predict_logits(model, test.images, batch_size)
    prob, pred = torch.softmax(logits.double(), dim=1).max(dim=1)
    wrong = np.flatnonzero((pred != test.labels).numpy())
    return Misclassified(wrong.astype(np.int64), pred.numpy()[wrong].astype(np.int64),
                         test.labels.numpy()[wrong].astype(np.int64), prob.numpy()[wrong].astype(np.float32))


def affected_by_index(model: nn.Module, test: ImageSet, indices: list[int] | np.ndarray) -> ImageSet:
    """The test images at ``indices``, labelled with the model's predictions (what influence explains).

    ``ConfigError`` for an index outside the test set or given twice; an image the model
    gets right is allowed (the caller may warn: its investigation explains a correct answer).
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ConfigError("give at least one affected test index")
    bad = idx[(idx < 0) | (idx >= len(test))]
    if bad.size:
        raise ConfigError(f"affected test index {int(bad[0])} does not exist (the test set has images "
                          f"0..{len(test) - 1})")
    if len(np.unique(idx)) != idx.size:
        raise ConfigError("each affected test index may be given only once")
    chosen = test.subset(idx)
    predicted = predict_logits(model, chosen.images).argmax(1)
    return ImageSet(chosen.images, predicted, test.classes)


__all__ = ["Misclassified", "affected_by_index", "misclassified"]
