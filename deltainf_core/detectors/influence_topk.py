"""Plain EK-FAC baseline: rank training images by their influence on the affected images.

No collapse, no transformed copies: each affected image (with the label the model
predicts, i.e. the attacker's target) is one query. Raw scores span orders of
magnitude between queries (SPEC §4 finding 2), so each query's row is z-scored over
the training set before averaging; the top ``budget(ctx)`` images are flagged.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Detection, DetectionContext, budget, top_k_indices


def standardised_mean(scores: np.ndarray) -> np.ndarray:
    """Mean over queries of each query's scores z-scored across the training set."""
    scores = np.asarray(scores, dtype=np.float64)
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    z = (scores - mean) / np.where(std > 0, std, 1.0)
    return z.mean(axis=0)


def detect(ctx: DetectionContext) -> Detection:
    if ctx.influence is None:
        raise ConfigError("influence_topk needs an influence scorer")
    if len(ctx.affected) == 0:
        raise ConfigError("influence_topk needs at least one affected image")
    ctx.progress(0.0, f"scoring {len(ctx.affected)} affected image(s) against {len(ctx.train)} "
                      "training images")
    scores = np.asarray(ctx.influence.scores(ctx.affected))
    if scores.shape != (len(ctx.affected), len(ctx.train)):
        raise ConfigError(f"influence scores have shape {scores.shape}, expected "
                          f"({len(ctx.affected)}, {len(ctx.train)})")
    per_image = standardised_mean(scores)
    k = budget(ctx)
    ctx.progress(1.0, f"flagged the top {k}")
    return Detection("influence_topk", top_k_indices(per_image, k), per_image.astype(np.float32),
                     {"k": k, "n_queries": len(ctx.affected)})
