"""What every attack returns: a poisoned training set plus ground truth kept apart.

``poison_indices`` is for evaluation only (precision/recall, the oracle retrain);
no detector or unlearner ever receives it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from ..config import AttackConfig, TrainConfig
from ..data.base import DatasetSplits, ImageSet
from ..registry import parse_params
from ..training import Progress

P = TypeVar("P")


@dataclass
class PoisonedScenario:
    """Output of an attack.

    train: the training set the victim model is trained on (poisons in place).
    poison_indices: indices into ``train`` of the poisoned images (ground truth).
    psr_set: images on which the attack's success is measured — triggered test
        images of the victim class (backdoors) or the chosen target image(s)
        (Witches' Brew); labels are their *true* labels. Empty when the attack has
        no success rate (gaussian, none).
    psr_source_indices: the test-set index each ``psr_set`` image comes from.
    target_class: the class the attacker wants ``psr_set`` predicted as.
    victim_class: the class whose images carry the trigger (None if n/a).
    info: attack-specific, JSON-able facts (budget, trigger size, targets hit...).
    noise: for gaussian poisoning, the N(0, sigma^2) noise added to each poisoned
        image (``[n_poisons, C, H, W]``, same order as ``poison_indices``).
    trigger_fn: picklable callable stamping the trigger on pixel-space images
        (module-level class, not a lambda: scenarios are cached with pickle).
    key: the cache key of this poisoned set (set by the pipeline; later stages build
        their keys on it instead of hashing the images).
    """

    train: ImageSet
    poison_indices: np.ndarray
    psr_set: ImageSet
    psr_source_indices: np.ndarray
    target_class: int | None
    victim_class: int | None
    info: dict = field(default_factory=dict)
    noise: torch.Tensor | None = None
    trigger_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    key: str | None = None

    def trigger(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the attack's test-time trigger, if it has one (identity otherwise)."""
        return self.trigger_fn(images) if self.trigger_fn is not None else images


AttackFn = Callable[[DatasetSplits, AttackConfig, TrainConfig, Progress], PoisonedScenario]
"""Signature of every registered attack: (splits, attack cfg resolved, train cfg, progress)."""


def victim_indices(labels: torch.Tensor, victim: int) -> np.ndarray:
    return np.flatnonzero(labels.numpy() == victim)


def choose_poisons(candidates: np.ndarray, n_train: int, frac: float, seed: int) -> np.ndarray:
    """Pick ``round(frac * n_train)`` (at least 1) of ``candidates`` with a seeded RNG."""
    from ..errors import ConfigError

    n = max(1, round(frac * n_train))
    if n > len(candidates):
        raise ConfigError(
            f"poison fraction {frac} needs {n} images but only {len(candidates)} are eligible"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=n, replace=False))


def empty_like(data: ImageSet) -> ImageSet:
    return ImageSet(data.images[:0], data.labels[:0], data.classes)


def dirty_label_poisoning(
    splits: DatasetSplits, cfg: AttackConfig, trigger: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[ImageSet, np.ndarray, ImageSet, np.ndarray]:
    """The BadNet/smooth protocol: trigger victim-class images, relabel them as the target.

    Returns ``(poisoned train, poison indices, triggered victim test images, their test indices)``.
    """
    victim, target = int(cfg.victim_class), int(cfg.target_class)  # type: ignore[arg-type]
    train = splits.train.clone()
    poisons = choose_poisons(victim_indices(train.labels, victim), len(train), cfg.poison_frac, cfg.seed)
    idx = torch.as_tensor(poisons)
    train.images[idx] = trigger(train.images[idx])
    train.labels[idx] = target
    test_victims = victim_indices(splits.test.labels, victim)
    psr = splits.test.subset(test_victims)
    return train, np.asarray(poisons), ImageSet(trigger(psr.images), psr.labels, psr.classes), test_victims


def attack_params(cfg: AttackConfig, cls: type[P]) -> P:
    """``cfg.params`` as the attack's parameters dataclass; unknown or mistyped keys are refused."""
    return parse_params(cls, cfg.params, f"attack {cfg.attack!r}")
