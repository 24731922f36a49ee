"""delta_heldout through the pipeline: real retrains (EU's, cached), on the tiny scenario.

The tiny scenario's target class is 120 images, 40 of them poisons; at the default net
(d >= 2) the net is the whole class, so no model can be retrained without it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from deltainf_core import DetectConfig, UnlearnConfig
from deltainf_core.collapse import RULES
from deltainf_core.collapse.rules import split_rule


@pytest.fixture(scope="module")
def evidence(pipeline, tiny_scenario):
    poisoned = pipeline.poisoned(tiny_scenario)
    affected = pipeline.affected_set(tiny_scenario, pipeline.default_affected(tiny_scenario))
    return pipeline.collapse(tiny_scenario, affected, poisoned.target_class), affected, poisoned


def test_a_net_holding_the_whole_target_class_falls_back_to_delta(pipeline, tiny_scenario, evidence):
    col, affected, poisoned = evidence
    scn = replace(tiny_scenario, detect=DetectConfig(detector="delta_heldout"))
    det = pipeline.detect(scn, affected, poisoned.target_class)
    old = RULES.get("delta")(col, RULES.parse_params("delta", {}))
    assert det.info["heldout_used"] is False and det.info["rounds_run"] == 0
    assert "could be retrained" in det.info["heldout_check"] and "every training image" in det.info["heldout_check"]
    np.testing.assert_array_equal(det.flagged, split_rule(old.statistic, 2.0, tail_sd=2.0))  # delta's, and its tail
    assert np.isin(old.flagged, det.flagged).all() and det.info["n_collapse_flagged"] == old.flagged.size


def test_heldout_rounds_retrain_through_eus_cache(pipeline, tiny_scenario, evidence):
    col, _, poisoned = evidence
    params = RULES.parse_params("delta_heldout", {"effect_size": 4.0})  # a net that leaves clean target images
    out = RULES.get("delta_heldout")(col, params)
    info = out.info
    collapse_flagged = RULES.get("delta")(col, RULES.parse_params("delta", {"effect_size": 4.0})).flagged
    net = np.union1d(np.flatnonzero(out.statistic >= 4.0), collapse_flagged)  # the net holds delta's set
    assert info["n_net"] == net.size and info["rounds_run"] >= 2
    assert info["heldout_used"] is True, info
    assert set(out.flagged.tolist()) <= set(net.tolist()) and out.flagged.size < net.size
    truth = np.asarray(poisoned.poison_indices)
    assert np.isin(out.flagged, truth).mean() >= 0.9  # what the model disagrees with is the poisons
    assert np.isin(truth, out.flagged).sum() >= 0.9 * np.isin(truth, net).sum()  # and keeps the net's poisons
    assert pipeline.unlearn(tiny_scenario, net, method="eu").cached  # round one was EU without the whole net


def test_another_unlearning_method_keeps_its_parameters_away_from_eu(pipeline, tiny_scenario):
    """The oracle (and delta_heldout's retrains) run EU with EU's defaults, not the scenario's CF parameters."""
    scn = replace(tiny_scenario, unlearn=UnlearnConfig(method="cf", params={"epoch_share": 0.2}))
    oracle = pipeline.oracle(scn)
    assert oracle is not None and oracle.method == "eu"
