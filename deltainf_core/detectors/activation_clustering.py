"""Activation clustering (Chen et al., 2018): poisons form their own cluster in feature space.

Per training label, the penultimate activations are reduced to ``N_COMPONENTS``
dimensions with PCA and split in two with k-means; a class whose smaller cluster
holds less than ``MAX_POISON_SHARE`` of its images is judged poisoned and that
cluster is flagged (the paper's relative-size criterion). Dirty-label poisons sit
among the target class's images but activate like their source class, hence the
split. No budget is used: the flagged set is whatever the criterion finds.

Matches IBM ART's ``ActivationDefence`` on the same features (Jaccard 0.99, same classes).
The 0.35 threshold sits on a knife edge: on the shared digits a *clean* class split at a
0.34 share and was flagged by both implementations; a class's verdict can flip with the
seed. Read ``info["smaller_cluster_share"]``: a share just under 0.35 is weak evidence.

Score (cluster-size based, so it agrees with the flag rule): ``1 - share of the
image's own cluster within its class``; flagged exactly when ``score > 1 -
MAX_POISON_SHARE``. Classes too small to split score 0.
"""

from __future__ import annotations

import numpy as np

from .base import Detection, DetectionContext
from .features import penultimate_features

N_COMPONENTS = 10
MAX_POISON_SHARE = 0.35  # Chen et al.'s relative-size threshold; not exposed in DetectConfig
MIN_CLASS_SIZE = 4
SEED = 0


def two_clusters(features: np.ndarray) -> np.ndarray:
    """k-means (k=2) labels of PCA-reduced features (0/1 per row)."""
    # scikit-learn (with scipy and pandas) takes seconds to import: only this detector needs it.
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    dims = int(min(N_COMPONENTS, features.shape[0] - 1, features.shape[1]))
    reduced = PCA(n_components=dims, random_state=SEED).fit_transform(features) if dims >= 1 else features
    return KMeans(n_clusters=2, n_init=10, random_state=SEED).fit_predict(reduced)


def cluster_share_scores(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per image ``1 - share of its cluster in its class``; per class the smaller cluster's share."""
    scores = np.zeros(len(labels), dtype=np.float64)
    shares: dict[int, float] = {}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < MIN_CLASS_SIZE:
            continue
        assignment = two_clusters(features[members])
        counts = np.bincount(assignment, minlength=2)
        share = counts / len(members)
        scores[members] = 1.0 - share[assignment]
        shares[int(c)] = float(share.min())
    return scores, shares


def detect(ctx: DetectionContext) -> Detection:
    ctx.progress(0.0, "computing penultimate activations")
    features = penultimate_features(ctx.model, ctx.train)
    scores, shares = cluster_share_scores(features, ctx.train.labels.numpy())
    flagged = np.flatnonzero(scores > 1.0 - MAX_POISON_SHARE).astype(np.int64)
    suspicious = sorted(c for c, s in shares.items() if s < MAX_POISON_SHARE)
    ctx.progress(1.0, f"flagged {len(flagged)} images in {len(suspicious)} class(es)")
    return Detection("activation_clustering", flagged, scores.astype(np.float32),
                     {"max_poison_share": MAX_POISON_SHARE, "n_components": N_COMPONENTS,
                      "smaller_cluster_share": shares, "suspicious_classes": suspicious})
