"""Gaussian poisoning (Pawelczyk et al., "Machine Unlearning Fails to Remove Data Poisoning
Attacks"): add N(0, sigma^2) noise to a random fraction of training inputs, labels unchanged.

The poison is not a backdoor (``psr_set`` is empty); it is a *trace*: a model that
trained on ``x + eps`` has, at the clean ``x``, an input gradient of the loss that
points away from ``eps`` (the loss went down along ``eps``). If the model never saw
the noisy copy, ``eps`` is independent of the model and the normalised projection
is exactly standard normal. ``gaussian_poisoning_statistic`` tests for that trace,
e.g. after unlearning: a mean far above 0 means the poison's effect is still there.

Poisoned images are deliberately **not clamped** to ``[0, 1]``: clamping would make
the added perturbation differ from the recorded noise (and stop being Gaussian and
independent of the pixel values), which breaks the null distribution of the test.
The model normalises internally and copes with slightly out-of-range pixels.

Params: ``GaussianParams``. Poisons are drawn from every class with ``cfg.poison_frac``.

Measured (smallcnn, mnist5k): the per-poison shift of the statistic hardly depends on
sigma (0.1-0.5 all gave a mean of 0.25-0.6 without augmentation), so z grows like
sqrt(n poisons). 300 images, half noisy, 15 epochs, **no crop augmentation**: z = 7.9-9.5
with the noise vs. N(0, 1) draws without it. With the default crop augmentation the
trace is washed out (12 epochs, 4,000 images: 1% noisy z = 0.6, 10% noisy z = 1.7,
vs. 0.2 and 1.5 for a model that never saw the noise), so train Gaussian scenarios
with ``augment=False`` when the check matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import AttackConfig, TrainConfig
from ..data.base import DatasetSplits, ImageSet
from ..errors import ConfigError
from ..training import Progress
from .base import PoisonedScenario, attack_params, choose_poisons, empty_like

NOISE_SEED_OFFSET = 7_777
"""The noise comes from a torch generator seeded with the attack seed plus this: the CLI's
``--seed`` also seeds the victim's initialisation (torch's global stream), and noise drawn
from that same stream would be correlated with the initial weights."""


@dataclass(frozen=True)
class GaussianParams:
    sigma: float = field(default=0.1, metadata={"help": "noise standard deviation in pixel units, in (0, 1]"})

    def validate(self) -> None:
        if not 0.0 < self.sigma <= 1.0:
            raise ConfigError(f"gaussian-poisoning sigma must be a number in (0, 1], got {self.sigma!r}")


def attack(splits: DatasetSplits, cfg: AttackConfig, train_cfg: TrainConfig,
           progress: Progress) -> PoisonedScenario:
    sigma = attack_params(cfg, GaussianParams).sigma
    train = splits.train.clone()
    poisons = choose_poisons(np.arange(len(train)), len(train), cfg.poison_frac, cfg.seed)
    gen = torch.Generator().manual_seed(int(cfg.seed) + NOISE_SEED_OFFSET)
    noise = torch.randn((len(poisons), *train.image_shape), generator=gen) * sigma
    idx = torch.as_tensor(poisons)
    train.images[idx] = train.images[idx] + noise
    progress(1.0, f"added N(0, {sigma:g}²) noise to {len(poisons)} training images")
    info = {"sigma": sigma, "n_poisons": len(poisons), "clamped": False}
    return PoisonedScenario(train, np.asarray(poisons), empty_like(splits.test), np.zeros(0, dtype=np.int64),
                            None, None, info, noise=noise)


def poisoning_projections(model: nn.Module, clean_images: torch.Tensor, labels: torch.Tensor,
                          noise: torch.Tensor, sigma: float, batch_size: int = 256) -> torch.Tensor:
    """Per sample ``s = -<g, eps> / (sigma * ||g||)``, ``g`` = input gradient of the loss at the clean ``x``.

    ``g`` is taken in eval mode (BatchNorm running statistics), so samples do not
    interact and ``g`` depends on ``x``, ``y`` and the model only: when the model never
    saw ``x + eps``, ``s`` is exactly N(0, 1) (a fixed unit vector dotted with isotropic
    Gaussian noise). The minus sign makes a trace positive: training on ``x + eps``
    lowers the loss along ``eps``. (The gradient at ``x + eps`` is *not* usable: the
    loss curvature alone biases it, z of 40-55 on models that never saw the noise.)
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(clean_images), batch_size):
        x = clean_images[i : i + batch_size].to(device).detach().requires_grad_(True)
        y = labels[i : i + batch_size].to(device)
        loss = F.cross_entropy(model(x).double(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)  # w.r.t. x only: parameter .grad stays untouched
        g = grad.flatten(1).double()
        eps = noise[i : i + batch_size].to(device).flatten(1).double()
        norm = g.norm(dim=1).clamp_min(1e-30)
        out.append((-(g * eps).sum(1) / (sigma * norm)).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def gaussian_check(model: nn.Module, poisoned: PoisonedScenario, clean_train: ImageSet) -> dict | None:
    """``gaussian_poisoning_statistic`` on a scenario's noisy training images (None: no Gaussian poison)."""
    if poisoned.noise is None or len(poisoned.poison_indices) == 0:
        return None
    idx = torch.as_tensor(poisoned.poison_indices)
    sigma = float(poisoned.info.get("sigma", poisoned.noise.std()))
    return gaussian_poisoning_statistic(model, clean_train.float_batch(idx), clean_train.labels[idx],
                                        poisoned.noise, sigma)


def gaussian_poisoning_statistic(model: nn.Module, clean_images: torch.Tensor, labels: torch.Tensor,
                                 noise: torch.Tensor, sigma: float) -> dict:
    """One-sided z-test that the model still carries the Gaussian poison.

    Per poisoned sample ``s_i`` as in ``poisoning_projections``; under the null (the
    model never trained on ``x_i + eps_i``) the ``s_i`` are i.i.d. N(0, 1), so
    ``z = mean(s) * sqrt(n)`` is N(0, 1) and ``p_value = P(Z >= z) = erfc(z / sqrt 2) / 2``.
    ``std`` (population) is reported as a sanity check of the unit-variance null.
    """
    if len(clean_images) != len(noise) or len(clean_images) != len(labels):
        raise ConfigError(f"need one noise tensor and label per clean image, got {len(clean_images)} images, "
                          f"{len(noise)} noise tensors and {len(labels)} labels")
    if not sigma > 0:
        raise ConfigError(f"sigma must be positive, got {sigma}")
    s = poisoning_projections(model, clean_images, labels, noise, sigma)
    n = len(s)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "z": float("nan"), "p_value": float("nan"), "n": 0}
    mean = float(s.mean())
    z = mean * math.sqrt(n)
    return {"mean": mean, "std": float(s.std(unbiased=False)), "z": z,
            "p_value": 0.5 * math.erfc(z / math.sqrt(2.0)), "n": n}
