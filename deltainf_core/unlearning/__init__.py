"""Unlearner registry: each entry is ``fn(UnlearnContext) -> UnlearnResult``."""

from __future__ import annotations

from ..registry import Registry
from . import badt, cf, eu, ngd, potion, scrub, ssd
from .base import UnlearnContext, UnlearnFn, UnlearnResult, check_forget_set

UNLEARNERS: Registry[UnlearnFn] = Registry("unlearner")
UNLEARNERS.register("eu", eu.unlearn, "exact unlearning: retrain from scratch without the set")
UNLEARNERS.register("cf", cf.unlearn, "catastrophic forgetting: fine-tune on the retained data")
UNLEARNERS.register("ssd", ssd.unlearn, "selective synaptic dampening: shrink weights the flagged set needs")
UNLEARNERS.register("potion", potion.unlearn, "Potion: outlier-based SSD, strength searched until it stops")
UNLEARNERS.register("scrub", scrub.unlearn, "SCRUB: teacher-student, diverge on flagged, match on retained")
UNLEARNERS.register("badt", badt.unlearn, "bad teacher: random net on flagged, the model on retained")
UNLEARNERS.register("ngd", ngd.unlearn, "noisy gradient descent: fine-tune on retained data, noisy gradients")

__all__ = ["UNLEARNERS", "UnlearnContext", "UnlearnFn", "UnlearnResult", "check_forget_set"]
