"""Δ-Influence with the default, tuning-free rule: pooled effect size of influence collapse.

On copies whose prediction left the target (``broken_only``), candidates at
``d ≥ effect_size``, then Otsu's upper group of ``log d`` (``split``); see
``collapse.rules`` for why and what it measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..collapse.queries import CollapseQueries, build_queries
from ..collapse.rules import broken_copies, collapse_effect_size, effect_size_rule, split_rule
from ..config import DetectConfig
from ..errors import ConfigError
from ..training import predict
from .base import Detection, DetectionContext


def collapse_scores(ctx: DetectionContext) -> tuple[np.ndarray, object]:
    """Build the query set and score it in one influence pass (shared with the published rule)."""
    if ctx.influence is None:
        raise ConfigError("Δ-Influence needs an influence scorer")
    queries = build_queries(ctx.affected, ctx.target_class, ctx.collapse)
    ctx.progress(0.0, f"scoring {len(queries.queries)} queries against {len(ctx.train)} training images")
    scores = ctx.influence.scores(queries.queries)
    return scores, queries


def default_rule(scores: np.ndarray, queries: CollapseQueries, predicted: np.ndarray | None,
                 target_class: int, cfg: DetectConfig,
                 transforms: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The default rule on a score matrix: ``(flagged, d, info)``; shared by the detector and the app.

    ``predicted``: the model's label for every query (needed when ``cfg.broken_only``).
    """
    keep = None
    if cfg.broken_only:
        if predicted is None:
            raise ConfigError("the broken-copies rule needs the model's prediction for every query")
        keep = broken_copies(queries, predicted, target_class)
    d = collapse_effect_size(scores, queries, transforms, keep)
    flagged = split_rule(d, cfg.effect_size) if cfg.split else effect_size_rule(d, cfg.effect_size)
    n_used = int(keep[queries.copy_rows()].sum()) if keep is not None else len(queries.copy_rows())
    return flagged, d, {"effect_size": cfg.effect_size, "broken_only": cfg.broken_only, "split": cfg.split,
                        "n_candidates": int((d >= cfg.effect_size).sum()), "n_copies_used": n_used}


def detect(ctx: DetectionContext) -> Detection:
    scores, queries = collapse_scores(ctx)
    predicted = predict(ctx.model, queries.queries.images).numpy() if ctx.cfg.broken_only else None
    flagged, d, info = default_rule(scores, queries, predicted, ctx.target_class, ctx.cfg)
    return Detection("delta", flagged, d, {**info, "n_queries": len(queries.queries),
                                            "n_affected": queries.n_affected})
