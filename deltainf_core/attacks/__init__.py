"""Attack registry: each entry is ``fn(splits, attack_cfg, train_cfg, progress) -> PoisonedScenario``."""

from __future__ import annotations

from ..registry import Registry
from . import badnet, gaussian, none, smooth, witches_brew
from .base import AttackFn, PoisonedScenario

ATTACKS: Registry[AttackFn] = Registry("attack", {
    "has_success_rate": True,  # a triggered test set / target image on which PSR is measured
    "needs_train_config": False,  # crafting depends on the victim's training recipe (poison key includes it)
    "per_target": False,  # poisons one target image per run (compare runs several attack seeds)
})
ATTACKS.register("badnet", badnet.attack, "patch trigger on victim-class images, relabelled to the target")
ATTACKS.register("none", none.attack, "no poisoning (clean model)", has_success_rate=False)
ATTACKS.register("smooth", smooth.attack, "additive low-frequency trigger (L-inf budget), relabelled")
ATTACKS.register("witches_brew", witches_brew.attack, "clean-label gradient matching on one target image",
                 version=4, needs_train_config=True, per_target=True)
ATTACKS.register("gaussian", gaussian.attack, "Gaussian noise on some training inputs (a trace to test for)",
                 has_success_rate=False)

# Per-attack code versions, added to the poison cache key when an attack's output
# changes (the "poison" stage version would invalidate every attack's cache).
ATTACK_VERSIONS: dict[str, int] = {
    "witches_brew": 4,  # 2: default eps 32/255 -> 16/255; 3: weakest target, gradient-norm poisons;
    # 4: with several surrogates the target is ranked by their mean logits
}

__all__ = ["ATTACKS", "ATTACK_VERSIONS", "AttackFn", "PoisonedScenario"]
