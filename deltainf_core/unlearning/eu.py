"""Exact unlearning (EU): retrain from scratch on the retain set with the same recipe.

The gold standard: whatever the flagged set missed is still learned, whatever it
caught is gone. Costs a full training run.
"""

from __future__ import annotations

import torch

from ..registry import NoParams
from ..training import train_model
from .base import Timer, UnlearnContext, UnlearnResult, check_forget_set


def unlearn(ctx: UnlearnContext) -> UnlearnResult:
    ctx.parsed(NoParams)
    forget = check_forget_set(ctx)
    retain = ctx.train.rows_without(forget)  # indices, not a copy of nearly the whole set
    torch.manual_seed(ctx.train_config.seed)
    model = ctx.build_model()
    # The original recipe's epoch count (from the full set's size), not one recomputed
    # for the smaller retain set: EU is "the same training, minus the flagged images".
    epochs = ctx.cfg.epochs or ctx.recipe_epochs()
    with Timer() as t:
        train_model(model, ctx.train, ctx.train_config, augment_flip=ctx.augment_flip,
                    progress=ctx.progress, device=ctx.device, epochs=epochs, rows=retain)
    passes = epochs * len(retain) / len(ctx.train)
    return UnlearnResult(model, t.seconds, passes, {"retained": len(retain), "epochs": epochs})
