"""Known-answer tests for the flagging rules on synthetic Δ matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltainf_core import (
    CollapseConfig,
    ImageSet,
    build_queries,
    delta_scores,
    effect_size_rule,
    influence_collapse,
    per_image_effect_size,
    pooled_effect_size,
    published_vote,
)


def synthetic_scores(n_train=200, poisons=(3, 50, 120), copies=(50, 20, 20), seed=0, scale=1e5):
    """Score matrix where poisons lose support on every copy; clean images wobble around 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in copies:
        orig = rng.normal(0, 1, n_train) * scale
        orig[list(poisons)] = np.array([5.0, 80.0, 3000.0]) * scale  # wildly different magnitudes
        rows.append(orig)
        for _ in range(n):
            copy = orig + rng.normal(0, 1, n_train) * scale
            copy[list(poisons)] = orig[list(poisons)] * rng.uniform(-0.2, 0.1, len(poisons))
            rows.append(copy)
    return np.stack(rows).astype(np.float32)


def fake_queries(copies=(50, 20, 20)):
    k = len(copies)
    images = torch.rand(k, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    affected = ImageSet(images, torch.zeros(k, dtype=torch.long), tuple("0123"))
    cfg = CollapseConfig(transforms=("flip", "invert"), n_copies=copies[0],
                         n_copies_extra=copies[1] if k > 1 else 1, max_affected=k)
    return build_queries(affected, 0, cfg)


def test_query_layout_and_labels():
    q = fake_queries()
    assert len(q.queries) == 3 + 50 + 20 + 20
    assert q.n_affected == 3
    assert (q.queries.labels[torch.as_tensor(q.is_original)] == 0).all()
    assert (q.queries.labels[torch.as_tensor(~q.is_original)] != 0).all()
    # every copy points at the original of its own image
    orig = q.original_row_of()
    assert (q.image_of[orig] == q.image_of[q.copy_rows()]).all()
    assert set(q.transform[q.copy_rows()]) <= {"flip", "invert"}


def test_queries_are_seeded():
    a, b = fake_queries(), fake_queries()
    assert torch.equal(a.queries.images, b.queries.images)
    assert torch.equal(a.queries.labels, b.queries.labels)


def test_effect_size_finds_poisons_whatever_their_scale():
    q = fake_queries()
    s = synthetic_scores()
    d = pooled_effect_size(influence_collapse(s, q))
    flagged = effect_size_rule(d, 2.0)
    assert set(flagged.tolist()) >= {3, 50, 120}
    assert len(flagged) <= 10  # clean images do not collapse consistently


def test_effect_size_is_scale_free():
    q = fake_queries()
    s = synthetic_scores().astype(np.float64)
    d1 = pooled_effect_size(influence_collapse(s, q))
    d2 = pooled_effect_size(influence_collapse(s * 1e-4, q))
    assert np.allclose(d1, d2)


def test_effect_size_known_values():
    c = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]])
    d = pooled_effect_size(c)
    assert d[0] == 2.0  # mean 2, population std 1
    assert np.isinf(d[1]) and d[1] > 0  # constant positive collapse
    assert d[2] == 0.0
    assert effect_size_rule(d, 2.0).tolist() == [0, 1]


def test_delta_is_copy_minus_original():
    q = fake_queries((3,))
    s = np.arange(4 * 5, dtype=np.float32).reshape(4, 5)
    delta, rows = delta_scores(s, q)
    assert rows.tolist() == [1, 2, 3]
    assert np.allclose(delta, s[1:] - s[0])


def test_transform_filter_keeps_only_its_copies():
    q = fake_queries()
    s = synthetic_scores()
    _delta, rows = delta_scores(s, q, transforms=["invert"])
    assert len(rows) == int((q.transform == "invert").sum())


def test_published_vote_known_answer():
    delta = np.array([[-1, -1, 1], [-1, 1, 1], [-1, -1, 1], [-1, -1, -1]], dtype=float)
    assert published_vote(delta, th=0, n_tolerate=0).tolist() == [0]
    assert published_vote(delta, th=0, n_tolerate=1).tolist() == [0, 1]
    assert published_vote(delta, th=-2, n_tolerate=1).tolist() == []


def test_per_image_variant_averages_images():
    c = np.array([[1.0], [3.0], [2.0], [2.0]])
    image_of = np.array([0, 0, 1, 1])
    d = per_image_effect_size(c, image_of)
    assert d[0] == (2.0 + 1e6) / 2  # image 1 is constant, clipped to 1e6


def test_within_image_std_ignores_between_image_scale():
    """An image that collapses on every copy of two affected images of different scale."""
    c = np.array([[1.0], [1.2], [0.8], [10.0], [12.0], [8.0]])
    image_of = np.array([0, 0, 0, 1, 1, 1])
    total = pooled_effect_size(c)[0]
    within = pooled_effect_size(c, image_of)[0]
    assert total < 2.0 < within  # the scale difference is not evidence against collapse
    one = pooled_effect_size(c[:3], image_of[:3])[0]
    assert np.isclose(one, pooled_effect_size(c[:3])[0])  # one image: both forms agree


def test_collapse_effect_size_matches_manual_pooling():
    from deltainf_core import collapse_effect_size

    q = fake_queries()
    s = synthetic_scores()
    delta, rows = delta_scores(s, q)
    assert np.allclose(collapse_effect_size(s, q), pooled_effect_size(-delta, q.image_of[rows]))
    assert set(effect_size_rule(collapse_effect_size(s, q)).tolist()) >= {3, 50, 120}


def test_otsu_threshold_known_answer():
    from deltainf_core.collapse.rules import otsu_threshold

    assert otsu_threshold(np.array([1.0, 1.1, 0.9, 5.0, 5.2, 4.8])) == 4.8
    assert otsu_threshold(np.array([3.0, 3.0, 3.0])) == 3.0  # nothing to split
    assert otsu_threshold(np.array([2.0])) == 2.0


def test_split_rule_keeps_the_strong_group_and_is_scale_free():
    from deltainf_core.collapse.rules import split_rule

    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(0, 1, 3000),          # unrelated images
                        rng.uniform(2.2, 6.0, 300),       # clean target-class images: candidates
                        rng.uniform(15.0, 30.0, 30)])     # poisons
    poisons = np.arange(3300, 3330)
    flagged = split_rule(d)
    assert set(poisons.tolist()) <= set(flagged.tolist())
    assert flagged.size < 60
    assert np.array_equal(split_rule(d * 7.0, floor=14.0), flagged)  # a log split ignores the scale
    # too few candidates: nothing to split, every candidate is kept
    assert split_rule(np.array([0.1, 2.5, 9.0])).tolist() == [1, 2]
    # a perfectly constant collapse (d = inf) always stays
    assert 0 in split_rule(np.concatenate([[np.inf], d])).tolist()
    # log d is undefined at or below 0: a clear error, not a split of NaNs
    from deltainf_core.errors import ConfigError

    with pytest.raises(ConfigError, match="positive candidate effect size"):
        split_rule(d, floor=0.0)


def test_broken_copies_mask_and_fallback():
    from deltainf_core.collapse.rules import broken_copies

    q = fake_queries(copies=(6, 4))  # affected image 0: 6 copies, image 1: 4 copies
    target = 0
    pred = np.full(len(q.is_original), target)
    rows0 = np.flatnonzero(~q.is_original & (q.image_of == 0))
    rows1 = np.flatnonzero(~q.is_original & (q.image_of == 1))
    pred[rows0[:4]] = 2  # 4 of image 0's copies broke the attack
    pred[rows1[:1]] = 3  # only 1 of image 1's: too few, all of its copies count
    keep = broken_copies(q, pred, target)
    assert not keep[q.is_original].any()
    assert keep[rows0].tolist() == [True] * 4 + [False] * 2
    assert keep[rows1].all()
    delta_all, _ = delta_scores(np.ones((len(pred), 5)), q)
    delta_kept, rows = delta_scores(np.ones((len(pred), 5)), q, keep=keep)
    assert delta_kept.shape[0] == 8 and delta_all.shape[0] == 10
    assert set(rows.tolist()) == set(np.flatnonzero(keep).tolist())
    with pytest.raises(ValueError, match="one prediction per query"):
        broken_copies(q, pred[:3], target)
