"""Synthetic collapse evidence with known answers (no model, no influence pass)."""

from __future__ import annotations

import numpy as np
import torch

from deltainf_core import CollapseConfig, ImageSet, build_queries

POISONS = (3, 50, 120)


def synthetic_scores(n_train=200, poisons=POISONS, copies=(50, 20, 20), seed=0, scale=1e5):
    """Score matrix where poisons lose support on every copy; clean images wobble around 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in copies:
        orig = rng.normal(0, 1, n_train) * scale
        orig[list(poisons)] = np.array([5.0, 80.0, 3000.0]) * scale  # wildly different magnitudes
        rows.append(orig)
        for _ in range(n):
            copy = orig + rng.normal(0, 1, n_train) * scale
            copy[list(poisons)] = orig[list(poisons)] * rng.uniform(-0.2, 0.1, len(poisons))
            rows.append(copy)
    return np.stack(rows).astype(np.float32)


def fake_queries(copies=(50, 20, 20), transforms=("flip", "invert")):
    k = len(copies)
    images = torch.rand(k, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    affected = ImageSet(images, torch.zeros(k, dtype=torch.long), tuple("0123"))
    cfg = CollapseConfig(transforms=tuple(transforms), n_copies=copies[0],
                         n_copies_extra=copies[1] if k > 1 else 1, max_affected=k)
    return build_queries(affected, 0, cfg)
