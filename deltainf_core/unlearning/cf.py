"""Catastrophic forgetting (CF): fine-tune the poisoned model on the retain set only.

Cheaper than EU; relies on the poison's effect fading when its images stop being
seen (works when the retain set holds no missed poisons).
"""

from __future__ import annotations

from dataclasses import replace

from ..training import train_model
from .base import Timer, UnlearnContext, UnlearnResult, check_forget_set, fresh_copy


def unlearn(ctx: UnlearnContext) -> UnlearnResult:
    forget = check_forget_set(ctx)
    retain = ctx.train.without(forget)
    model = fresh_copy(ctx.model)
    epochs = ctx.cfg.epochs or max(1, ctx.train_config.epochs_for(len(ctx.train)) // 2)
    lr = float(ctx.param("lr", ctx.train_config.lr * 0.4))
    cfg = replace(ctx.train_config, seed=ctx.cfg.seed)
    with Timer() as t:
        train_model(model, retain, cfg, augment_flip=ctx.augment_flip, progress=ctx.progress,
                    device=ctx.device, epochs=epochs, lr=lr)
    passes = epochs * len(retain) / len(ctx.train)
    return UnlearnResult(model, t.seconds, passes, {"epochs": epochs, "lr": lr})
