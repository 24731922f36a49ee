"""Fixtures for the collapse tests (synthetic evidence from ``collapse_synthetic``)."""

from __future__ import annotations

import numpy as np
import pytest
from collapse_synthetic import fake_queries, synthetic_scores


@pytest.fixture
def evidence():
    """Scores, queries and a prediction per query where some copies still show the attack (class 0)."""
    from deltainf_core import CollapseEvidence

    q = fake_queries(transforms=("flip", "invert", "blur"))
    s = synthetic_scores()
    pred = np.where(np.random.default_rng(1).random(len(q.is_original)) < 0.3, 0, 2)
    return CollapseEvidence(s, q, pred, 0)
