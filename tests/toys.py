"""One toy entry per extensible family, each written the way a new method would be:
a function (plus a parameters dataclass where it has knobs) and one ``register`` line.

``registered()`` adds them for the duration of a ``with`` block; the contract tests are
parametrised over the registries *with* the toys (``conftest.pytest_generate_tests``),
and ``test_extending`` finds them in the CLI's choices and the app's select boxes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from deltainf_core import ATTACKS, DETECTORS, TRANSFORMS, UNLEARNERS
from deltainf_core.attacks.base import PoisonedScenario, choose_poisons, victim_indices
from deltainf_core.detectors.base import BudgetParams, Detection, budget, top_k_indices
from deltainf_core.unlearning.base import UnlearnResult, check_forget_set, fresh_copy

ATTACK, DETECTOR, TRANSFORM, UNLEARNER = "toy_label_flip", "toy_brightness", "toy_shift", "toy_untouched"


@dataclass(frozen=True)
class LabelFlipParams:
    keep_images: bool = field(default=True, metadata={"help": "leave the pixels alone (labels only)"})


def label_flip(splits, cfg, train_cfg, progress) -> PoisonedScenario:
    """Relabel some victim-class images as the target: a dirty-label attack without a trigger."""
    train = splits.train.clone()
    poisons = choose_poisons(victim_indices(train.labels, cfg.victim_class), len(train), cfg.poison_frac, cfg.seed)
    train.labels[torch.as_tensor(poisons)] = cfg.target_class
    victims = victim_indices(splits.test.labels, cfg.victim_class)
    progress(1.0, f"relabelled {len(poisons)} images")
    return PoisonedScenario(train, poisons, splits.test.subset(victims), victims, cfg.target_class, cfg.victim_class)


def brightness(ctx) -> Detection:
    """Flag the brightest images (a detector that looks at pixels only)."""
    scores = ctx.train.images.flatten(1).mean(1).double().numpy()
    return Detection(DETECTOR, top_k_indices(scores, budget(ctx)), scores.astype(np.float32))


def shift(image: torch.Tensor) -> torch.Tensor:
    """Move the image one pixel right and down (wrapping round)."""
    return torch.roll(image, shifts=(1, 1), dims=(-2, -1))


def untouched(ctx) -> UnlearnResult:
    """Return a copy of the model: the cheapest unlearner that keeps the contract."""
    check_forget_set(ctx)
    start = time.perf_counter()
    return UnlearnResult(fresh_copy(ctx.model), time.perf_counter() - start, 0.0, {"forget": len(ctx.forget)})


def register() -> None:
    ATTACKS.register(ATTACK, label_flip, "toy: relabel victim-class images", params=LabelFlipParams)
    DETECTORS.register(DETECTOR, brightness, "toy: the brightest images", params=BudgetParams)
    TRANSFORMS.register(TRANSFORM, shift, "toy: one-pixel shift", title="shift")
    UNLEARNERS.register(UNLEARNER, untouched, "toy: a copy of the model")


def unregister() -> None:
    ATTACKS.unregister(ATTACK)
    DETECTORS.unregister(DETECTOR)
    TRANSFORMS.unregister(TRANSFORM)
    UNLEARNERS.unregister(UNLEARNER)


@contextlib.contextmanager
def registered() -> Iterator[None]:
    register()
    try:
        yield
    finally:
        unregister()


REGISTRY_ARGS = {"attack_name": ATTACKS, "detector_name": DETECTORS, "transform_name": TRANSFORMS,
                 "unlearner_name": UNLEARNERS}
"""Test arguments that run once per entry of a registry (``conftest.pytest_generate_tests``)."""
TOY_OF = {"attack_name": ATTACK, "detector_name": DETECTOR, "transform_name": TRANSFORM, "unlearner_name": UNLEARNER}


def registry_names(argname: str) -> list[str]:
    """The entries a registry-parametrised test runs on: every registered one plus the toy."""
    with registered():
        return REGISTRY_ARGS[argname].names()
