"""SCRUB (Kurmanji, Triantafillou, Hayes & Triantafillou, NeurIPS 2023).

A student starts as a copy of the poisoned model (the teacher) and alternates
*max-steps* — move away from the teacher on the flagged images, maximising
KL(teacher ‖ student) there — with *min-steps* — stay close to the teacher on the
retained images (``kl_weight`` · KL) while fitting their labels (``ce_weight`` · CE).
Max-steps stop after ``max_epochs``; the remaining min-steps repair what they broke.

The paper's settings (its CIFAR code): SGD with momentum 0.9 and weight decay 5e-4,
learning rate 0.0005 decayed ×0.1 after epoch 3, ``max_epochs`` (msteps) = 3,
``min_epochs`` = 5, ``kl_weight`` = 0.5, ``ce_weight`` = 1, temperature 4, flagged
batches of 32 and retained batches of 128. The rate is stated as ``lr_scale`` = 0.01 of
the recipe's peak (0.0005 on the default recipe) so it carries to another recipe.

Max-steps are bounded by the forget-set size: each max epoch is one pass over the
flagged set, never a fixed step count (the corrective-unlearning benchmark's 400 steps
are hundreds of epochs of a small set, which is how an earlier version here destroyed
the model: −72 points). After every epoch the retain guard (``guard.RetainGuard``)
checks the student: once its retained accuracy falls more than ``max_retain_drop``
below the teacher's, max-steps stop (as the paper stops them when forgetting starts to
hurt the retained data) and only min-steps run. The result is the last student that
passed the guard — the teacher itself if none did, which the note says — so SCRUB never
returns a model worse than chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import Timer, UnlearnContext, UnlearnResult, check_forget_set, fresh_copy, param
from .distillation import FORWARD_COST, frozen, kl_to_teacher, minibatches, teacher_probs
from .guard import LastGoodEpoch, RetainGuard


@dataclass(frozen=True)
class SCRUBParams:
    max_epochs: int = param(3, "max-step passes over the flagged set (the paper's msteps)")
    min_epochs: int = param(5, "min-step passes over the retained set")
    lr_scale: float = param(0.01, "SGD learning rate as a multiple of the recipe's peak (paper: 0.0005)")
    decay_epoch: int = param(3, "the learning rate is multiplied by 0.1 from this epoch on")
    kl_weight: float = param(0.5, "weight of KL(teacher || student) on retained images (paper's alpha)")
    ce_weight: float = param(1.0, "weight of the cross-entropy on retained images (paper's gamma)")
    temperature: float = param(4.0, "distillation temperature")
    forget_batch_size: int = param(32, "flagged images per max-step")
    batch_size: int = param(128, "retained images per min-step")
    max_retain_drop: float = param(0.02, "stop max-steps once retained accuracy falls by more than this")

    def validate(self) -> None:
        if min(self.max_epochs, self.min_epochs) < 0 or max(self.max_epochs, self.min_epochs) < 1:
            raise ConfigError("SCRUB needs max_epochs, min_epochs >= 0 and at least one epoch")
        if not (self.lr_scale > 0 and self.temperature > 0 and self.forget_batch_size >= 1 and self.batch_size >= 1):
            raise ConfigError("SCRUB needs lr_scale > 0, temperature > 0 and batch sizes >= 1")


def unlearn(ctx: UnlearnContext) -> UnlearnResult:
    p = ctx.parsed(SCRUBParams)
    forget = check_forget_set(ctx)
    forget_set, retain = ctx.train.subset(forget), ctx.train.without(forget)
    min_epochs = int(ctx.cfg.epochs or p.min_epochs)
    epochs = max(min_epochs, p.max_epochs)
    lr = ctx.train_config.lr * p.lr_scale
    augment = ctx.train_config.augment
    guard = RetainGuard.build(ctx, forget)

    teacher = frozen(fresh_copy(ctx.model).to(ctx.device))
    student = fresh_copy(ctx.model).to(ctx.device)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    kept, max_stopped_at = LastGoodEpoch("SCRUB", p.max_retain_drop), None
    seen_forget = seen_retain = 0
    with Timer() as t:
        for epoch in range(epochs):
            for group in opt.param_groups:
                group["lr"] = lr * (0.1 if epoch >= p.decay_epoch else 1.0)
            student.train()
            maximise = epoch < p.max_epochs and max_stopped_at is None
            if maximise:
                for x, _, _ in minibatches(forget_set, p.forget_batch_size, gen, augment=augment,
                                           flip=ctx.augment_flip, device=ctx.device):
                    loss = -kl_to_teacher(student(x), teacher_probs(teacher, x, p.temperature), p.temperature)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                seen_forget += len(forget_set)
            if epoch < min_epochs:
                for x, y, _ in minibatches(retain, p.batch_size, gen, augment=augment,
                                           flip=ctx.augment_flip, device=ctx.device):
                    logits = student(x)
                    loss = p.kl_weight * kl_to_teacher(logits, teacher_probs(teacher, x, p.temperature),
                                                       p.temperature)
                    loss = loss + p.ce_weight * F.cross_entropy(logits, y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                seen_retain += len(retain)
            drop = guard.drop(student)
            kept.record(student, drop, epoch + 1)
            if drop > p.max_retain_drop and maximise:
                max_stopped_at = epoch + 1
            ctx.progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}"
                         + (" (max+min)" if maximise else " (min)") + f", retained accuracy −{100 * drop:.1f} pt")
    note = kept.restore(student, teacher, epochs)
    if note is None and max_stopped_at is not None:
        note = f"SCRUB stopped max-steps after epoch {max_stopped_at}: they cost retained accuracy"
    student.eval()
    passes = ((seen_forget + seen_retain) * (1 + FORWARD_COST) + FORWARD_COST * guard.forward_images()) / len(
        ctx.train)
    info = {"max_epochs": p.max_epochs, "min_epochs": min_epochs, "lr": lr, "kept_epoch": kept.epoch,
            "max_stopped_at": max_stopped_at, "retain_drop_per_epoch": kept.drops}
    if note:
        info["note"] = note
    return UnlearnResult(student, t.seconds, passes, info)
