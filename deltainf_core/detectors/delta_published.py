"""Δ-Influence with the published vote: Δ < th on at least T − n_tolerate copies.

Kept for comparison; the published code tuned ``th`` (0 or −40) and ``n_tolerate``
(0–2) by hand per experiment, which is what the default rule avoids.
"""

from __future__ import annotations

from ..collapse.rules import collapse_votes, delta_scores
from .base import Detection, DetectionContext
from .delta import collapse_scores


def detect(ctx: DetectionContext) -> Detection:
    scores, queries = collapse_scores(ctx)
    delta, _ = delta_scores(scores, queries)
    votes = collapse_votes(delta, ctx.cfg.th)
    flagged = (votes >= delta.shape[0] - ctx.cfg.n_tolerate).nonzero()[0]
    return Detection("delta_published", flagged, votes.astype(float),
                     {"th": ctx.cfg.th, "n_tolerate": ctx.cfg.n_tolerate, "n_copies": int(delta.shape[0])})
