"""Spectral signatures (Tran et al., 2018): poisons dominate the top singular direction of their class.

Per training label, centre the penultimate activations and project each image on the
top right-singular vector; the outlier score is the squared projection. To compare
classes on one scale the score is divided by its class mean (so every class averages
1 and a class whose top direction is carved out by a poison cluster has a few huge
values). The top ``1.5 * budget(ctx)`` images overall are flagged by this within-class
relative score — the paper removes 1.5x the expected number of poisons, per class;
we spend the same 1.5x once, on the classes that look most anomalous, because the
attack's class is not known to the defender.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Detection, DetectionContext, budget, top_k_indices
from .features import penultimate_features

OVERSHOOT = 1.5


def spectral_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared projection on each class's top singular vector, divided by the class mean."""
    scores = np.zeros(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        centred = features[members] - features[members].mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        proj = (centred @ vt[0]) ** 2
        mean = proj.mean()
        scores[members] = proj / mean if mean > 0 else 0.0
    return scores


def detect(ctx: DetectionContext) -> Detection:
    ctx.progress(0.0, "computing penultimate activations")
    features = penultimate_features(ctx.model, ctx.train)
    scores = spectral_scores(features, ctx.train.labels.numpy())
    k = math.ceil(OVERSHOOT * budget(ctx))
    ctx.progress(1.0, f"flagged the top {k}")
    return Detection("spectral", top_k_indices(scores, k), scores.astype(np.float32),
                     {"k": k, "overshoot": OVERSHOOT})
