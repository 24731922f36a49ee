"""Unlearner registry: each entry is ``fn(UnlearnContext) -> UnlearnResult``.

Traits: ``from_scratch`` — retrains a fresh model (costs a full training run);
``fine_tunes`` — runs an optimiser for epochs (``UnlearnConfig.epochs`` overrides its
count); ``claims_poison_removal`` — the method's paper reports removing poisons, so the
benchmark holds it to PSR < 5 % (the others are reported as measured);
``fails_because`` — the measured reason the method can leave a backdoor in place
(BENCHMARKS.md, "Unlearning methods"), which the verdict states when the attack survived.
"""

from __future__ import annotations

from ..registry import Registry
from . import badt, cf, eu, ngd, potion, scrub, ssd
from .base import UnlearnContext, UnlearnFn, UnlearnResult, check_forget_set
from .verdict import attack_verdict, unlearning_verdict

UNLEARNERS: Registry[UnlearnFn] = Registry("unlearner", {
    "from_scratch": False,
    "fine_tunes": False,
    "claims_poison_removal": False,
    "fails_because": "",
})
UNLEARNERS.register("eu", eu.unlearn, "exact unlearning: retrain from scratch without the set",
                    params=eu.EUParams, version=2, from_scratch=True, fine_tunes=True, claims_poison_removal=True,
                    fails_because="a retrain keeps every poison the flagged set missed, and a few can re-teach the "
                    "trigger: check the detection's recall, or run another round")
UNLEARNERS.register("cf", cf.unlearn, "catastrophic forgetting: the training recipe on the retained data, "
                    "for a share of its epochs", params=cf.CFParams, version=2, fine_tunes=True,
                    claims_poison_removal=True,
                    fails_because="CF re-trains on the retained images only, so a trigger none of them shows (on the "
                    "digits, no clean image has ink in BadNet's corner) keeps its path to the target class")
UNLEARNERS.register("ssd", ssd.unlearn, "selective synaptic dampening: shrink weights the flagged set needs",
                    params=ssd.SSDParams, version=2,
                    fails_because="SSD dampens only the weights the flagged set needs alpha times more than the whole "
                    "training set does, and on a small model the trigger's weights rarely stand out that far")
UNLEARNERS.register("potion", potion.unlearn, "Potion: outlier-based SSD, strength searched until it stops",
                    params=potion.PotionParams, version=2, claims_poison_removal=True,
                    fails_because="Potion stops before retained accuracy falls; when the flagged set is mostly clean "
                    "images of the target class, or the trigger shares weights with clean features, that stop comes "
                    "before the trigger is gone")
UNLEARNERS.register("scrub", scrub.unlearn, "SCRUB: teacher-student, diverge on flagged, match on retained",
                    params=scrub.SCRUBParams, version=2, fine_tunes=True,
                    fails_because="SCRUB stops pushing away from the model on the flagged images once retained "
                    "accuracy falls, and a trigger that outlasts those passes stays")
UNLEARNERS.register("badt", badt.unlearn, "bad teacher: random net on flagged, the model on retained",
                    params=badt.BadTParams, version=2, fine_tunes=True,
                    fails_because="the paper's single epoch of Adam at 1e-4 barely moves a model trained at the "
                    "recipe's far larger rate")
UNLEARNERS.register("ngd", ngd.unlearn, "noisy gradient descent: the recipe on retained data, noisy gradients",
                    params=ngd.NGDParams, version=2, fine_tunes=True,
                    fails_because="the retained images never show the trigger, and noise scaled to their small "
                    "gradients is too weak to dislodge it (where it is not, it costs retained accuracy and the input "
                    "model is returned)")

__all__ = ["UNLEARNERS", "UnlearnContext", "UnlearnFn", "UnlearnResult", "attack_verdict", "check_forget_set",
           "unlearning_verdict"]
