"""studies/retrain_noise.py's prior correction: the offset that restores the training set's class prior."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))

from studies.retrain_noise import corrected, prior_shift  # noqa: E402


def test_prior_shift_is_the_log_ratio_of_class_counts_and_skips_a_class_never_kept():
    shift = prior_shift(np.array([200, 100, 50]), np.array([200, 25, 0]), tau=1.0)
    np.testing.assert_allclose(shift, [0.0, np.log(4.0), 0.0])
    half = prior_shift(np.array([200, 100]), np.array([200, 25]), tau=0.5)
    np.testing.assert_allclose(half, [0.0, 0.5 * np.log(4.0)])
    np.testing.assert_array_equal(prior_shift(np.array([10, 10]), np.array([5, 5]), tau=0.0), [0.0, 0.0])


def test_corrected_moves_a_close_call_to_the_class_a_retrain_saw_less_of():
    # class 1 kept a quarter of its images: a logit gap under log 4 turns into a class-1 prediction
    z = {"test": np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]]), "test_y": np.array([1, 0, 1]),
         "psr": np.array([[0.5, 0.0], [2.0, 0.0]]), "target": 1,
         "n_all": np.array([100, 100]), "n_kept": np.array([100, 25])}
    raw, full = corrected(z, 0.0), corrected(z, 1.0)
    assert raw == {"accuracy": pytest.approx(100 * 2 / 3), "psr": 0.0, "target_class_accuracy": 50.0}
    assert full == {"accuracy": 100.0, "psr": 50.0, "target_class_accuracy": 100.0}


def test_prior_pairs_each_eu_retrain_with_the_oracle_of_its_seed(tmp_path):
    import argparse
    import json

    from studies.retrain_noise import prior

    def save(name, test, n_kept):
        np.savez(tmp_path / name, test=np.array(test), test_y=np.array([0, 1]), psr=np.array([[1.0, 0.0]]),
                 target=1, n_all=np.array([10, 10]), n_kept=np.array(n_kept))

    save("cifar-smooth-2-5-seed0.npz", [[2.0, 0.0], [1.0, 0.0]], [10, 2])    # class 1 mostly removed
    save("cifar-smooth-2-oracle-seed0.npz", [[2.0, 0.0], [0.0, 1.0]], [10, 10])
    save("cifar-smooth-2-5-seed1.npz", [[2.0, 0.0], [1.0, 0.0]], [10, 2])    # no oracle of seed 1: skipped
    out = tmp_path / "prior.json"
    prior(argparse.Namespace(logits=str(tmp_path), out=str(out)))
    cells = {c["tau"]: c for c in json.loads(out.read_text())["cells"]}
    assert [r["seed"] for r in cells[0.0]["rows"]] == [0]
    assert cells[0.0]["mean_gap"] == -50.0  # EU calls the class-1 image class 0; the oracle does not
    assert cells[1.0]["mean_gap"] == 0.0    # log 5 > 1: the correction gives it back
