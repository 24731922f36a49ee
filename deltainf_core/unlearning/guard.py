"""Model protection without ground truth: accuracy on a fixed sample of retained images.

Approximate unlearners (SSD, SCRUB, Bad Teacher, NGD, Potion) can trade away clean
knowledge for forgetting, and on poison unlearning nothing tells them when to stop
(Schoepf et al.'s "model protection"). The retain guard is the one signal every method
may use: the model's accuracy on a random sample of the images it keeps, compared with
the input model's. Training images are fitted with wide margins, so a small drop here
already means a larger one on unseen data: budgets are stated on this sample and are
kept below the test-accuracy budget they protect.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ..data.base import ImageSet
from ..training import accuracy
from .base import UnlearnContext

GUARD_SIZE = 2000
"""Retained images in the guard sample: a 0.5-point step is 10 images (500 were too few
for Potion's search: it stopped on noise)."""


@dataclass
class RetainGuard:
    """Accuracy on a fixed random sample of retained images, before and after.

    images: the guard sample (labels as trained: retained images carry no known poison).
    base: the input model's accuracy on it.
    evaluations: how many models were checked (each costs a forward pass over the sample).
    """

    images: ImageSet
    base: float
    evaluations: int = 0

    @classmethod
    def build(cls, ctx: UnlearnContext, forget: np.ndarray, size: int = GUARD_SIZE) -> RetainGuard:
        kept = np.setdiff1d(np.arange(len(ctx.train)), forget)
        rng = np.random.default_rng(ctx.cfg.seed)
        picked = np.sort(rng.choice(kept, size=min(size, kept.size), replace=False))
        sample = ctx.train.subset(picked)
        return cls(sample, accuracy(ctx.model, sample))

    def accuracy(self, model: nn.Module) -> float:
        self.evaluations += 1
        return accuracy(model, self.images)

    def drop(self, model: nn.Module) -> float:
        """How far ``model`` falls below the input model on the guard sample (positive = worse)."""
        return self.base - self.accuracy(model)

    def forward_images(self) -> int:
        """Images pushed through a model by the guard so far (for ``UnlearnResult.passes``)."""
        return len(self.images) * (1 + self.evaluations)


@dataclass
class LastGoodEpoch:
    """The latest epoch whose model stayed within the retain budget: what an epoch-wise method returns.

    SCRUB and Bad Teacher may degrade the model late in their schedule; returning the last
    epoch that passed the guard (or the input model when none did) bounds the damage, and the
    note says which happened so the analyst is never handed a silent fallback.
    """

    method: str
    budget: float
    state: dict[str, Any] | None = None
    epoch: int = 0
    drops: list[float] = field(default_factory=list)

    def record(self, model: nn.Module, drop: float, epoch: int) -> None:
        """After ``epoch`` (1-based): remember ``model`` when its retained-accuracy drop is within budget."""
        self.drops.append(drop)
        if drop <= self.budget:
            self.state, self.epoch = copy.deepcopy(model.state_dict()), epoch

    def restore(self, model: nn.Module, fallback: nn.Module, epochs: int) -> str | None:
        """Load the kept epoch (or ``fallback``'s weights) into ``model``; the note saying so, if any."""
        if self.state is None:
            model.load_state_dict(fallback.state_dict())
            return (f"{self.method} lost more than {100 * self.budget:g} points on retained images in every "
                    "epoch: the input model is returned unchanged")
        if self.epoch < epochs:
            model.load_state_dict(self.state)
            return f"{self.method} kept epoch {self.epoch} of {epochs}: later epochs cost retained accuracy"
        return None
