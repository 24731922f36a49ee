"""Per-transformation evidence for Triage: the same copies and the same d the rule used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from collapse_synthetic import POISONS

from deltainf_core.collapse import RULES, CollapseEvidence, CollapseQueries, effect_size, transform_collapse


def test_pooled_d_is_the_rules_statistic(evidence):
    result = RULES.get("delta")(evidence, RULES.parse_params("delta", {}))
    shown = np.union1d(result.flagged, POISONS)
    tc = transform_collapse(evidence, shown)
    np.testing.assert_allclose(tc.pooled, result.statistic[shown])
    assert tc.kept_only
    for j, t in enumerate(tc.transforms):
        np.testing.assert_allclose(tc.effect_size[:, j], effect_size(evidence.stats, [t], True)[shown])
    assert tc.n_copies.sum() == int(evidence.broken.sum())  # every counted copy is one transformation's


def test_poisons_collapse_on_every_transformation(evidence):
    tc = transform_collapse(evidence, list(POISONS))
    assert (tc.effect_size > 2).all() and (tc.mean_delta < 0).all()


def test_a_subset_of_transformations_and_all_copies(evidence):
    tc = transform_collapse(evidence, [3, 7], transforms=["flip"], kept_only=False)
    assert tc.transforms == ["flip"] and not tc.kept_only
    assert tc.n_copies[0] == int((evidence.queries.transform == "flip").sum())
    np.testing.assert_allclose(tc.pooled, effect_size(evidence.stats, ["flip"])[[3, 7]])


def test_hand_made_numbers():
    # one affected image; blur copies broke the attack (predicted 0), flip copies did not (target 1)
    q = CollapseQueries(None, np.zeros(5, dtype=int), np.array([True, False, False, False, False]),  # type: ignore[arg-type]
                        np.array(["", "blur", "blur", "flip", "flip"], dtype=object))
    scores = np.array([[10.0, 4.0], [1.0, 0.0], [-1.0, 0.0], [-5.0, -4.0], [-5.0, -2.0]])
    ev = CollapseEvidence(scores, q, np.array([1, 0, 0, 1, 1]), 1)
    tc = transform_collapse(ev, [0], kept_only=False)
    assert tc.transforms == ["blur", "flip"] and tc.n_copies.tolist() == [2, 2]
    np.testing.assert_allclose(tc.break_rate, [1.0, 0.0])
    np.testing.assert_allclose(tc.mean_delta[0], [-10.0, -15.0])
    assert tc.effect_size[0, 0] == pytest.approx(10.0)  # collapse 9 and 11: mean 10, std 1
    assert tc.effect_size[0, 1] == np.inf  # collapse 15 and 15: no spread
    rows = tc.rows(0)
    assert rows[1] == {"transform": "flip", "n_copies": 2, "break_rate": 0.0, "effect_size": None,
                       "mean_delta": -15.0}
    json.dumps(rows)


def test_broken_copies_need_predictions(evidence):
    from deltainf_core.errors import ConfigError

    blind = CollapseEvidence(evidence.scores, evidence.queries, None, evidence.target_class)
    assert not transform_collapse(blind, [3]).kept_only
    with pytest.raises(ConfigError, match="prediction"):
        transform_collapse(blind, [3], kept_only=True)


def test_render_shows_a_heatmap_and_a_table(evidence):
    from streamlit.testing.v1 import AppTest

    def page(scores, queries, predicted, target):
        from deltainf_core.collapse import CollapseEvidence
        from pages.ui.evidence import render_flagged_evidence

        render_flagged_evidence(CollapseEvidence(scores, queries, predicted, target), [3, 50, 120], threshold=2.0)

    at = AppTest.from_function(page, args=(evidence.scores, evidence.queries, evidence.predicted,
                                           evidence.target_class), default_timeout=60).run()
    assert not at.exception
    assert at.selectbox(key="tri_evidence_pick").options == ["#3", "#50", "#120"]
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == len(evidence.queries.transforms_present())
