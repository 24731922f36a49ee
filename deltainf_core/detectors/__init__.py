"""Detector registry: each entry is ``fn(DetectionContext) -> Detection``.

Every collapse rule (``collapse.RULES``) is a detector of the same name and parameters;
the baselines follow.
"""

from __future__ import annotations

from ..collapse import RULES
from ..registry import Registry
from . import activation_clustering, frequency, influence_topk, spectral
from .base import BudgetParams, DetectFn, Detection, DetectionContext
from .collapse_rule import RuleDetector

DETECTORS: Registry[DetectFn] = Registry("detector", {
    "needs_influence": False,  # scores queries with EK-FAC (factors + one scoring pass)
    "collapse_rule": False,  # a collapse rule: the app re-applies it to the scores it already has
    "needs_retrain": False,  # retrains the model without candidates (DetectionContext.heldout)
})
for _rule in RULES.names():
    _retrains = RULES.trait(_rule, "needs_retrain")  # too slow to re-apply live: the app runs it with progress
    DETECTORS.register(_rule, RuleDetector(_rule), RULES.help(_rule), params=RULES.params(_rule),
                       version=RULES.version(_rule), needs_influence=True, collapse_rule=not _retrains,
                       needs_retrain=_retrains)
DETECTORS.register("influence_topk", influence_topk.detect, "plain EK-FAC: top-k mean z-scored influence",
                   params=BudgetParams, needs_influence=True)
DETECTORS.register("activation_clustering", activation_clustering.detect,
                   "activation clustering (Chen et al.): small k-means cluster per class "
                   "(relative size < 0.35; a knife edge: a clean class at 0.34 was flagged)")
DETECTORS.register("spectral", spectral.detect,
                   "spectral signatures (Tran et al.): top 1.5x poison bound of every class's singular direction",
                   params=BudgetParams, version=2)
DETECTORS.register("spectral_global", spectral.detect_global,
                   "spectral signatures, one global 1.5x budget over class-mean-normalised scores (variant)",
                   params=BudgetParams)
DETECTORS.register("frequency", frequency.detect, "high-frequency DCT energy, robust z within class",
                   params=BudgetParams)

__all__ = ["DETECTORS", "BudgetParams", "DetectFn", "Detection", "DetectionContext", "RuleDetector"]
