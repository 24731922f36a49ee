"""Detector registry: each entry is ``fn(DetectionContext) -> Detection``."""

from __future__ import annotations

from ..registry import Registry
from . import activation_clustering, delta, delta_published, frequency, influence_topk, spectral
from .base import DetectFn, Detection, DetectionContext

DETECTORS: Registry[DetectFn] = Registry("detector", {
    "needs_influence": False,  # scores queries with EK-FAC (factors + one scoring pass)
})
DETECTORS.register("delta", delta.detect, "Δ-Influence, pooled effect size of influence collapse (default)",
                    needs_influence=True)
DETECTORS.register("delta_published", delta_published.detect, "Δ-Influence, the published vote (th, n_tolerate)",
                    needs_influence=True)
DETECTORS.register("influence_topk", influence_topk.detect, "plain EK-FAC: top-k mean z-scored influence",
                    needs_influence=True)
DETECTORS.register("activation_clustering", activation_clustering.detect,
                   "activation clustering (Chen et al.): small k-means cluster per class")
DETECTORS.register("spectral", spectral.detect, "spectral signatures (Tran et al.): top singular direction")
DETECTORS.register("frequency", frequency.detect, "high-frequency DCT energy, robust z within class")

__all__ = ["DETECTORS", "DetectFn", "Detection", "DetectionContext"]
