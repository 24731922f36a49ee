"""Train and evaluate classifiers: SGD + Nesterov, one-cycle LR, crop/flip augmentation.

Deterministic on CPU for a given seed: one ``torch.Generator`` drives initialisation,
batch order and augmentation, so a retrain (EU) and a cache miss give the same model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data.base import ImageSet
from .errors import TrainingError

Progress = Callable[[float, str], None]
"""Progress callback: (fraction done in [0, 1], short message)."""


def no_progress(frac: float, msg: str) -> None:
    return None


def pick_device() -> torch.device:
    """CUDA when present, else CPU (the CI machines have no GPU)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def augment_batch(x: torch.Tensor, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop (pad by 1/8 of the side, reflect) and optional horizontal flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        out = torch.where(mask.view(n, 1, 1, 1), out.flip(-1), out)
    return out


@dataclass
class TrainStats:
    final_loss: float
    epochs: int
    seconds: float


def train_model(
    model: nn.Module,
    data: ImageSet,
    cfg: TrainConfig,
    *,
    augment_flip: bool = True,
    progress: Progress = no_progress,
    device: torch.device | None = None,
    epochs: int | None = None,
    lr: float | None = None,
) -> TrainStats:
    """Train ``model`` in place on ``data``; raises ``TrainingError`` on a NaN/inf loss."""
    import time

    if len(data) == 0:
        raise TrainingError("cannot train on an empty training set")
    device = device or pick_device()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    epochs = cfg.epochs_for(len(data)) if epochs is None else epochs
    peak = cfg.lr if lr is None else lr
    model.to(device).train()
    opt = torch.optim.SGD(
        model.parameters(), lr=peak, momentum=cfg.momentum, nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    n = len(data)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total, pct_start=0.25)
    images, labels = data.images, data.labels
    start = time.perf_counter()
    loss_val = float("nan")
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = images[idx]
            if cfg.augment:
                x = augment_batch(x, augment_flip, gen)
            x, y = x.to(device), labels[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"training loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_val = loss.item()
            if b % 8 == 0 or b == steps_per_epoch - 1:
                progress(step / total, f"epoch {epoch + 1}/{epochs} loss {loss_val:.3f}")
    model.eval()
    return TrainStats(loss_val, epochs, time.perf_counter() - start)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted class per image (CPU int64)."""
    return predict_logits(model, images, batch_size).argmax(1)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs = [model(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)]
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0)
    return torch.cat(outs)


def accuracy(model: nn.Module, data: ImageSet) -> float:
    if len(data) == 0:
        return float("nan")
    return float((predict(model, data.images) == data.labels).float().mean())
