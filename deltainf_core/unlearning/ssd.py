"""Selective Synaptic Dampening (SSD; Foster, Schoepf & Brintrup, AAAI 2024).

Retraining-free: estimate each weight's importance (diagonal Fisher information,
the mean squared gradient of the training loss) on the forget set and on the
reference data, then shrink the weights that matter far more to the forget set —
those are where the model stored what only the forget set taught it (here: the
trigger → target shortcut). Costs one gradient pass over the forget set plus one
over the reference set; no optimiser, no epochs.

Defaults (the paper's, for ResNet-18/ViT on CIFAR; kept for the small CNN):
``alpha`` = 10 (selection: forget importance > alpha × reference importance),
``lam`` = 1 (dampening factor ``min(lam · ref / forget, 1)``), importances from the
cross-entropy against the labels the model was trained with. ``reference`` is the
retained images, as in the poison-unlearning benchmarks SSD was later run on
(Goel et al.; Potion), not the paper's full training set: the full set contains the
forget set, which caps every ratio at n_train / n_forget, so with alpha = 10 SSD
could never act on a flagged set above 10 % of the data (``"full"`` is available).
``per_sample`` = True averages per-image squared gradients (the empirical Fisher
as the paper defines it) rather than squared mini-batch gradients (its code): on
mnist5k BadNet (seed 0, full-set reference) the batch version made a 100-image
flagged set look far more important than it is and dampened 14k weights (−25
accuracy points) where the per-image version dampened 475. Per-image gradients are computed 32 at a time
(``batch_size``) to bound memory.
"""

from __future__ import annotations

from ..errors import UnlearningError
from ..training import Progress
from . import synapses
from .base import Timer, UnlearnContext, UnlearnResult, check_forget_set, fresh_copy


def unlearn(ctx: UnlearnContext) -> UnlearnResult:
    forget = check_forget_set(ctx)
    alpha = float(ctx.param("alpha", 10.0))
    lam = float(ctx.param("lam", 1.0))
    reference_name = str(ctx.param("reference", "retain"))
    if reference_name not in ("full", "retain"):
        raise UnlearningError(f"SSD reference must be 'full' or 'retain', got {reference_name!r}")
    per_sample = bool(ctx.param("per_sample", True))
    batch_size = int(ctx.param("batch_size", 32 if per_sample else ctx.train_config.batch_size))
    forget_set = ctx.train.subset(forget)
    reference = ctx.train if reference_name == "full" else ctx.train.without(forget)
    model = fresh_copy(ctx.model).to(ctx.device)

    def stage(lo: float, hi: float, label: str) -> Progress:
        return lambda frac, msg: ctx.progress(lo + (hi - lo) * frac, f"{label}: {msg}")

    with Timer() as t:
        forget_imp = synapses.parameter_importance(
            model, forget_set, per_sample=per_sample, batch_size=batch_size, device=ctx.device,
            progress=stage(0.0, 0.1, "forget set"))
        reference_imp = synapses.parameter_importance(
            model, reference, per_sample=per_sample, batch_size=batch_size, device=ctx.device,
            progress=stage(0.1, 0.95, f"{reference_name} set"))
        changed = synapses.dampen(model, reference_imp, forget_imp, alpha, lam)
    model.eval()
    ctx.progress(1.0, f"dampened {changed} weights")
    n_params = sum(p.numel() for p in model.parameters())
    passes = (len(forget_set) + len(reference)) / len(ctx.train)
    info = {"alpha": alpha, "lam": lam, "reference": reference_name, "per_sample": per_sample,
            "dampened": changed,
            "dampened_frac": changed / max(1, n_params)}
    return UnlearnResult(model, t.seconds, passes, info)
