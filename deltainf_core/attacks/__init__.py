"""Attack registry: each entry is ``fn(splits, attack_cfg, train_cfg, progress) -> PoisonedScenario``."""

from __future__ import annotations

from ..registry import Registry
from . import badnet, gaussian, none, smooth, witches_brew
from .base import AttackFn, PoisonedScenario

ATTACKS: Registry[AttackFn] = Registry("attack")
ATTACKS.register("badnet", badnet.attack, "patch trigger on victim-class images, relabelled to the target")
ATTACKS.register("none", none.attack, "no poisoning (clean model)")
ATTACKS.register("smooth", smooth.attack, "additive low-frequency trigger (L-inf budget), relabelled")
ATTACKS.register("witches_brew", witches_brew.attack, "clean-label gradient matching on one target image")
ATTACKS.register("gaussian", gaussian.attack, "Gaussian noise on some training inputs (a trace to test for)")

__all__ = ["ATTACKS", "AttackFn", "PoisonedScenario"]
