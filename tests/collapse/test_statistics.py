"""Known answers for Δ, the collapse values, the broken-copies mask and the pooled effect size."""

from __future__ import annotations

import numpy as np
import pytest
from collapse_synthetic import POISONS, fake_queries, synthetic_scores

from deltainf_core.collapse import statistics as cs
from deltainf_core.collapse.rules import candidates


def direct_d(collapse: np.ndarray, image_of: np.ndarray) -> np.ndarray:
    """The definition spelt out: overall mean over the population std pooled within affected images."""
    resid = np.empty_like(collapse)
    for k in np.unique(image_of):
        resid[image_of == k] = collapse[image_of == k] - collapse[image_of == k].mean(axis=0)
    return collapse.mean(axis=0) / np.sqrt((resid**2).mean(axis=0))


def test_delta_is_copy_minus_original():
    q = fake_queries((3,))
    s = np.arange(4 * 5, dtype=np.float32).reshape(4, 5)
    delta, rows = cs.delta_scores(s, q)
    assert rows.tolist() == [1, 2, 3]
    assert np.allclose(delta, s[1:] - s[0])
    assert np.allclose(cs.influence_collapse(s, q), -(s[1:] - s[0]))


def test_transform_filter_keeps_only_its_copies():
    q = fake_queries()
    _delta, rows = cs.delta_scores(synthetic_scores(), q, transforms=["invert"])
    assert len(rows) == int((q.transform == "invert").sum())


def test_effect_size_known_values():
    c = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]])
    d = cs.pooled_effect_size(c)
    assert d[0] == pytest.approx(2.0)  # mean 2, population std 1
    assert np.isinf(d[1]) and d[1] > 0  # constant positive collapse
    assert d[2] == 0.0
    assert candidates(d, 2.0).tolist() == [0, 1]


def test_effect_size_matches_its_definition_for_every_subset():
    """The sufficient-statistics form equals mean/std computed directly, for any copies chosen."""
    q = fake_queries(transforms=("flip", "invert", "blur"))
    s = synthetic_scores()
    keep = np.random.default_rng(2).random(len(q.is_original)) < 0.6
    stats = cs.collapse_stats(s, q, keep)
    for transforms in (None, ["blur"], ["flip", "invert"]):
        for kept_only in (False, True):
            delta, rows = cs.delta_scores(s, q, transforms, keep if kept_only else None)
            expected = direct_d(-delta, q.image_of[rows])
            np.testing.assert_allclose(cs.effect_size(stats, transforms, kept_only), expected, rtol=1e-9)
            np.testing.assert_allclose(cs.collapse_effect_size(s, q, transforms, keep if kept_only else None),
                                       expected, rtol=1e-9)


def test_effect_size_finds_poisons_whatever_their_scale():
    q = fake_queries()
    d = cs.pooled_effect_size(cs.influence_collapse(synthetic_scores(), q))
    flagged = candidates(d, 2.0)
    assert set(flagged.tolist()) >= set(POISONS)
    assert len(flagged) <= 10  # clean images do not collapse consistently


def test_effect_size_is_scale_free():
    q = fake_queries()
    s = synthetic_scores().astype(np.float64)
    d1 = cs.pooled_effect_size(cs.influence_collapse(s, q))
    d2 = cs.pooled_effect_size(cs.influence_collapse(s * 1e-4, q))
    assert np.allclose(d1, d2)


def test_within_image_std_ignores_between_image_scale():
    """An image that collapses on every copy of two affected images of different scale."""
    c = np.array([[1.0], [1.2], [0.8], [10.0], [12.0], [8.0]])
    image_of = np.array([0, 0, 0, 1, 1, 1])
    total = cs.pooled_effect_size(c)[0]
    within = cs.pooled_effect_size(c, image_of)[0]
    assert total < 2.0 < within  # the scale difference is not evidence against collapse
    one = cs.pooled_effect_size(c[:3], image_of[:3])[0]
    assert np.isclose(one, cs.pooled_effect_size(c[:3])[0])  # one image: both forms agree


def test_per_image_variant_averages_images():
    c = np.array([[1.0], [3.0], [2.0], [2.0]])
    d = cs.per_image_effect_size(c, np.array([0, 0, 1, 1]))
    assert d[0] == (2.0 + 1e6) / 2  # image 1 is constant, clipped to 1e6


def test_broken_copies_mask_and_fallback():
    q = fake_queries(copies=(6, 4))  # affected image 0: 6 copies, image 1: 4 copies
    target = 0
    pred = np.full(len(q.is_original), target)
    rows0 = np.flatnonzero(~q.is_original & (q.image_of == 0))
    rows1 = np.flatnonzero(~q.is_original & (q.image_of == 1))
    pred[rows0[:4]] = 2  # 4 of image 0's copies broke the attack
    pred[rows1[:1]] = 3  # only 1 of image 1's: too few, all of its copies count
    keep = cs.broken_copies(q, pred, target)
    assert not keep[q.is_original].any()
    assert keep[rows0].tolist() == [True] * 4 + [False] * 2
    assert keep[rows1].all()
    delta_kept, rows = cs.delta_scores(np.ones((len(pred), 5)), q, keep=keep)
    assert delta_kept.shape[0] == 8 and set(rows.tolist()) == set(np.flatnonzero(keep).tolist())
    with pytest.raises(ValueError, match="one prediction per query"):
        cs.broken_copies(q, pred[:3], target)


def test_panels_hold_one_mean_delta_per_transformation_over_the_chosen_copies():
    q = fake_queries(transforms=("flip", "invert", "blur"))
    s = synthetic_scores()
    keep = np.random.default_rng(3).random(len(q.is_original)) < 0.5
    stats = cs.collapse_stats(s, q, keep)
    for kept_only in (False, True):
        panels = cs.collapse_panels(stats, ["blur", "flip"], kept_only)
        assert panels.transforms == ["blur", "flip"]
        for t in panels.transforms:
            delta, _ = cs.delta_scores(s, q, [t], keep if kept_only else None)
            np.testing.assert_allclose(panels.delta[t], delta.mean(axis=0), rtol=1e-5, atol=1e-3)
            assert panels.n_copies[t] == delta.shape[0]
    np.testing.assert_allclose(stats.original, s[q.is_original].mean(axis=0), rtol=1e-6)
    assert cs.collapse_panels(stats, []).transforms == []
