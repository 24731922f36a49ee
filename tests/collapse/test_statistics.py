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


def whole_matrix_stats(scores: np.ndarray, q, keep: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """The sufficient statistics from the whole float64 collapse matrix at once (how they were first
    computed, before ``collapse_stats`` went one affected image at a time to save memory)."""
    rows = q.copy_rows()
    c = scores[q.original_row_of()].astype(np.float64) - scores[rows]
    image_of, transform = q.image_of[rows], q.transform[rows]
    kept = np.ones(len(rows), dtype=bool) if keep is None else keep[rows]
    names = list(dict.fromkeys(transform.tolist()))
    shift = np.stack([c[image_of == k].mean(axis=0) for k in range(int(image_of.max()) + 1)])
    c = c - shift[image_of]
    s1 = np.zeros((len(names), len(shift), 2, c.shape[1]))
    s2 = np.zeros_like(s1)
    for t_pos, t in enumerate(names):
        for k in range(len(shift)):
            for b in (0, 1):
                block = c[(transform == t) & (image_of == k) & (kept == bool(b))]
                if block.shape[0]:
                    s1[t_pos, k, b] = block.sum(axis=0)
                    s2[t_pos, k, b] = np.einsum("ij,ij->j", block, block)
    return shift, s1, s2


@pytest.mark.parametrize("with_keep", [False, True])
def test_stats_one_image_at_a_time_equal_the_whole_matrix_to_the_bit(with_keep):
    q = fake_queries((6, 4, 5), transforms=("flip", "invert", "blur"))
    s = np.random.default_rng(3).standard_normal((len(q.is_original), 1001)).astype(np.float32) * 1e-3
    keep = np.random.default_rng(4).random(len(q.is_original)) < 0.5 if with_keep else None
    stats = cs.collapse_stats(s, q, keep)
    shift, s1, s2 = whole_matrix_stats(s, q, keep)
    assert np.array_equal(stats.shift, shift)
    assert np.array_equal(stats.s1, s1) and np.array_equal(stats.s2, s2)
    assert stats.counts.sum() == len(q.copy_rows())
