"""studies/rule_ceiling.py: the bound it reports is the smallest top-k of a statistic, among images labelled as
the target, that holds the recall the bar asks for."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from studies.rule_ceiling import auc_within_target, ceiling  # noqa: E402


def test_ceiling_is_the_top_k_that_first_holds_the_poisons():
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 1])
    stat = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 10.0, 11.0, 1.0])
    is_poison = np.array([1, 0, 1, 0, 1, 0, 0, 0], dtype=bool)
    # all three poisons: ranks 1, 3, 5 among the target-labelled images; the two higher
    # images labelled 0 are not candidates (a rule may read the training labels)
    assert ceiling(stat, is_poison, labels, target=1, recall=1.0) == {"flagged": 5, "precision": 3 / 5}
    # two of three (recall 0.6 rounds up to two poisons): the top three
    assert ceiling(stat, is_poison, labels, target=1, recall=0.6) == {"flagged": 3, "precision": 2 / 3}


def test_ceiling_treats_nan_as_the_lowest_value():
    labels = np.ones(4, dtype=int)
    stat = np.array([np.nan, 3.0, 2.0, 1.0])
    is_poison = np.array([True, False, False, False])
    assert ceiling(stat, is_poison, labels, target=1, recall=1.0) == {"flagged": 4, "precision": 0.25}


def test_auc_is_measured_within_the_target_class_only():
    labels = np.array([1, 1, 1, 1, 0, 0])
    is_poison = np.array([True, True, False, False, False, False])
    stat = np.array([5.0, 4.0, 3.0, 2.0, 100.0, 100.0])  # high values outside the class do not count
    assert auc_within_target(stat, is_poison, labels, 1) == 1.0
    assert auc_within_target(-stat, is_poison, labels, 1) == 0.0
    assert auc_within_target(stat, np.zeros(6, dtype=bool), labels, 1) is None
