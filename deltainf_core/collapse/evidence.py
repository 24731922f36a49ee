"""What a flagging rule looks at: one scoring pass of the collapse queries.

``CollapseEvidence`` is the score matrix with what each row is and what the model
predicted for it; its collapse statistics are computed once per pass and shared by
the rule, the scatter and Triage (``evidence.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import ConfigError
from .queries import CollapseQueries
from .statistics import CollapseStats, broken_copies, collapse_stats


@dataclass
class CollapseEvidence:
    """One influence pass over the collapse queries.

    scores: ``[n_query, n_train]`` float32, ``scores[q, i]`` = influence of training
        image ``i`` on query ``q``.
    queries: what each row is (original or copy, of which affected image, which transformation).
    predicted: the model's label for every query (which copies broke the attack); None
        when unknown, which rules that count broken copies refuse.
    target_class: the class the affected images are wrongly predicted as.
    """

    scores: np.ndarray
    queries: CollapseQueries
    predicted: np.ndarray | None
    target_class: int

    @property
    def n_train(self) -> int:
        return int(self.scores.shape[1])

    @cached_property
    def broken(self) -> np.ndarray | None:
        """Mask over query rows of the copies that broke the attack (``broken_copies``)."""
        if self.predicted is None:
            return None
        return broken_copies(self.queries, self.predicted, self.target_class)

    @cached_property
    def stats(self) -> CollapseStats:
        """Sufficient statistics of the collapse, kept = broken copies (computed once)."""
        return collapse_stats(self.scores, self.queries, self.broken)

    def require_predictions(self, why: str) -> np.ndarray:
        if self.broken is None:
            raise ConfigError(f"{why} needs the model's prediction for every query")
        return self.broken

    def restricted(self, transforms: Sequence[str] | None) -> CollapseEvidence:
        """The originals plus the copies of ``transforms`` only (all when None)."""
        if transforms is None:
            return self
        q = self.queries
        rows = np.flatnonzero(q.is_original | np.isin(q.transform, list(transforms)))
        predicted = None if self.predicted is None else np.asarray(self.predicted)[rows]
        return CollapseEvidence(np.asarray(self.scores)[rows], q.subset(rows), predicted, self.target_class)
