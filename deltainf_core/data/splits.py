"""Stratified splitting and capping shared by the dataset loaders."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so each class keeps its share in the test part."""
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    frac = n_test / len(labels)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[: round(frac * len(idx))])
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def stratified_cap(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """At most ``cap`` indices, classes in proportion; all of them when ``cap`` is None."""
    if cap is None or cap >= len(labels):
        return np.arange(len(labels))
    _, keep = stratified_split(labels, n_test=cap, seed=seed)
    return keep
