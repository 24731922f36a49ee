"""Attack registry: each entry is ``fn(splits, attack_cfg, train_cfg, progress) -> PoisonedScenario``.

Each attack registers its parameters dataclass (``AttackConfig.params`` is parsed into it,
unknown or mistyped keys refused) and its code version, which is part of the poisoned
set's cache key: bump it when the attack's output changes.
"""

from __future__ import annotations

from ..registry import Registry
from . import badnet, gaussian, none, smooth, witches_brew
from .base import AttackFn, PoisonedScenario

NO_ATTACK = "none"
"""The clean "attack": what an investigated checkpoint is treated as (no ground truth)."""

ATTACKS: Registry[AttackFn] = Registry("attack", {
    "has_success_rate": True,  # a triggered test set / target image on which PSR is measured
    "needs_train_config": False,  # crafting depends on the victim's training recipe (poison key includes it)
    "per_target": False,  # poisons one target image per run (compare runs several attack seeds)
})
ATTACKS.register("badnet", badnet.attack, "patch trigger on victim-class images, relabelled to the target",
                 params=badnet.BadNetParams)
ATTACKS.register(NO_ATTACK, none.attack, "no poisoning (clean model)", has_success_rate=False)
ATTACKS.register("smooth", smooth.attack, "additive low-frequency trigger (L-inf budget), relabelled",
                 params=smooth.SmoothParams)
# witches_brew versions: 2: default eps 32/255 -> 16/255; 3: weakest target, gradient-norm poisons;
# 4: with several surrogates the target is ranked by their mean logits
ATTACKS.register("witches_brew", witches_brew.attack, "clean-label gradient matching on one target image",
                 params=witches_brew.BrewParams, version=4, needs_train_config=True, per_target=True)
ATTACKS.register("gaussian", gaussian.attack, "Gaussian noise on some training inputs (a trace to test for)",
                 params=gaussian.GaussianParams, has_success_rate=False)

__all__ = ["ATTACKS", "NO_ATTACK", "AttackFn", "PoisonedScenario"]
