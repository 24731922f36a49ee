"""Δ-Influence with the default, tuning-free rule: pooled effect size of influence collapse."""

from __future__ import annotations

import numpy as np

from ..collapse.queries import build_queries
from ..collapse.rules import collapse_effect_size, effect_size_rule
from ..errors import ConfigError
from .base import Detection, DetectionContext


def collapse_scores(ctx: DetectionContext) -> tuple[np.ndarray, object]:
    """Build the query set and score it in one influence pass (shared with the published rule)."""
    if ctx.influence is None:
        raise ConfigError("Δ-Influence needs an influence scorer")
    queries = build_queries(ctx.affected, ctx.target_class, ctx.collapse)
    ctx.progress(0.0, f"scoring {len(queries.queries)} queries against {len(ctx.train)} training images")
    scores = ctx.influence.scores(queries.queries)
    return scores, queries


def detect(ctx: DetectionContext) -> Detection:
    scores, queries = collapse_scores(ctx)
    d = collapse_effect_size(scores, queries)
    flagged = effect_size_rule(d, ctx.cfg.effect_size)
    return Detection("delta", flagged, d, {"effect_size": ctx.cfg.effect_size,
                                            "n_queries": len(queries.queries),
                                            "n_affected": queries.n_affected})
