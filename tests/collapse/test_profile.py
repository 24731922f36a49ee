"""The collapse-profile rule on synthetic Δ matrices whose right answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deltainf_core.collapse import RULES, CollapseEvidence
from deltainf_core.collapse.profile import collapse_profile, transform_evidence
from deltainf_core.collapse.queries import CollapseQueries

TARGET = 1
BREAKING = ("blur", "affine")      # copies the model no longer calls the target
KEEPING = ("channel_swap", "flip")  # copies still called the target: relabelling only


def synthetic(seed: int = 0, n_affected: int = 3, copies_per_transform: int = 6, n_poisons: int = 20,
              n_clean_target: int = 200, n_other: int = 300, poison_noise: tuple[float, float] = (0.03, 0.06)):
    """Scores that follow what the study measured (studies/rule_study.py), with known poisons.

    As a share of its support for the original, a poison keeps 0 ± a few percent on a
    broken copy and ~-0.6 on a still-target copy; a clean target-class image keeps 0 ±
    its own noise (spread so that its pooled d runs from 2 up to the weakest poisons',
    one bump that Otsu's split cuts through) and ~-1. ``poison_noise``: the range of the
    poisons' own noise (wider: a spread group whose weakest poisons reach the clean bump).
    Supports span three orders of magnitude (raw magnitudes carry no information).
    """
    rng = np.random.default_rng(seed)
    n = n_poisons + n_clean_target + n_other
    poisons = np.arange(n_poisons)
    clean = np.arange(n_poisons, n_poisons + n_clean_target)
    image_of, is_orig, transform, predicted = [], [], [], []
    for k in range(n_affected):
        image_of.append(k)
        is_orig.append(True)
        transform.append("")
        predicted.append(TARGET)
        for t in BREAKING + KEEPING:
            for _ in range(copies_per_transform):
                image_of.append(k)
                is_orig.append(False)
                transform.append(t)
                predicted.append(0 if t in BREAKING else TARGET)
    image_of, is_orig = np.array(image_of), np.array(is_orig)
    transform, predicted = np.array(transform, dtype=object), np.array(predicted)
    n_rows = len(image_of)
    support = np.exp(rng.uniform(0, 7, size=(n_affected, n)))  # positive support, any scale
    support[:, n_poisons + n_clean_target:] *= rng.choice([-1.0, 1.0], size=(n_affected, n_other))
    noise_clean = np.exp(rng.uniform(np.log(0.08), np.log(0.5), size=n_clean_target))
    noise_poison = rng.uniform(*poison_noise, size=n_poisons)
    share = np.empty((n_rows, n))
    broken = np.isin(transform, BREAKING)
    keeping = np.isin(transform, KEEPING)
    share[is_orig] = 1.0
    # poisons: ~0 when broken, ~-0.5 when the trigger still works
    share[np.ix_(broken, poisons)] = rng.normal(0.0, 1.0, size=(broken.sum(), n_poisons)) * noise_poison
    share[np.ix_(keeping, poisons)] = rng.normal(-0.6, 0.1, size=(keeping.sum(), n_poisons))
    # clean target class: collapse with their own noise; relabelling removes all support
    share[np.ix_(broken, clean)] = rng.normal(0.0, 1.0, size=(broken.sum(), n_clean_target)) * noise_clean
    share[np.ix_(keeping, clean)] = rng.normal(-1.0, 0.15, size=(keeping.sum(), n_clean_target))
    other = np.arange(n_poisons + n_clean_target, n)
    share[np.ix_(~is_orig, other)] = rng.normal(1.0, 1.0, size=((~is_orig).sum(), n_other))
    scores = share * support[image_of]
    queries = CollapseQueries(None, image_of, is_orig, transform)  # type: ignore[arg-type]
    labels = np.zeros(n, dtype=int)
    labels[: n_poisons + n_clean_target] = TARGET
    return scores, queries, predicted, poisons, clean


def precision_recall(flagged, truth):
    tp = len(set(flagged.tolist()) & set(truth.tolist()))
    return (tp / len(flagged) if len(flagged) else 0.0), tp / len(truth)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_today_keeps_clean_target_images_the_profile_rule_does_not(seed):
    scores, queries, predicted, poisons, clean = synthetic(seed)
    evidence = CollapseEvidence(scores, queries, predicted, TARGET)
    old = RULES.get("delta")(evidence, RULES.parse_params("delta", {})).flagged
    new, prob, info = collapse_profile(scores, queries, predicted, TARGET)
    p_old, r_old = precision_recall(old, poisons)
    p_new, r_new = precision_recall(new, poisons)
    assert r_old == 1.0 and p_old < 0.5, (len(old), p_old)  # the Otsu split keeps part of the clean class
    assert np.intersect1d(old, clean).size > len(poisons)
    assert r_new == 1.0 and p_new >= 0.6, (len(new), p_new, info)
    assert np.intersect1d(new, clean).size < np.intersect1d(old, clean).size / 3
    assert prob[poisons].min() >= 0.5


def test_one_affected_image_works():
    scores, queries, predicted, poisons, _ = synthetic(3, n_affected=1, copies_per_transform=10)
    flagged, _, _ = collapse_profile(scores, queries, predicted, TARGET)
    p, r = precision_recall(flagged, poisons)
    assert r == 1.0 and p >= 0.9


def test_scale_free_per_training_image():
    scores, queries, predicted, _, _ = synthetic(4)
    flagged, _, _ = collapse_profile(scores, queries, predicted, TARGET)
    rng = np.random.default_rng(0)
    rescaled = scores * np.exp(rng.uniform(-5, 5, size=scores.shape[1]))  # one positive factor per image
    again, _, _ = collapse_profile(rescaled, queries, predicted, TARGET)
    np.testing.assert_array_equal(flagged, again)


def test_images_that_do_not_support_the_original_are_never_flagged():
    scores, queries, predicted, poisons, _ = synthetic(5)
    flip = poisons[:3]
    scores[:, flip] *= -1.0  # same collapse pattern, but they opposed the affected prediction
    flagged, prob, _ = collapse_profile(scores, queries, predicted, TARGET)
    assert not np.isin(flip, flagged).any()
    assert (prob[flip] == 0).all()


def test_output_contract():
    scores, queries, predicted, _, _ = synthetic(6)
    flagged, prob, info = collapse_profile(scores, queries, predicted, TARGET)
    assert flagged.dtype == np.int64 and np.all(np.diff(flagged) > 0)
    assert prob.shape == (scores.shape[1],) and np.all((prob >= 0) & (prob <= 1))
    json.dumps(info)
    assert len(info["features"]) == len(info["weights"])


def test_too_few_candidates_keeps_them_all():
    scores, queries, predicted, poisons, _ = synthetic(7, n_poisons=2, n_clean_target=2, n_other=50)
    flagged, _, info = collapse_profile(scores, queries, predicted, TARGET)
    assert "fallback" in info
    assert np.isin(poisons, flagged).all()


def test_transform_evidence_shares_on_a_hand_made_matrix():
    # one affected image, original + 2 blur copies (broken) + 2 flip copies (still target); 3 training images
    image_of = np.zeros(5, dtype=int)
    is_orig = np.array([True, False, False, False, False])
    transform = np.array(["", "blur", "blur", "flip", "flip"], dtype=object)
    predicted = np.array([TARGET, 0, 0, TARGET, TARGET])
    scores = np.array([[10.0, 4.0, -2.0],
                       [1.0, 0.0, -2.0],
                       [-1.0, 0.0, -2.0],
                       [-5.0, -4.0, -2.0],
                       [-5.0, -2.0, -2.0]])
    ev = transform_evidence(scores, CollapseQueries(None, image_of, is_orig, transform), predicted, TARGET)
    assert ev.names == ["blur · broken", "flip · still target"]
    assert ev.broken == [True, False] and ev.n_copies == [2, 2] and ev.break_rate == [1.0, 0.0]
    np.testing.assert_allclose(ev.retained[:, 0], [0.0, -0.5])
    np.testing.assert_allclose(ev.retained[:, 1], [0.0, -0.75])
    assert np.isnan(ev.retained[:, 2]).all()  # image 2 never supported the original
    # blur collapse of image 0: 9 and 11 -> mean 10, std 1 -> d = 10
    assert ev.effect_size[0, 0] == pytest.approx(10.0)
    rows = ev.as_dict(0)
    assert rows[0]["cell"] == "blur · broken" and rows[1]["retained"] == pytest.approx(-0.5)
    json.dumps(ev.as_dict(2))
