"""Bad Teacher (Chundawat, Tarun, Mandal & Kankanhalli, AAAI 2023).

The student starts as a copy of the trained model and is distilled from two
teachers at once: on flagged images from an *incompetent* teacher (a randomly
initialised network of the same architecture, whose outputs carry no knowledge,
least of all the trigger), on retained images from the *competent* trained model.
The student thus unlearns whatever the flagged images taught while keeping the
rest. Only a random share of the retain set is used, which keeps it cheap.

Defaults from the paper: KL at temperature 1, Adam, a 30 % retain subset, batch
256; adapted to the small CNN (the paper's single epoch at lr 1e-4 left PSR at 91 %
on mnist5k BadNet seed 0): ``epochs`` = 3, ``lr`` = 1e-3. Known weakness, measured:
no setting tried (1–5 epochs, lr 1e-4–1e-3, batch 32–256, retain share 0.3–0.6)
reached PSR < 5 % with < 2 points of accuracy lost there; the trigger tends to come
back in later epochs and the random teacher also erases the flagged clean images'
class knowledge (bench/unlearning_suite.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.base import ImageSet
from ..errors import UnlearningError
from .base import Timer, UnlearnContext, UnlearnResult, check_forget_set, fresh_copy
from .distillation import FORWARD_COST, frozen, kl_to_teacher, minibatches, teacher_probs


def unlearn(ctx: UnlearnContext) -> UnlearnResult:
    forget = check_forget_set(ctx)
    epochs = int(ctx.cfg.epochs or ctx.param("epochs", 3))
    lr = float(ctx.param("lr", 1e-3))
    temperature = float(ctx.param("temperature", 1.0))
    retain_frac = float(ctx.param("retain_frac", 0.3))
    batch_size = int(ctx.param("batch_size", 256))
    if not 0 < retain_frac <= 1:
        raise UnlearningError(f"retain_frac must be in (0, 1], got {retain_frac}")

    rng = np.random.default_rng(ctx.cfg.seed)
    kept = np.setdiff1d(np.arange(len(ctx.train)), forget)
    n_keep = max(1, round(retain_frac * len(kept)))
    retain_part = np.sort(rng.choice(kept, size=n_keep, replace=False))
    indices = np.concatenate([forget, retain_part])
    mixed: ImageSet = ctx.train.subset(indices)
    is_forget = torch.zeros(len(indices), dtype=torch.bool)
    is_forget[: len(forget)] = True

    torch.manual_seed(ctx.cfg.seed)
    bad_teacher = frozen(ctx.build_model().to(ctx.device))
    good_teacher = frozen(fresh_copy(ctx.model).to(ctx.device))
    student = fresh_copy(ctx.model).to(ctx.device)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    with Timer() as t:
        for epoch in range(epochs):
            student.train()
            for x, _, pos in minibatches(mixed, batch_size, gen, augment=ctx.train_config.augment,
                                         flip=ctx.augment_flip, device=ctx.device):
                flag = is_forget[pos].to(ctx.device).unsqueeze(1)
                target = torch.where(flag, teacher_probs(bad_teacher, x, temperature),
                                     teacher_probs(good_teacher, x, temperature))
                loss = kl_to_teacher(student(x), target, temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            ctx.progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}")
    student.eval()
    # Each image gets one forward+backward (student) and two teacher forwards
    # (both teachers run on every batch; cheaper than splitting it).
    passes = epochs * len(mixed) * (1 + 2 * FORWARD_COST) / len(ctx.train)
    info = {"epochs": epochs, "lr": lr, "temperature": temperature, "retain_used": int(n_keep)}
    return UnlearnResult(student, t.seconds, passes, info)
