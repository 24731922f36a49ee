"""Per-parameter importances and synaptic dampening, shared by SSD and Potion.

Both methods ask the same question of every parameter: does it matter much more to
the forget set than to the rest of the data? If so it is shrunk ("dampened") in
proportion. The two entries differ only in how importance is measured and how the
"much more" threshold is chosen, so the mechanics live here (registry entries never
import each other).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import ImageSet
from ..errors import UnlearningError
from ..training import Progress, no_progress

Importances = dict[str, torch.Tensor]
"""``named_parameters()``-shaped non-negative tensors, one importance per weight."""

OBJECTIVES = ("cross_entropy", "logit_norm")


def _objective(logits: torch.Tensor, labels: torch.Tensor, objective: str) -> torch.Tensor:
    if objective == "cross_entropy":
        return F.cross_entropy(logits, labels)
    return logits.norm(p=2, dim=1).mean()


def parameter_importance(
    model: nn.Module,
    data: ImageSet,
    *,
    objective: str = "cross_entropy",
    power: int = 2,
    per_sample: bool = False,
    batch_size: int = 128,
    device: torch.device | None = None,
    progress: Progress = no_progress,
) -> Importances:
    """Mean of ``|dL/dθ| ** power`` over the data, with the model in eval mode.

    ``cross_entropy`` + ``power=2`` is SSD's diagonal Fisher information estimate
    (loss against the labels the model was trained with). ``logit_norm`` + ``power=1``
    is the label-free importance Potion builds on (the L2 norm of the logits as the
    objective, absolute gradients): it needs no label, so a poisoned image's wrong
    label does not shape its importance, and absolute values keep a few huge
    gradients from dominating the mean as squares would.

    ``per_sample=False`` averages over mini-batch gradients (the published SSD/Potion
    code). ``per_sample=True`` averages per-image gradients (``torch.func``), the
    textbook empirical Fisher: batch gradients shrink their noise with the batch size,
    so a small forget set squeezed into one short batch looks spuriously important
    against a large reference set cut into full batches; per-image terms do not.

    Eval mode keeps BatchNorm's running statistics untouched; gradients are left
    cleared so the model carries no stale ``.grad`` tensors afterwards.
    """
    if objective not in OBJECTIVES:
        raise UnlearningError(
            f"unknown importance objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    device = device or next(model.parameters()).device
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    totals = {name: torch.zeros_like(p) for name, p in params.items()}
    n_batches = max(1, math.ceil(len(data) / batch_size))
    if per_sample:
        buffers = dict(model.named_buffers())

        def one_image(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = torch.func.functional_call(model, (p, buffers), (x.unsqueeze(0),))
            return _objective(logits, y.unsqueeze(0), objective)

        per_image_grads = torch.func.vmap(torch.func.grad(one_image), in_dims=(None, 0, 0))
        detached = {name: p.detach() for name, p in params.items()}
    for b in range(n_batches):
        x = data.float_batch(slice(b * batch_size, (b + 1) * batch_size), device)
        y = data.labels[b * batch_size : (b + 1) * batch_size].to(device)
        if per_sample:
            grads = per_image_grads(detached, x, y)
            with torch.no_grad():
                for name in params:
                    totals[name] += grads[name].abs().pow(power).sum(0)
        else:
            model.zero_grad(set_to_none=True)
            _objective(model(x), y, objective).backward()
            with torch.no_grad():
                for name, p in params.items():
                    if p.grad is not None:
                        totals[name] += p.grad.abs().pow(power)
        progress((b + 1) / n_batches, f"importance {b + 1}/{n_batches}")
    model.zero_grad(set_to_none=True)
    count = len(data) if per_sample else n_batches
    return {name: t / max(1, count) for name, t in totals.items()}


def importance_ratios(retain: Importances, forget: Importances) -> np.ndarray:
    """All finite forget/retain ratios, flattened (for percentile-based selection).

    Weights with zero importance on both sets give NaN and weights unused by the
    retain set give inf; both are left out of the distribution.
    """
    parts = []
    for name, f in forget.items():
        r = retain[name]
        ratio = (f / r).flatten()
        parts.append(ratio[torch.isfinite(ratio)].double().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros(0)


@torch.no_grad()
def dampen(model: nn.Module, retain: Importances, forget: Importances, alpha: float, lam: float = 1.0) -> int:
    """SSD's selection and dampening, in place; returns how many weights were changed.

    Selected: forget importance > ``alpha`` × retain importance. Each selected weight
    is multiplied by ``min(lam · retain / forget, 1)`` — the more a weight is
    specialised to the forget set, the harder it is shrunk; never enlarged.
    """
    changed = 0
    for name, p in model.named_parameters():
        if name not in forget:
            continue
        f, r = forget[name], retain[name]
        selected = f > alpha * r
        factor = (lam * r / f.clamp_min(torch.finfo(f.dtype).tiny)).clamp(max=1.0)
        factor = torch.where(selected, factor, torch.ones_like(factor))
        p.mul_(factor.to(p.dtype))
        changed += int((selected & (factor < 1)).sum())
    return changed


def weights(count: int) -> str:
    """How many weights a dampening touched, for the notes the Unlearn page shows."""
    return f"{count} weight" if count == 1 else f"{count} weights"
