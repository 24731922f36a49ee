"""Label consistency: does a flagged training image keep its own label once the trigger is broken?

Influence collapse says which training images the affected predictions lean on; among
them are clean images of the target class, which every affected prediction leans on a
little, and the pooled ``d`` ranks them close to the poisons on some seeds (issue 17).
A second, independent measurement separates them on *dirty-label* attacks: a poison is
an image of another class that carries the trigger and is labelled as the target. The
transformations that broke the affected images (most of their copies are no longer
called the target) also break a poison's trigger, and the model then calls the poison
by what it shows, not by its label; a clean image of the target class keeps its label.
So each flagged image gets seeded copies under those transformations, and its
*label-break rate* is the share of them the model no longer calls its training label.
Forward passes only: a few seconds for hundreds of images.

It is evidence only where the training poisons' trigger breaks too. It does not on a
clean-label attack (the poisons' labels are right) nor on a trigger the model memorised
on its training images and that survives the transformations (measured: the smooth
low-frequency trigger on the digits, BENCHMARKS.md). The rule ``delta_label`` therefore
uses it only when it *agrees* with the collapse evidence (next section); otherwise it
flags what ``delta`` flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.base import ImageSet
from ..errors import ConfigError
from ..training import predict
from .evidence import CollapseEvidence, attack_breaking_transforms
from .rules import RULES, EffectSizeParams, RuleResult, otsu_threshold, pooled_effect_size_rule
from .transforms import apply_transform

CHUNK = 256
"""Training images transformed per forward batch group (bounds memory on large sets)."""


def copy_seed(seed: int, index: int, transform: str, copy: int) -> int:
    """One seed per (image, transformation, copy): a rate never depends on which other images are asked."""
    words = [int(seed), int(index), copy] + [ord(ch) for ch in transform]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


@dataclass
class LabelCheck:
    """The model under investigation and its training set, to ask how it labels transformed copies.

    model: the classifier (on its device; evaluated in eval mode).
    train: the training set the flagged indices point into (labels are the training labels).
    seed: seeds every copy (``copy_seed``), so the rates are reproducible.
    n_copies: copies per image and transformation.
    """

    model: nn.Module
    train: ImageSet
    seed: int = 0
    n_copies: int = 8
    _memo: dict[tuple[int, str], float] = field(default_factory=dict, repr=False)

    def break_rates(self, indices: Sequence[int] | np.ndarray, transforms: Sequence[str]) -> np.ndarray:
        """``[n, T]`` share of each image's copies under each transformation not called its label."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.train)):
            raise ConfigError(f"training indices must lie in [0, {len(self.train)}), got {idx.min()}..{idx.max()}")
        out = np.zeros((idx.size, len(transforms)))
        for j, t in enumerate(transforms):
            todo = [i for i in dict.fromkeys(idx.tolist()) if (i, t) not in self._memo]
            for start in range(0, len(todo), CHUNK):
                part = todo[start:start + CHUNK]
                images = self.train.float_batch(np.asarray(part))
                copies = torch.stack([apply_transform(t, images[k], copy_seed(self.seed, i, t, c))
                                      for k, i in enumerate(part) for c in range(self.n_copies)])
                labels = self.train.labels[part].numpy().repeat(self.n_copies)
                kept = (predict(self.model, copies).numpy() == labels).reshape(len(part), self.n_copies)
                for k, i in enumerate(part):
                    self._memo[(i, t)] = 1.0 - float(kept[k].mean())
            out[:, j] = [self._memo[(int(i), t)] for i in idx]
        return out


def agreement(high: np.ndarray, low: np.ndarray) -> tuple[float, float]:
    """How often a member of ``high`` beats one of ``low`` (the Mann-Whitney common-language effect
    size) and the one-sided p-value that it does so more than by chance."""
    from scipy.stats import mannwhitneyu  # only this rule needs scipy; the core imports without it

    if len(high) == 0 or len(low) == 0:
        return float("nan"), 1.0
    test = mannwhitneyu(high, low, alternative="greater")
    return float(test.statistic / (len(high) * len(low))), float(test.pvalue)


@dataclass(frozen=True)
class LabelRuleParams(EffectSizeParams):
    break_share: float = field(default=0.5, metadata={
        "help": "a transformation broke the attack when at least this share of its copies of the affected "
                "images is no longer called the target (a majority)", "min": 0.05, "max": 1.0, "step": 0.05})
    alpha: float = field(default=0.001, metadata={
        "help": "label breaks are used only when the images that break their label collapse more than the "
                "rest of the flagged set at this significance (one-sided Mann-Whitney)", "min": 1e-9, "max": 0.5})
    min_agreement: float = field(default=0.8, metadata={
        "help": "... and by this effect size: the chance that one of them collapses more than one of the rest",
        "min": 0.5, "max": 1.0, "step": 0.05})

    def validate(self) -> None:
        super().validate()
        if not (0 < self.break_share <= 1 and 0 < self.alpha < 1 and 0.5 <= self.min_agreement <= 1):
            raise ConfigError("delta_label needs 0 < break_share <= 1, 0 < alpha < 1 and 0.5 <= min_agreement <= 1")


MIN_FLAGGED = 4
"""Fewer flagged images than this: nothing to split, the collapse rule's set stands."""


def label_consistency_rule(evidence: CollapseEvidence, params: LabelRuleParams,
                           transforms: Sequence[str] | None = None) -> RuleResult:
    """``delta``'s flagged set; when label breaks agree with collapse, only the images that lose their label.

    1. ``delta`` flags F (broken copies, ``d ≥ 2``, Otsu's upper group of ``log d``).
    2. B = the transformations that broke the attack; every image in F gets its label-break
       rate over B (``LabelCheck``), and Otsu's split of the rates gives its upper group U.
    3. U replaces F only if the two measurements agree: U's images collapse more than the
       rest of F (Mann-Whitney, p < ``alpha`` and effect size ≥ ``min_agreement``). Where the
       label check is blind (a memorised trigger that survives, a clean-label attack) U is a
       random part of F and they do not agree, so F stands: recall is never traded for it.
    """
    if evidence.label_check is None:
        raise ConfigError("delta_label needs the model and its training images to check labels "
                          "(run it through the pipeline or a detector, not on saved scores)")
    base = pooled_effect_size_rule(evidence, EffectSizeParams(params.effect_size, params.broken_only, params.split),
                                   transforms)
    flagged, d = base.flagged, base.statistic
    info = {**base.info, **asdict(params), "n_collapse_flagged": int(flagged.size), "label_check_used": False}
    breaking = attack_breaking_transforms(evidence, transforms, params.break_share)
    info["breaking_transforms"] = breaking
    if not breaking or flagged.size < MIN_FLAGGED:
        info["label_check"] = ("not used: no transformation broke the attack" if not breaking
                               else "not used: too few flagged images to split")
        return RuleResult(flagged, d, info)
    rates = evidence.label_check.break_rates(flagged, breaking).mean(axis=1)
    cut = otsu_threshold(rates)
    upper = rates >= cut
    log_d = np.log(np.clip(d[flagged], 1e-12, 1e12))
    effect, p = agreement(log_d[upper], log_d[~upper])
    used = bool(p < params.alpha and effect >= params.min_agreement)  # an empty group: p = 1 (``agreement``)
    info.update(label_break_cut=float(cut), agreement=effect if np.isfinite(effect) else None, agreement_p=p,
                label_check_used=used,
                label_check="used: flagged images that lose their label" if used
                else "not informative here: the images that lose their label do not collapse more than the rest")
    return RuleResult(flagged[upper] if used else flagged, d, info)


def describe_label_check(info: dict) -> str | None:
    """One sentence on what the label check did (Triage, the report); None for rules without one."""
    if "label_check_used" not in info:
        return None
    what = ", ".join(info.get("breaking_transforms") or []) or "none"
    if not info["label_check_used"]:
        why = info.get("label_check", "not used")
        extra = (f" (agreement {info['agreement']:.2f}, p = {info['agreement_p']:.1g})"
                 if info.get("agreement") is not None else "")  # None: undefined (nothing to split)
        return (f"Label check {why}{extra}. The flagged set is delta's {info['n_collapse_flagged']} images; "
                f"transformations that broke the attack: {what}.")
    return (f"Label check used: of the {info['n_collapse_flagged']} images delta flags, these lose their own "
            f"label on most copies under {what} (share ≥ {info['label_break_cut']:.0%}); they collapse more "
            f"than the rest (agreement {info['agreement']:.2f}, p = {info['agreement_p']:.1g}).")


RULES.register("delta_label", label_consistency_rule,
               "Δ-Influence, then keep the flagged images that lose their own label once the trigger is broken "
               "(dirty-label attacks; falls back to delta where the check is blind)",
               params=LabelRuleParams, statistic="d")
