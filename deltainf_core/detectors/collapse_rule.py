"""Every collapse rule as a detector: score the collapse queries in one pass, apply the rule.

The rules themselves (and the statistics they use) live in ``collapse``; this adapter
only builds the evidence a rule needs from a ``DetectionContext``, the same way the
pipeline's ``collapse`` stage builds it for the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..collapse import RULES, CollapseEvidence, build_queries
from ..collapse.label_consistency import LabelCheck
from ..errors import ConfigError
from ..training import predict
from .base import Detection, DetectionContext


def collapse_evidence(ctx: DetectionContext) -> CollapseEvidence:
    """Build the query set, score it in one influence pass and predict every query."""
    if ctx.influence is None:
        raise ConfigError("Δ-Influence needs an influence scorer")
    queries = build_queries(ctx.affected, ctx.target_class, ctx.collapse)
    ctx.progress(0.0, f"scoring {len(queries.queries)} queries against {len(ctx.train)} training images")
    scores = ctx.influence.scores(queries.queries)
    predicted = predict(ctx.model, queries.queries.images).numpy()
    return CollapseEvidence(scores, queries, predicted, ctx.target_class,
                            LabelCheck(ctx.model, ctx.train, seed=ctx.collapse.seed), ctx.heldout)


@dataclass(frozen=True)
class RuleDetector:
    """The detector registered under a rule's name (picklable, unlike a closure)."""

    rule: str

    def __call__(self, ctx: DetectionContext) -> Detection:
        params = ctx.parameters(RULES.params(self.rule))
        evidence = collapse_evidence(ctx)
        result = RULES.get(self.rule)(evidence, params)
        return Detection(self.rule, result.flagged, result.statistic,
                         {**result.info, "n_queries": len(evidence.queries.queries),
                          "n_affected": evidence.queries.n_affected})
