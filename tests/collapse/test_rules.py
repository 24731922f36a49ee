"""The flagging rules: known answers, the registry, and plain functions registered in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from collapse_synthetic import POISONS, fake_queries, synthetic_scores

from deltainf_core import RULES, CollapseEvidence, effect_size, register_rule
from deltainf_core.collapse.rules import (
    EffectSizeParams,
    PublishedVoteParams,
    collapse_votes,
    otsu_threshold,
    published_vote,
    split_rule,
    upper_group_tail,
)
from deltainf_core.errors import ConfigError


def test_otsu_threshold_known_answer():
    assert otsu_threshold(np.array([1.0, 1.1, 0.9, 5.0, 5.2, 4.8])) == 4.8
    assert otsu_threshold(np.array([3.0, 3.0, 3.0])) == 3.0  # nothing to split
    assert otsu_threshold(np.array([2.0])) == 2.0


def test_split_rule_keeps_the_strong_group_and_is_scale_free():
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(0, 1, 3000),          # unrelated images
                        rng.uniform(2.2, 6.0, 300),       # clean target-class images: candidates
                        rng.uniform(15.0, 30.0, 30)])     # poisons
    poisons = np.arange(3300, 3330)
    flagged = split_rule(d)
    assert set(poisons.tolist()) <= set(flagged.tolist())
    assert flagged.size < 60
    assert np.array_equal(split_rule(d * 7.0, floor=14.0), flagged)  # a log split ignores the scale
    assert split_rule(np.array([0.1, 2.5, 9.0])).tolist() == [1, 2]  # too few candidates to split
    assert 0 in split_rule(np.concatenate([[np.inf], d])).tolist()  # d = inf always stays
    with pytest.raises(ConfigError, match="positive candidate effect size"):
        split_rule(d, floor=0.0)


def test_upper_group_tail_lowers_the_cut_only_for_a_spread_group():
    tight = np.log(np.array([2.0, 2.2, 2.4, 8.0, 8.0, 8.0]))
    cut = otsu_threshold(tight)
    assert upper_group_tail(tight, cut, 2.0) == cut  # every member alike: the cut stays
    spread = np.log([2.0, 2.05, 2.1, 2.15, 2.2, 2.25, 2.3, 2.35, 4.0, 6.0, 12.0, 24.0])
    cut = otsu_threshold(spread)
    assert cut == pytest.approx(np.log(6.0))  # the upper group: 6, 12, 24; 4 falls just below
    # log 6, log 12, log 24: mean log 12, sd log 2 · √(2/3)
    assert upper_group_tail(spread, cut, 1.0) == pytest.approx(cut)  # 6.8 is above the cut: never raised
    lowered = upper_group_tail(spread, cut, 2.0)
    assert lowered == pytest.approx(np.log(12.0) - 2 * np.log(2.0) * np.sqrt(2 / 3))  # 3.87
    assert np.log(2.35) < lowered < np.log(4.0)  # keeps 4, none of the lower group
    assert upper_group_tail(np.array([0.1, 5.0, np.inf]), 5.0, 2.0) == 5.0  # one finite member: nothing to spread


def test_split_rule_with_a_tail_keeps_spread_poisons_it_would_miss():
    """Poisons whose log d spreads (sd 0.4) over a tight clean mass, ten draws: the tail never loses a
    poison, finds more on most draws, and leaves a tight group's split as it was."""
    gained = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        d = np.concatenate([np.exp(rng.normal(np.log(6), 0.4, 20)), np.exp(rng.normal(np.log(2.2), 0.25, 300))])
        plain, tail = split_rule(d), split_rule(d, tail_sd=2.0)
        assert np.isin(plain, tail).all()
        gained += np.isin(np.arange(20), tail).sum() > np.isin(np.arange(20), plain).sum()
    assert gained >= 5
    tight = np.concatenate([np.full(20, 8.0), np.exp(np.random.default_rng(0).normal(np.log(2.2), 0.25, 300))])
    np.testing.assert_array_equal(split_rule(tight, tail_sd=2.0), split_rule(tight))


def test_published_vote_known_answer():
    delta = np.array([[-1, -1, 1], [-1, 1, 1], [-1, -1, 1], [-1, -1, -1]], dtype=float)
    assert collapse_votes(delta, 0).tolist() == [4, 3, 1]
    assert published_vote(delta, th=0, n_tolerate=0).tolist() == [0]
    assert published_vote(delta, th=0, n_tolerate=1).tolist() == [0, 1]
    assert published_vote(delta, th=-2, n_tolerate=1).tolist() == []


def test_default_rule_flags_the_poisons_on_broken_copies(evidence):
    out = RULES.get("delta")(evidence, EffectSizeParams(split=False))
    assert set(POISONS) <= set(out.flagged.tolist()) and out.flagged.size <= 10
    np.testing.assert_array_equal(out.statistic, effect_size(evidence.stats, kept_only=True))
    split = RULES.get("delta")(evidence, EffectSizeParams())
    assert set(split.flagged.tolist()) <= set(out.flagged.tolist())  # the split keeps an upper group
    np.testing.assert_array_equal(split.flagged, split_rule(out.statistic, 2.0))
    assert out.info["threshold"] == 2.0 and out.info["broken_only"]
    assert out.info["n_copies_used"] == int(evidence.broken.sum())
    every = RULES.get("delta")(evidence, EffectSizeParams(broken_only=False))
    np.testing.assert_array_equal(every.statistic, effect_size(evidence.stats))
    assert every.info["n_copies_used"] == int((~evidence.queries.is_original).sum())
    assert not np.allclose(every.statistic, out.statistic)  # the toggle changes d


def test_default_rule_needs_predictions_for_broken_copies():
    q = fake_queries()
    with pytest.raises(ConfigError, match="prediction for every query"):
        RULES.get("delta")(CollapseEvidence(synthetic_scores(), q, None, 0), EffectSizeParams())
    out = RULES.get("delta")(CollapseEvidence(synthetic_scores(), q, None, 0),
                             EffectSizeParams(broken_only=False, split=False))
    assert set(POISONS) <= set(out.flagged.tolist())


def test_published_rule_uses_the_chosen_copies(evidence):
    out = RULES.get("delta_published")(evidence, PublishedVoteParams(th=0.0, n_tolerate=2), ["flip"])
    n_flip = int((evidence.queries.transform == "flip").sum())
    assert out.info["n_copies"] == n_flip and out.info["threshold"] == n_flip - 2
    assert out.statistic.max() <= n_flip and set(POISONS) <= set(out.flagged.tolist())


def test_a_plain_function_registers_in_one_line(evidence):
    """The signature a new rule module uses: params come from the keyword arguments."""

    def at_least_half_votes(scores, queries, predicted, target_class, *, th: float = 0.0):
        delta = scores[queries.copy_rows()] - scores[queries.original_row_of()]
        votes = (delta < th).mean(axis=0)
        return np.flatnonzero(votes >= 0.5), votes, {"th": th}

    register_rule("toy_half_vote", at_least_half_votes, "half the copies vote", statistic="share")
    try:
        params = RULES.parse_params("toy_half_vote", {"th": -1})
        assert dataclasses.asdict(params) == {"th": -1.0}
        out = RULES.get("toy_half_vote")(evidence, params, ["flip", "blur"])
        assert set(POISONS) <= set(out.flagged.tolist())
        assert out.statistic.shape == (evidence.n_train,) and RULES.trait("toy_half_vote", "statistic") == "share"
        with pytest.raises(ConfigError, match="unknown flagging rule 'toy_half_vote' parameter"):
            RULES.parse_params("toy_half_vote", {"threshold": 1})
    finally:
        RULES.unregister("toy_half_vote")
    with pytest.raises(TypeError, match="needs a default"):
        register_rule("bad", lambda s, q, p, t, k: (None, None, {}), "no default")
