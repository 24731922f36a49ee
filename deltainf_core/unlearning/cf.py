"""Catastrophic forgetting (CF): fine-tune the poisoned model on the retained images with
the training recipe itself (Goel, Prabhu, Torr, Dokania & Kumaraguru, "Corrective Machine
Unlearning", TMLR 2024).

The corrective-unlearning benchmark's CF is not a gentle low-rate pass: it re-runs the
original optimiser and schedule at the original peak learning rate, on the retained data
only, for a share of the original training (their code: 1,000 of 7,500 steps, warm-up
then decay, every layer trainable). The large early steps move the weights out of the
basin the poisons shaped; with no triggered image left to re-teach it, the shortcut
fades while the retained data re-teach everything else. A low-rate pass keeps the model
in that basin: on mnist5k BadNet (seed 0) half the epochs at 0.4x the peak rate left
PSR at 97 %.

Defaults: the recipe's optimiser and one-cycle schedule at its peak rate
(``lr_scale`` = 1) for ``epoch_share`` = 0.5 of its epochs (``UnlearnConfig.epochs``
overrides the count).

Where it cannot work (measured, BENCHMARKS.md): on mnist5k BadNet it left PSR at
96–97 % even with the whole recipe re-run (share 1.0), while on the CIFAR subset half
the recipe brought PSR to the oracle's floor. MNIST's corner pixels are black in every
clean digit, so no retained image produces a gradient on the weights that detect a
corner trigger; only weight decay touches them (≈ 0.4 % over the run). CF removes a
trigger only where clean images exercise the same features — a property of the data,
not of the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..training import train_model
from .base import Timer, UnlearnContext, UnlearnResult, check_forget_set, fresh_copy, param


@dataclass(frozen=True)
class CFParams:
    epoch_share: float = param(0.5, "share of the training recipe's epochs to fine-tune for")
    lr_scale: float = param(1.0, "peak learning rate as a multiple of the recipe's (one-cycle as in training)")

    def validate(self) -> None:
        if not 0 < self.epoch_share <= 2:
            raise ConfigError(f"CF epoch_share must be in (0, 2], got {self.epoch_share}")
        if not self.lr_scale > 0:
            raise ConfigError(f"CF lr_scale must be positive, got {self.lr_scale}")


def unlearn(ctx: UnlearnContext) -> UnlearnResult:
    p = ctx.parsed(CFParams)
    forget = check_forget_set(ctx)
    retain = ctx.train.without(forget)
    model = fresh_copy(ctx.model)
    epochs = ctx.share_of_recipe(p.epoch_share)
    lr = ctx.train_config.lr * p.lr_scale
    cfg = replace(ctx.train_config, seed=ctx.cfg.seed)
    with Timer() as t:
        train_model(model, retain, cfg, augment_flip=ctx.augment_flip, progress=ctx.progress,
                    device=ctx.device, epochs=epochs, lr=lr)
    passes = epochs * len(retain) / len(ctx.train)
    return UnlearnResult(model, t.seconds, passes,
                         {"epochs": epochs, "recipe_epochs": ctx.recipe_epochs(), "lr": lr})
