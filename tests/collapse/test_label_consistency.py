"""delta_label: label breaks used only where they agree with collapse (synthetic matrices, known answers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_profile import TARGET, precision_recall, synthetic
from torch import nn

from deltainf_core import ImageSet
from deltainf_core.collapse import RULES, CollapseEvidence
from deltainf_core.collapse.evidence import attack_breaking_transforms
from deltainf_core.collapse.label_consistency import LabelCheck, agreement
from deltainf_core.errors import ConfigError


class KnownRates:
    """A label check whose answers are given: rate per training index (same for every transformation)."""

    def __init__(self, rates: np.ndarray) -> None:
        self.rates = rates
        self.asked: list[tuple[list[int], list[str]]] = []

    def break_rates(self, indices, transforms):
        self.asked.append((list(map(int, indices)), list(transforms)))
        return np.repeat(self.rates[np.asarray(indices)][:, None], len(transforms), axis=1)


def with_rates(seed: int, rates_of) -> tuple[CollapseEvidence, np.ndarray, np.ndarray, KnownRates]:
    scores, queries, predicted, poisons, clean = synthetic(seed)
    rng = np.random.default_rng(seed + 100)
    check = KnownRates(rates_of(rng, scores.shape[1], poisons, clean))
    return CollapseEvidence(scores, queries, predicted, TARGET, check), poisons, clean, check


def dirty_label(rng, n, poisons, clean):
    """Poisons lose their label on most copies; clean target-class images keep it."""
    rates = rng.uniform(0.0, 0.45, n)
    rates[poisons] = rng.uniform(0.7, 1.0, len(poisons))
    return rates


def blind(rng, n, poisons, clean):
    """A trigger that survives on the training poisons: their rates look like everyone's."""
    return rng.uniform(0.0, 1.0, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_today_keeps_clean_target_images_the_label_check_removes(seed):
    evidence, poisons, clean, check = with_rates(seed, dirty_label)
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    new = RULES.get("delta_label")(evidence, RULES.parse_params("delta_label", {}))
    p_old, r_old = precision_recall(old.flagged, poisons)
    assert p_old < 0.5
    p_new, r_new = precision_recall(new.flagged, poisons)
    assert r_old == 1.0 and np.intersect1d(old.flagged, clean).size > len(poisons)  # today keeps the clean bump
    assert new.info["label_check_used"] is True, new.info
    assert (p_new, r_new) == (1.0, 1.0), (len(new.flagged), new.info)
    assert set(new.flagged) <= set(old.flagged)
    assert new.info["breaking_transforms"] == ["blur", "affine"]  # only those that broke the attack
    assert check.asked == [(old.flagged.tolist(), ["blur", "affine"])]  # only delta's flagged set is checked
    np.testing.assert_array_equal(new.statistic, old.statistic)  # Triage ranks by the same d


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_blind_label_check_changes_nothing(seed):
    evidence, _, _, _ = with_rates(seed, blind)
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    new = RULES.get("delta_label")(evidence, RULES.parse_params("delta_label", {}))
    assert new.info["label_check_used"] is False, new.info
    assert "not informative" in new.info["label_check"]
    np.testing.assert_array_equal(new.flagged, old.flagged)


def test_label_breaks_that_disagree_with_collapse_are_not_used():
    """Clean images lose their labels, poisons keep them: the check contradicts collapse, so it is ignored."""
    def inverted(rng, n, poisons, clean):
        rates = rng.uniform(0.7, 1.0, n)
        rates[poisons] = rng.uniform(0.0, 0.3, len(poisons))
        return rates

    evidence, poisons, _, _ = with_rates(0, inverted)
    new = RULES.get("delta_label")(evidence, RULES.parse_params("delta_label", {}))
    assert new.info["label_check_used"] is False
    assert precision_recall(new.flagged, poisons)[1] == 1.0


def test_no_transformation_broke_the_attack():
    scores, queries, _, _, _ = synthetic(0)
    still_target = np.full(len(queries.is_original), TARGET)
    evidence = CollapseEvidence(scores, queries, still_target, TARGET, KnownRates(np.zeros(scores.shape[1])))
    params = RULES.parse_params("delta_label", {"broken_only": False})
    new = RULES.get("delta_label")(evidence, params)
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {"broken_only": False}))
    assert new.info["breaking_transforms"] == [] and new.info["label_check_used"] is False
    np.testing.assert_array_equal(new.flagged, old.flagged)


def test_saved_scores_without_the_model_are_refused_in_one_sentence():
    scores, queries, predicted, _, _ = synthetic(0)
    with pytest.raises(ConfigError, match="needs the model and its training images") as err:
        RULES.get("delta_label")(CollapseEvidence(scores, queries, predicted, TARGET),
                                 RULES.parse_params("delta_label", {}))
    assert "\n" not in str(err.value)


def test_the_app_toggles_restrict_the_transformations_checked():
    evidence, _, _, check = with_rates(0, dirty_label)
    RULES.get("delta_label")(evidence, RULES.parse_params("delta_label", {}), ["affine", "flip"])
    assert check.asked[-1][1] == ["affine"]  # flip kept the attack; blur is switched off


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError):
        RULES.parse_params("delta_label", {"alpha": 0.0})
    with pytest.raises(ConfigError):
        RULES.parse_params("delta_label", {"min_agreement": 0.3})


def test_agreement_is_the_common_language_effect_size():
    effect, p = agreement(np.array([3.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.5]))
    assert effect == pytest.approx(8 / 9)
    assert p == pytest.approx(2 / 20)  # exact: 2 of the 20 ways to split six values beat 8 of 9 pairs
    assert agreement(np.array([]), np.array([1.0])) == (pytest.approx(np.nan, nan_ok=True), 1.0)


def test_breaking_transforms_are_those_with_a_majority_of_copies_off_target():
    scores, queries, predicted, _, _ = synthetic(0)
    pred = predicted.copy()
    flips = np.flatnonzero(queries.transform == "flip")
    pred[flips[: len(flips) // 2 + 1]] = 0  # just over half of flip's copies left the target
    ev = CollapseEvidence(scores, queries, pred, TARGET)
    assert attack_breaking_transforms(ev) == ["blur", "affine", "flip"]
    assert attack_breaking_transforms(ev, ["flip", "channel_swap"]) == ["flip"]
    assert attack_breaking_transforms(ev, min_share=0.9) == ["blur", "affine"]


# -- the real label check on a hand-made model --------------------------------------------------------
class CornerOrBright(nn.Module):
    """Calls an image class 1 when its bottom-right pixel is lit (a trigger) or it is bright overall."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # predict() reads the device from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = (x[:, 0, -1, -1] > 0.5) | (x.mean(dim=(1, 2, 3)) > 0.5)
        return torch.stack([(~one).float(), one.float()], dim=1)


def corner_data() -> tuple[ImageSet, np.ndarray, np.ndarray]:
    images = torch.full((12, 1, 8, 8), 0.1)
    images[:4, 0, -1, -1] = 1.0       # poisons: dark, trigger in the corner, labelled 1
    images[4:8] = 0.9                 # clean class-1 images: bright
    labels = torch.tensor([1] * 8 + [0] * 4)
    return ImageSet(images, labels, ("0", "1")), np.arange(4), np.arange(4, 8)


def test_label_check_on_a_model_the_flip_moves_the_trigger_away_from():
    train, poisons, clean = corner_data()
    check = LabelCheck(CornerOrBright(), train, seed=3, n_copies=4)
    rates = check.break_rates(np.concatenate([poisons, clean, [9]]), ["flip", "invert"])
    np.testing.assert_array_equal(rates[:4, 0], 1.0)  # flipped: the trigger is gone, the label with it
    np.testing.assert_array_equal(rates[4:8, 0], 0.0)  # a bright image stays class 1
    np.testing.assert_array_equal(rates[4:8, 1], 1.0)  # inverted, it is dark: class 0
    assert rates[8, 0] == 0.0  # a class-0 image keeps class 0


def test_label_check_rates_do_not_depend_on_who_else_is_asked():
    train, _, _ = corner_data()
    train.images[:, 0, 0, :4] = 0.8  # something for a random affine to move around
    a = LabelCheck(CornerOrBright(), train, seed=5, n_copies=6).break_rates(np.arange(12), ["affine"])
    b = LabelCheck(CornerOrBright(), train, seed=5, n_copies=6)
    alone = np.concatenate([b.break_rates([i], ["affine"]) for i in (11, 2, 7)])
    np.testing.assert_array_equal(alone[:, 0], a[[11, 2, 7], 0])
    assert len(b._memo) == 3
    b.break_rates([2, 7], ["affine"])
    assert len(b._memo) == 3  # answered from memory


def test_label_check_refuses_indices_outside_the_training_set():
    train, _, _ = corner_data()
    with pytest.raises(ConfigError, match="training indices"):
        LabelCheck(CornerOrBright(), train).break_rates([3, 12], ["flip"])


def test_the_rule_says_what_the_label_check_did():
    from deltainf_core.collapse.label_consistency import describe_label_check

    evidence, _, _, _ = with_rates(0, dirty_label)
    used = RULES.get("delta_label")(evidence, RULES.parse_params("delta_label", {})).info
    text = describe_label_check(used)
    assert text.startswith("Label check used") and "blur, affine" in text and str(used["n_collapse_flagged"]) in text
    evidence, _, _, _ = with_rates(0, blind)
    assert "not informative" in describe_label_check(RULES.get("delta_label")(
        evidence, RULES.parse_params("delta_label", {})).info)
    assert describe_label_check({"threshold": 2.0}) is None


def test_every_flagged_image_losing_its_label_alike_is_no_split():
    """Equal rates everywhere: nothing to split, the collapse set stands and the info stays valid JSON."""
    import json

    def flat(rng, n, poisons, clean):
        return np.full(n, 0.5)

    evidence, _, _, _ = with_rates(0, flat)
    res = RULES.get("delta_label")(evidence, RULES.parse_params("delta_label", {}))
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    np.testing.assert_array_equal(res.flagged, old.flagged)
    assert res.info["label_check_used"] is False
    json.loads(json.dumps(res.info, allow_nan=False))
