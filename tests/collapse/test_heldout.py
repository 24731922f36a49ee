"""delta_heldout: the collapse net narrowed by models retrained without it (synthetic, known answers).

The retrained models here read an image's content from its pixels; how well they know
the target class depends on how many of its clean images they were trained without,
which is what the rounds exploit and what the fallback guards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_profile import TARGET, precision_recall, synthetic
from torch import nn

from deltainf_core import ImageSet
from deltainf_core.collapse import RULES, CollapseEvidence
from deltainf_core.collapse.heldout import HeldOutRetrain, describe_heldout, estimated_precision
from deltainf_core.collapse.rules import split_rule
from deltainf_core.errors import ConfigError

OTHER = 0  # what a dirty-label poison shows
MISLABEL = 3  # what a model that does not know the target class calls a clean image of it


class ContentModel(nn.Module):
    """Calls an image by its content (pixel 0), but mislabels a clean target-class image whose
    difficulty (pixel 1) is below ``gap``: a model that lacks target-class training images."""

    def __init__(self, gap: float) -> None:
        super().__init__()
        self.gap = gap
        self.anchor = nn.Parameter(torch.zeros(1))  # a device for ``predict``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        content = flat[:, 0].round().long()
        content = torch.where((content == TARGET) & (flat[:, 1] < self.gap), torch.full_like(content, MISLABEL),
                              content)
        return nn.functional.one_hot(content, 4).float() + 0 * self.anchor


def image_set(content: np.ndarray, difficulty: np.ndarray, labels: np.ndarray) -> ImageSet:
    x = np.zeros((len(content), 1, 1, 2), dtype=np.float32)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = content, difficulty
    return ImageSet(torch.as_tensor(x), torch.as_tensor(labels, dtype=torch.long), ("a", "b", "c", "d"))


class Retrains:
    """``retrain(exclude)``: the model knows the target class as well as the share of its clean images it kept."""

    def __init__(self, train: ImageSet, weakness: float, floor: float = 0.0) -> None:
        content = train.images.flatten(1)[:, 0].round().long().numpy()
        self.clean_target = np.flatnonzero((content == TARGET) & (train.labels.numpy() == TARGET))
        self.weakness, self.floor = weakness, floor
        self.asked: list[np.ndarray] = []

    def __call__(self, exclude: np.ndarray) -> nn.Module:
        self.asked.append(np.asarray(exclude).copy())
        missing = np.isin(self.clean_target, exclude).mean()
        return ContentModel(max(self.floor, self.weakness * missing))


def scenario(seed: int, weakness: float, floor: float = 0.0, **shape):
    """``test_profile.synthetic``'s scores (poisons 0..19, clean target class 20..219, 300 others),
    with training images whose content says which are dirty-label poisons."""
    scores, queries, predicted, poisons, clean = synthetic(seed, **shape)
    n = scores.shape[1]
    rng = np.random.default_rng(seed + 7)
    labels = np.full(n, 2)
    labels[: len(poisons) + len(clean)] = TARGET
    content = labels.copy()
    content[poisons] = OTHER
    train = image_set(content, rng.random(n), labels)
    test = image_set(np.full(500, TARGET), rng.random(500), np.full(500, TARGET))
    retrains = Retrains(train, weakness, floor)
    evidence = CollapseEvidence(scores, queries, predicted, TARGET, heldout=HeldOutRetrain(retrains, train, test))
    return evidence, poisons, clean, retrains


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_today_keeps_clean_target_images_the_heldout_rule_does_not(seed):
    evidence, poisons, clean, retrains = scenario(seed, weakness=0.5)
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    new = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {}))
    p_old, r_old = precision_recall(old.flagged, poisons)
    p_new, r_new = precision_recall(new.flagged, poisons)
    assert r_old == 1.0 and p_old < 0.5 and np.intersect1d(old.flagged, clean).size > len(poisons)
    assert new.info["heldout_used"] is True, new.info
    assert r_new == 1.0 and p_new >= 0.6 and p_new > 2 * p_old, (len(new.flagged), new.info)
    # each round retrains without a subset of the last round's set, starting from the whole net,
    # which holds delta's flagged set
    assert retrains.asked[0].size == new.info["n_net"] > len(old.flagged)
    assert np.isin(old.flagged, retrains.asked[0]).all()
    assert all(set(b) < set(a) for a, b in zip(retrains.asked, retrains.asked[1:], strict=False))
    assert new.info["rounds_run"] == len(retrains.asked) == 3
    assert new.info["narrowing"] == sorted(new.info["narrowing"], reverse=True)
    assert 0.5 <= new.info["estimated_precision"] <= p_new  # an estimate that errs low
    # the evidence Triage shows per flagged image: what a model that never saw it calls it
    called = dict(new.info["heldout_called"])
    assert sorted(called) == new.flagged.tolist() and all(called[int(i)] == OTHER for i in poisons)
    assert all(c == MISLABEL for i, c in called.items() if i not in set(poisons.tolist()))
    assert "Held-out check used" in describe_heldout(new.info)


def test_the_precision_estimate_counts_the_clean_images_every_round_found_hard():
    """The rounds keep exactly the clean images the models mislabel, so the last model's error on
    the last round's input understates how many survive (it said 0.65 here, against 0.31): the
    estimate counts the clean test images *every* model mislabelled, over the whole net."""
    evidence, poisons, _, _ = scenario(1, weakness=0.8)
    new = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {}))
    info = new.info
    held_out_precision = len(poisons) / info["narrowing"][-1]  # every dirty-label poison survives here
    last_round_estimate = 1 - info["target_error"] * info["narrowing"][-2] / info["narrowing"][-1]
    assert held_out_precision < 0.5 <= last_round_estimate
    assert info["estimated_precision"] <= held_out_precision and info["heldout_used"] is False
    assert info["target_error_every_round"] <= info["target_error"]
    assert "mislabels" in info["heldout_check"] and "could be clean" in info["heldout_check"]


def test_the_rounds_stop_at_a_fixed_point():
    """A model that knows the target class from the start: one round, then the disagreement is exact."""
    evidence, poisons, _, retrains = scenario(3, weakness=0.0)
    new = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {"rounds": 5}))
    assert precision_recall(new.flagged, poisons) == (1.0, 1.0)
    assert new.info["rounds_run"] == 2  # the second model disagrees with everything it was not trained on
    assert new.info["fixed_point"] is True and new.info["narrowing"] == [new.info["n_net"], len(poisons)]
    assert "calls none of them by its label" in describe_heldout(new.info)
    np.testing.assert_array_equal(retrains.asked[1], poisons)


def test_a_model_that_mislabels_the_target_class_falls_back_to_delta():
    """Too weak a retrained model (clean test images of the target class mislabelled 90% of the time):
    its disagreement would be mostly clean images, so delta's set stands, with its group's lower
    tail, and the info says why."""
    evidence, _, _, _ = scenario(4, weakness=1.0, floor=0.9)
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    new = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {}))
    assert new.info["heldout_used"] is False
    assert new.info["target_error"] >= 0.85 and new.info["estimated_precision"] < 0.5
    assert np.isin(old.flagged, new.flagged).all()
    tail = split_rule(old.statistic, 2.0, tail_sd=2.0)  # the same cut, lowered to the group's tail
    np.testing.assert_array_equal(new.flagged, tail)
    assert new.info["n_collapse_flagged"] == old.flagged.size and new.info["n_fallback_flagged"] == tail.size
    assert "clean test images of the target class" in describe_heldout(new.info)
    exact = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {"fallback_tail_sd": 0}))
    np.testing.assert_array_equal(exact.flagged, old.flagged)  # 0: delta's set exactly


def test_the_fallback_keeps_poisons_just_below_deltas_cut():
    """A spread group of poisons over a mass of clean target-class images (the smooth attack's shape):
    Otsu's cut lands inside the group and leaves its weakest poisons out; the fallback keeps the
    group's lower tail, and the sentence says how many it added."""
    evidence, poisons, _, _ = scenario(5, weakness=1.0, floor=0.9, poison_noise=(0.03, 0.15))
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    new = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {}))
    assert new.info["heldout_used"] is False
    _, r_old = precision_recall(old.flagged, poisons)
    _, r_new = precision_recall(new.flagged, poisons)
    assert r_old < 0.95 and r_new > r_old and np.isin(old.flagged, new.flagged).all()
    added = new.info["n_fallback_flagged"] - new.info["n_collapse_flagged"]
    assert added > 0 and f"with {added} more from its group's lower tail" in describe_heldout(new.info)
    np.testing.assert_array_equal(new.info["fallback_tail"], np.setdiff1d(new.flagged, old.flagged))


def test_a_model_that_agrees_with_every_label_falls_back_to_delta():
    """A clean-label attack: the poisons carry their true label, so nothing disagrees."""
    evidence, poisons, _, _ = scenario(5, weakness=0.0)
    train = evidence.heldout.train
    train.images[poisons, 0, 0, 0] = TARGET  # the poisons now show the target class
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    new = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {"fallback_tail_sd": 0}))
    assert new.info["heldout_used"] is False and "every candidate its label" in new.info["heldout_check"]
    np.testing.assert_array_equal(new.flagged, old.flagged)


def test_without_a_retrain_the_rule_refuses_in_one_sentence():
    scores, queries, predicted, _, _ = synthetic(0)
    with pytest.raises(ConfigError, match="retrains the model"):
        RULES.get("delta_heldout")(CollapseEvidence(scores, queries, predicted, TARGET),
                                   RULES.parse_params("delta_heldout", {}))


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"min_precision": 1.5}, {"effect_size": 0.0}, {"round": 2},
                                 {"fallback_tail_sd": -1.0}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ConfigError):
        RULES.parse_params("delta_heldout", bad)


def test_estimated_precision_counts_the_whole_net():
    assert estimated_precision(400, 45, 0.02) == pytest.approx(1 - 0.02 * 400 / 45)
    assert estimated_precision(170, 150, 0.9) == 0.0
    assert estimated_precision(10, 0, 0.1) is None and estimated_precision(10, 5, None) is None


def test_too_few_candidates_leave_deltas_set_without_retraining():
    scores, queries, predicted, _, _ = synthetic(0, n_poisons=2, n_clean_target=1, n_other=60)
    asked = []
    evidence = CollapseEvidence(scores, queries, predicted, TARGET,
                                heldout=HeldOutRetrain(lambda exclude: asked.append(exclude), None))
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    new = RULES.get("delta_heldout")(evidence, RULES.parse_params("delta_heldout", {}))
    assert new.info["n_net"] < 4 and new.info["heldout_used"] is False and asked == []
    assert "too few candidates" in new.info["heldout_check"]
    np.testing.assert_array_equal(new.flagged, old.flagged)
