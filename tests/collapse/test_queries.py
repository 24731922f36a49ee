"""The collapse queries: layout, seeded draws, relabelling, subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from collapse_synthetic import fake_queries

from deltainf_core import CollapseEvidence, ImageSet, as_target


def test_query_layout_and_labels():
    q = fake_queries()
    assert len(q.queries) == 3 + 50 + 20 + 20
    assert q.n_affected == 3
    assert (q.queries.labels[torch.as_tensor(q.is_original)] == 0).all()
    assert (q.queries.labels[torch.as_tensor(~q.is_original)] != 0).all()
    orig = q.original_row_of()  # every copy points at the original of its own image
    assert (q.image_of[orig] == q.image_of[q.copy_rows()]).all()
    assert set(q.transforms_present()) == {"flip", "invert"}


def test_queries_are_seeded():
    a, b = fake_queries(), fake_queries()
    assert torch.equal(a.queries.images, b.queries.images)
    assert torch.equal(a.queries.labels, b.queries.labels)


def test_as_target_labels_every_image_with_the_target():
    images = ImageSet(torch.rand(3, 1, 4, 4), torch.tensor([5, 6, 7]), tuple("0123456789"))
    out = as_target(images, 2)
    assert out.labels.tolist() == [2, 2, 2] and out.images is images.images
    assert images.labels.tolist() == [5, 6, 7]  # the input is not relabelled in place


def test_restricted_evidence_keeps_originals_and_chosen_copies():
    q = fake_queries()
    s = np.random.default_rng(0).normal(size=(len(q.is_original), 7)).astype(np.float32)
    pred = np.arange(len(q.is_original)) % 4
    sub = CollapseEvidence(s, q, pred, 0).restricted(["invert"])
    rows = np.flatnonzero(q.is_original | (q.transform == "invert"))
    np.testing.assert_array_equal(sub.scores, s[rows])
    np.testing.assert_array_equal(sub.predicted, pred[rows])
    assert sub.queries.transforms_present() == ["invert"] and sub.queries.n_affected == 3
    np.testing.assert_array_equal(sub.queries.image_of[sub.queries.original_row_of()],
                                  sub.queries.image_of[sub.queries.copy_rows()])
    with pytest.raises(ValueError, match="every original"):
        q.subset(np.flatnonzero(~q.is_original))


def test_first_image_queries_do_not_depend_on_how_many_images_follow():
    # the rule study derives the one-affected-image case from the five-image pass: the first
    # image's copies (draws, labels, order) must be the same whatever max_affected is
    from deltainf_core import CollapseConfig, build_queries

    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    affected = ImageSet(images, torch.zeros(5, dtype=torch.long), tuple("0123"))
    five = build_queries(affected, 0, CollapseConfig(transforms=("flip", "invert", "blur"), max_affected=5))
    one = build_queries(affected, 0, CollapseConfig(transforms=("flip", "invert", "blur"), max_affected=1))
    rows = np.flatnonzero(five.image_of == 0)
    assert torch.equal(five.queries.images[rows], one.queries.images)
    assert torch.equal(five.queries.labels[rows], one.queries.labels)
    assert five.transform[rows].tolist() == one.transform.tolist()
