"""Spectral signatures (Tran et al., 2018): poisons dominate the top singular direction of their class.

Per training label, centre the penultimate activations and project each image on the
top right-singular vector; the outlier score is the squared projection. The paper's
defence (``spectral``) removes, *from every class*, the ``1.5 x`` poison bound images
with the largest score: the defender does not know which class was attacked, so each
class pays the overshoot.

``spectral_global`` is a cheaper variant kept for comparison: the score divided by its
class mean (every class averages 1) and one budget of ``1.5 x`` the bound spent over all
classes. It lost recall on the digits (0.80): the poisons inflate their own class mean,
so 28 of the 60 slots went to clean outliers of other classes (2026-11, git history before 42bdad0).
"""

from __future__ import annotations

import math

import numpy as np

from .base import Detection, DetectionContext, budget, top_k_indices
from .features import penultimate_features

OVERSHOOT = 1.5
"""Tran et al. remove 1.5x the poison bound, so a few poisons ranked below clean outliers still go."""


def spectral_projection(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared projection on the top singular vector of each class's centred activations."""
    scores = np.zeros(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        centred = features[members] - features[members].mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        scores[members] = (centred @ vt[0]) ** 2
    return scores


def spectral_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``spectral_projection`` divided by its class mean (classes on one scale)."""
    proj = spectral_projection(features, labels)
    scores = np.zeros_like(proj)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        mean = proj[members].mean()
        scores[members] = proj[members] / mean if mean > 0 else 0.0
    return scores


def per_class_top(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest scores within every class (all of a class smaller than ``k``)."""
    picked = [np.flatnonzero(labels == c)[top_k_indices(scores[labels == c], k)] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, dtype=np.int64)


def detect(ctx: DetectionContext) -> Detection:
    """The paper's defence: the top ``1.5 x`` poison bound of every class."""
    ctx.progress(0.0, "computing penultimate activations")
    labels = ctx.train.labels.numpy()
    scores = spectral_scores(penultimate_features(ctx.model, ctx.train), labels)
    k = math.ceil(OVERSHOOT * budget(ctx))
    flagged = per_class_top(scores, labels, k)
    ctx.progress(1.0, f"flagged the top {k} of each class")
    return Detection("spectral", flagged, scores.astype(np.float32),
                     {"k_per_class": k, "overshoot": OVERSHOOT, "n_classes": int(np.unique(labels).size)})


def detect_global(ctx: DetectionContext) -> Detection:
    """Variant: one ``1.5 x`` budget over all classes, on class-mean-normalised scores."""
    ctx.progress(0.0, "computing penultimate activations")
    scores = spectral_scores(penultimate_features(ctx.model, ctx.train), ctx.train.labels.numpy())
    k = math.ceil(OVERSHOOT * budget(ctx))
    ctx.progress(1.0, f"flagged the top {k}")
    return Detection("spectral_global", top_k_indices(scores, k), scores.astype(np.float32),
                     {"k": k, "overshoot": OVERSHOOT})
