"""Potion (Schoepf, Foster & Brintrup, 2024): xSSD + Poison Trigger Neutralisation search.

Poison unlearning differs from privacy unlearning: the flagged set holds only part of
the poison (and some clean images), so no fixed dampening strength fits every case.
Potion therefore

1. replaces SSD's fixed selection threshold with an outlier-based one (xSSD): the
   weights dampened are those whose flagged/retain importance ratio lies in the top
   ``ln(1 + 100·s)`` percent of the ratio distribution over all weights. A rank-based
   cut is scale-free (it does not care how large the extreme ratios are) and the
   single knob, the selection strength ``s``, says how far into the tail to reach.
   Importances are the authors' label-free ones (gradient of the logits' L2 norm,
   absolute values, the retain set as reference) and dampening uses λ = 1;
2. searches ``s`` (PTN): start small, multiply by ``s_step`` until the model's
   accuracy on the flagged set — against the labels it was trained with — falls to
   ``rho`` × its accuracy before unlearning. The flagged images losing their
   (poisoned) labels is the sign the trigger was neutralised; no ground truth is
   used. Importances are computed once; each step dampens a fresh copy of the
   model and runs forward passes only.

Adaptation (ours): a detector's flagged set also holds clean images of the target
class whose labels are right. Once the trigger is neutralised the flagged accuracy
plateaus at about 1 − precision, which may stay above ``rho`` — the search would
then dampen on into clean knowledge. So every step also checks *model protection*
on a fixed random sample of retained images (``guard_size``): a step that lowers
their accuracy by more than ``max_retain_drop`` is rejected and the search stops at
the previous strength (if the very first strength is rejected — a small model, where
the top 0.1 % of weights already matter to clean data — it walks down by ``s_step``
until one passes). Both stops are ground-truth free.

Defaults: ``s_start`` = (flagged fraction of the training set) / 25 and ``s_step`` =
1.1 (the authors' code); ``rho`` = 0.1 (the low end of the paper's 0–0.75 sweep:
on a poison-only flagged set, 0.25–0.5 stopped with half the poisons still working,
PSR 23 % on mnist5k BadNet seed 1; mixed sets are stopped by the guard anyway);
``guard_size`` = 2000 retained images and ``max_retain_drop`` = 0.0075 (500 images
were too few: a 0.5-point step is 2–3 images, and the search stopped on noise). The
guard sees training images, which the model fits with wide margins, so it must be
stricter than the 2-point test-accuracy budget it protects. ``max_steps`` = 100
bounds the search (strength ≈ 13,800 × ``s_start``). ``info["stopped_by"]`` names
the stop (``rho``, ``retain_guard`` or ``max_steps``).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UnlearningError
from ..training import accuracy
from . import synapses
from .base import Timer, UnlearnContext, UnlearnResult, check_forget_set, fresh_copy
from .distillation import FORWARD_COST


def selection_percentile(strength: float) -> float:
    """xSSD's cut: weights above this percentile of the ratio distribution are selected."""
    return max(0.0, 100.0 - math.log1p(100.0 * strength))


def unlearn(ctx: UnlearnContext) -> UnlearnResult:
    forget = check_forget_set(ctx)
    forget_set = ctx.train.subset(forget)
    retain = ctx.train.without(forget)
    s = float(ctx.param("s_start", len(forget) / len(ctx.train) / 25.0))
    s_step = float(ctx.param("s_step", 1.1))
    rho = float(ctx.param("rho", 0.1))
    lam = float(ctx.param("lam", 1.0))
    max_steps = int(ctx.param("max_steps", 100))
    guard_size = int(ctx.param("guard_size", 2000))
    max_retain_drop = float(ctx.param("max_retain_drop", 0.0075))
    objective = str(ctx.param("objective", "logit_norm"))
    power = int(ctx.param("power", 1))
    batch_size = int(ctx.param("batch_size", ctx.train_config.batch_size))
    if not (s > 0 and s_step > 1 and 0 <= rho < 1 and max_steps >= 1 and guard_size >= 1):
        raise UnlearningError(
            "Potion needs s_start > 0, s_step > 1, 0 <= rho < 1, max_steps >= 1 and guard_size >= 1")
    rng = np.random.default_rng(ctx.cfg.seed)
    guard = retain.subset(np.sort(rng.choice(len(retain), size=min(guard_size, len(retain)), replace=False)))

    original = fresh_copy(ctx.model).to(ctx.device)
    with Timer() as t:
        forget_imp = synapses.parameter_importance(
            original, forget_set, objective=objective, power=power, batch_size=batch_size,
            device=ctx.device, progress=lambda f, m: ctx.progress(0.05 * f, f"flagged set: {m}"))
        retain_imp = synapses.parameter_importance(
            original, retain, objective=objective, power=power, batch_size=batch_size,
            device=ctx.device, progress=lambda f, m: ctx.progress(0.05 + 0.45 * f, f"retain set: {m}"))
        ratios = synapses.importance_ratios(retain_imp, forget_imp)
        base_acc, guard_base = accuracy(original, forget_set), accuracy(original, guard)
        trajectory: list[float] = []
        strengths: list[float] = []
        model, alpha, changed, stopped_by, tried = original, float("inf"), 0, "max_steps", 0
        descending, smallest_rejected = False, -1
        while tried < max_steps:
            tried += 1
            alpha_k = float(np.percentile(ratios, selection_percentile(s))) if ratios.size else 0.0
            candidate = fresh_copy(original)
            changed_k = synapses.dampen(candidate, retain_imp, forget_imp, alpha_k, lam)
            if guard_base - accuracy(candidate, guard) > max_retain_drop:
                # Stop at the previous strength; or, if even the start was too strong, walk
                # down — unless the selection no longer shrinks (then no strength is safe).
                if strengths or changed_k == smallest_rejected:
                    stopped_by = "retain_guard"
                    break
                descending, s, smallest_rejected = True, s / s_step, changed_k
                continue
            model, alpha, changed = candidate, alpha_k, changed_k
            trajectory.append(accuracy(model, forget_set))
            strengths.append(s)
            ctx.progress(0.5 + 0.5 * tried / max_steps,
                         f"PTN step {tried}: s={s:.4g} flagged accuracy {trajectory[-1]:.3f}")
            if trajectory[-1] <= rho * base_acc or descending:
                stopped_by = "rho" if trajectory[-1] <= rho * base_acc else "retain_guard"
                break
            s *= s_step
    model.eval()
    strength = strengths[-1] if strengths else 0.0
    ctx.progress(1.0, f"strength {strength:.4g} after {tried} steps (stopped by {stopped_by})")
    forward_images = len(forget_set) * (1 + len(trajectory)) + len(guard) * (1 + tried)
    passes = (len(forget_set) + len(retain) + FORWARD_COST * forward_images) / len(ctx.train)
    info = {
        "strength": strength, "steps": tried, "stopped_by": stopped_by, "rho": rho,
        "percentile": selection_percentile(strength) if strengths else 100.0, "alpha": alpha,
        "dampened": changed, "forget_accuracy_before": base_acc, "forget_accuracy": trajectory,
        "strengths": strengths,
    }
    return UnlearnResult(model, t.seconds, passes, info)
