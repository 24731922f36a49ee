"""The shared signature of every unlearner and the checks they all need.

An unlearner receives the poisoned model and the indices to forget, and returns a
*new* model: the input model is never modified (the app compares before/after).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig, UnlearnConfig
from ..data.base import ImageSet
from ..errors import UnlearningError
from ..registry import parse_params
from ..training import Progress, no_progress, pick_device

P = TypeVar("P")


def param(default: Any, help: str) -> Any:
    """A parameter field with its one-line ``help`` (the CLI and the app show it)."""
    return field(default=default, metadata={"help": help})


@dataclass
class UnlearnContext:
    """Everything an unlearner may use.

    model: the trained (poisoned) classifier; read-only.
    train: the full training set the model was trained on.
    forget: indices into ``train`` to unlearn (the approved flagged set).
    build_model: returns a freshly initialised model of the same architecture.
    train_config: the recipe the model was trained with (EU retrains with it).
    augment_flip: whether horizontal flips are label-preserving for this data.
    cfg: the unlearning options (method, epochs, params, seed).
    params: the method's parameters already parsed (``UNLEARNERS.parse_params(cfg.method,
        cfg.params)``); None: parsed from ``cfg.params`` on first use, so an unknown or
        mistyped key is refused before any work either way.
    """

    model: nn.Module
    train: ImageSet
    forget: np.ndarray
    build_model: Callable[[], nn.Module]
    train_config: TrainConfig
    augment_flip: bool = True
    cfg: UnlearnConfig = field(default_factory=UnlearnConfig)
    progress: Progress = no_progress
    device: torch.device = field(default_factory=pick_device)
    params: Any = None

    @property
    def retain(self) -> ImageSet:
        return self.train.without(self.forget)

    @property
    def forget_set(self) -> ImageSet:
        return self.train.subset(self.forget)

    def parsed(self, cls: type[P]) -> P:
        """The method's parameters as ``cls`` (its registered params dataclass)."""
        if isinstance(self.params, cls):
            return self.params
        return parse_params(cls, self.cfg.params or {}, f"unlearner {self.cfg.method!r}")

    def recipe_epochs(self) -> int:
        """Epochs of the recipe the model was trained with (on the full training set)."""
        return self.train_config.epochs_for(len(self.train))

    def share_of_recipe(self, share: float) -> int:
        """``share`` of the recipe's epochs, at least one; ``cfg.epochs`` overrides it."""
        if self.cfg.epochs:
            return int(self.cfg.epochs)
        return max(1, round(share * self.recipe_epochs()))


@dataclass
class UnlearnResult:
    """A new model plus what it cost.

    seconds: wall time of the unlearning itself.
    passes: work in units of one pass over the full training set (forward+backward).
    info: method-specific, JSON-able facts (e.g. Potion's chosen strength). ``info["note"]``,
        when present, is one sentence the app shows beside the verdict (e.g. "SSD selected
        no weights: the model is unchanged").
    """

    model: nn.Module
    seconds: float
    passes: float
    info: dict = field(default_factory=dict)


UnlearnFn = Callable[[UnlearnContext], UnlearnResult]


def check_forget_set(ctx: UnlearnContext) -> np.ndarray:
    """Validate the forget set; return it as sorted unique int64 indices.

    Empty sets and sets that hold every training image of some class are refused
    with a sentence saying why (the latter would make that class unpredictable).
    """
    forget = np.unique(np.asarray(ctx.forget, dtype=np.int64))
    if forget.size == 0:
        raise UnlearningError("the forget set is empty: approve at least one flagged image first")
    n = len(ctx.train)
    if forget.min() < 0 or forget.max() >= n:
        raise UnlearningError(f"forget indices must lie in 0..{n - 1}")
    labels = ctx.train.labels.numpy()
    kept = np.ones(n, dtype=bool)
    kept[forget] = False
    for c in np.unique(labels[forget]):
        if not kept[labels == c].any():
            name = ctx.train.classes[int(c)]
            raise UnlearningError(
                f"the forget set holds every training image of class {name!r}; "
                "the unlearned model could never predict it — reject some of them"
            )
    return forget


def fresh_copy(model: nn.Module) -> nn.Module:
    """A deep copy to modify, so the caller's model stays intact."""
    return copy.deepcopy(model)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
