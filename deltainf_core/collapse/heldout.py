"""Held-out relabelling: would a model that never saw a flagged image give it its training label?

Influence collapse keeps recall only with a wide net: every image whose support
collapses (``d ≥ 2`` over all copies, no split) holds the poisons on nearly every run
measured, but also nearly the whole target class (issue 17). A dirty-label poison is an
image of *another* class labelled as the target, so a model trained *without* it calls it
by what it shows; a clean image of the target class is called the target. The poisoned
model cannot make this check, having memorised its training images (trigger included).

The net holds every image whose collapse reaches ``effect_size`` over all copies, and
``delta``'s flagged set (its statistic counts the broken copies only): a poison ``delta``
finds is never lost to the narrowing's starting point.

The rule retrains without the net, keeps the images the retrained model calls
something other than their label, and retrains again without only those: each round
gives the clean images the model agreed with back to training, so the next model knows
the target class better while every poison stays held out. The rounds stop at a fixed
point or after ``rounds`` retrains; each retrain is EU's (cached by its forget set), so
the investigation's EU on the final set is the next round's model.

The check needs a model good enough to recognise clean images of the target class it
was not trained on. A clean image survives the rounds only if *every* round's model,
none trained on it, mislabels it; the clean test images of the target class, which no
model sees, are mislabelled by all of them at a measured share. From that share the rule
estimates how many clean images of the net survive, and falls back to ``delta``'s
flagged set when they would be more than ``1 − min_precision`` of it. (The last round's
error alone understates it: the rounds keep exactly the images the models found hard.)
It is blind to clean-label attacks, whose poisons carry their true label.

The fallback leans to recall: with no model to check the set, it keeps ``delta``'s
flagged group together with its lower tail (``fallback_tail_sd`` standard deviations of
the group's ``log d`` below its mean; ``rules.upper_group_tail``), where the poisons whose
collapse is weaker than their fellows' sit just below Otsu's cut. A tight group (every
poison collapsing alike) is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..data.base import ImageSet
from ..errors import ConfigError, UnlearningError
from ..training import predict
from .evidence import CollapseEvidence
from .rules import RULES, EffectSizeParams, RuleResult, candidates, pooled_effect_size_rule, split_rule
from .statistics import effect_size

MIN_FLAGGED = 4
"""Fewer candidates than this: nothing to narrow, delta's set stands."""


class HeldOutAnswer(NamedTuple):
    """One retrained model's answers. called: its class for each held-out image; disagree: called differs
    from the training label; test_wrong: which clean test images of the target class it mislabels."""

    called: np.ndarray
    disagree: np.ndarray
    test_wrong: np.ndarray | None


@dataclass
class HeldOutRetrain:
    """Retrains without given training images and asks the retrained model about them.

    retrain: ``exclude -> model`` trained from scratch without those training indices
        (the pipeline's EU, so each retrain is cached by its forget set).
    train: the training set the indices point into (its labels are the training labels).
    test: clean test images; their error rate on a class estimates how often a held-out
        model mislabels clean images of it (None: no estimate, no fallback).
    """

    retrain: Callable[[np.ndarray], nn.Module]
    train: ImageSet
    test: ImageSet | None = None

    def disagreement(self, exclude: np.ndarray, target_class: int) -> HeldOutAnswer:
        """What the model trained without ``exclude`` calls each of them, which it calls other than their
        label, and which clean test images of ``target_class`` it mislabels (None without test images)."""
        model = self.retrain(exclude)
        called = predict(model, self.train.pixels[torch.as_tensor(exclude)]).numpy()  # stored dtype, batched
        disagree = called != self.train.labels[exclude].numpy()
        wrong = None
        if self.test is not None:
            own = np.flatnonzero(self.test.labels.numpy() == target_class)
            if own.size:
                wrong = predict(model, self.test.pixels[torch.as_tensor(own)]).numpy() != target_class
        return HeldOutAnswer(called, disagree, wrong)


@dataclass(frozen=True)
class HeldOutParams:
    effect_size: float = field(default=2.0, metadata={
        "help": "the net: every image whose pooled collapse d over all copies reaches this (no split), and "
                "delta's flagged set",
        "min": 0.5, "max": 6.0, "step": 0.1})
    rounds: int = field(default=3, metadata={
        "help": "retrains that narrow the net (each gives back the images the last model agreed with); "
                "the investigation's EU is one more", "min": 1, "max": 8})
    min_precision: float = field(default=0.5, metadata={
        "help": "fall back to delta's flagged set (and its lower tail) when the estimated share of poisons "
                "in the held-out disagreement is below this (the retrained model mislabels too many clean images)",
        "min": 0.0, "max": 1.0, "step": 0.05})
    fallback_tail_sd: float = field(default=2.0, metadata={
        "help": "the fallback also keeps delta's flagged group's lower tail: images whose log d is within this "
                "many standard deviations of the group's mean (0: delta's set exactly)",
        "min": 0.0, "max": 4.0, "step": 0.5})

    def validate(self) -> None:
        if not (self.effect_size > 0 and self.rounds >= 1 and 0 <= self.min_precision <= 1
                and self.fallback_tail_sd >= 0):
            raise ConfigError("delta_heldout needs effect_size > 0, rounds >= 1, 0 <= min_precision <= 1 "
                              "and fallback_tail_sd >= 0")


def estimated_precision(n_net: int, n_flagged: int, error_every_round: float | None) -> float | None:
    """The share of poisons in the final set, from how often every round's model mislabels clean images.

    At most all ``n_net`` images are clean, and a clean one survives the rounds only if
    every round's model (none trained on it) mislabels it, which clean test images of the
    class suffer at ``error_every_round``: about ``error_every_round·n_net`` of the
    ``n_flagged`` are clean, at most.
    """
    if error_every_round is None or n_flagged == 0:
        return None
    return float(max(0.0, 1.0 - error_every_round * n_net / n_flagged))


def heldout_rule(evidence: CollapseEvidence, params: HeldOutParams,
                 transforms: Sequence[str] | None = None) -> RuleResult:
    """The collapse net, narrowed by models retrained without it (module docstring)."""
    if evidence.heldout is None:
        raise ConfigError("delta_heldout retrains the model, so it needs the training set and the recipe "
                          "(run it through the pipeline or a detector, not on saved scores)")
    d = effect_size(evidence.stats, transforms, kept_only=False)
    net = candidates(d, params.effect_size)
    base = None  # delta's own result, computed once: it widens the net and is the fallback
    if evidence.predicted is not None:  # a poison delta finds is never outside the net
        base = pooled_effect_size_rule(evidence, EffectSizeParams(params.effect_size), transforms)
        net = np.union1d(net, base.flagged)
    info: dict = {**asdict(params), "threshold": params.effect_size, "n_net": int(net.size), "rounds_run": 0,
                  "heldout_used": False, "narrowing": [int(net.size)]}
    if net.size < MIN_FLAGGED:
        info["heldout_check"] = "not used: too few candidates to narrow"
        return _fallback(evidence, params, transforms, d, info, base)
    excluded, n_disagree, wrong, every, called = net, 0, None, None, np.empty(0, dtype=np.int64)
    for _ in range(params.rounds):
        try:
            called, disagree, wrong = evidence.heldout.disagreement(excluded, evidence.target_class)
        except UnlearningError as err:  # e.g. the net holds the whole target class: no model to ask
            why = str(err).split(" —")[0]  # the unlearner's advice to reject images is not for this rule
            info["heldout_check"] = f"not used: no model could be retrained without the candidates ({why})"
            return _fallback(evidence, params, transforms, d, info, base)
        info["rounds_run"] += 1
        if wrong is not None:  # clean test images every model so far mislabelled
            every = wrong if every is None else every & wrong
        n_before, n_disagree = int(excluded.size), int(disagree.sum())
        if n_disagree == 0:
            break
        if n_disagree == n_before:  # a fixed point: the last model is already EU of this set
            info["fixed_point"] = True
            break
        excluded, called = excluded[disagree], called[disagree]
        info["narrowing"].append(int(excluded.size))
    if n_disagree == 0:
        info["heldout_check"] = "not used: the retrained model gives every candidate its label"
        return _fallback(evidence, params, transforms, d, info, base)
    error = None if wrong is None else float(wrong.mean())
    error_every = None if every is None else float(every.mean())
    precision = estimated_precision(int(net.size), int(excluded.size), error_every)
    info.update(target_error=error, target_error_every_round=error_every, estimated_precision=precision)
    if precision is not None and precision < params.min_precision:
        clean = min(round(error_every * net.size), int(excluded.size))
        info["heldout_check"] = (f"not used: every retrained model mislabels {error_every:.0%} of the clean "
                                 f"test images of the target class, so about {clean} of the {excluded.size} "
                                 "images left could be clean")
        return _fallback(evidence, params, transforms, d, info, base)
    info.update(heldout_used=True,
                heldout_check="used: the images a model trained without them does not call by their label")
    order = np.argsort(excluded)
    # the evidence per flagged image: what a model that never saw it calls it ([index, class] pairs)
    info["heldout_called"] = [[int(i), int(c)] for i, c in zip(excluded[order], called[order], strict=True)]
    return RuleResult(excluded[order], d, info)


def _fallback(evidence: CollapseEvidence, params: HeldOutParams, transforms: Sequence[str] | None,
              d_all: np.ndarray, info: dict, base: RuleResult | None = None) -> RuleResult:
    """delta's flagged set with its group's lower tail (module docstring)."""
    if base is None:
        base = pooled_effect_size_rule(evidence, EffectSizeParams(params.effect_size), transforms)
    info["n_collapse_flagged"] = int(base.flagged.size)
    flagged = base.flagged
    if params.fallback_tail_sd > 0:  # delta's split of its own d, the cut lowered: a superset of its set
        flagged = split_rule(base.statistic, params.effect_size, tail_sd=params.fallback_tail_sd)
    info["n_fallback_flagged"] = int(flagged.size)
    info["fallback_tail"] = np.setdiff1d(flagged, base.flagged).tolist()  # Triage marks these tiles
    return RuleResult(flagged, d_all, info)


def describe_heldout(info: dict) -> str | None:
    """One sentence on what the held-out check did (Triage, the report); None for other rules."""
    if "heldout_used" not in info:
        return None
    steps = " → ".join(str(n) for n in info.get("narrowing", []))
    if not info["heldout_used"]:
        n_delta = info.get("n_collapse_flagged", info.get("n_net", 0))
        n_flagged = info.get("n_fallback_flagged", n_delta)
        tail = (f", with {n_flagged - n_delta} more from its group's lower tail (within "
                f"{info.get('fallback_tail_sd', 0):g} sd of its mean log d)" if n_flagged > n_delta else "")
        return (f"Held-out check {info.get('heldout_check', 'not used')}; the flagged set is delta's "
                f"{n_delta} images{tail} (net {info.get('n_net', 0)}, {info.get('rounds_run', 0)} retrains).")
    est = info.get("estimated_precision")
    said = f", estimated precision {est:.2f}" if est is not None else ""
    last = ("the last one, trained without exactly these, calls none of them by its label" if info.get("fixed_point")
            else "the flagged images are those the last one calls other than their label")
    return (f"Held-out check used: {info['rounds_run']} models retrained without the candidates narrowed "
            f"{steps}; {last}{said}.")


RULES.register("delta_heldout", heldout_rule,
               "Δ-Influence's wide net, narrowed to the images a model retrained without them does not call "
               "by their label (dirty-label attacks; retrains up to 3 times; where the retrained model is too "
               "weak, falls back to delta widened by its group's lower tail)",
               params=HeldOutParams, statistic="d", needs_retrain=True, version=3)
# version 2: the net holds delta's flagged set; the precision estimate counts the clean test images every
# round's model mislabelled, over the whole net. version 3: the fallback keeps the flagged group's lower tail
