"""EU notices a retrain that failed to fit and trains again from the next seed.

A real divergence cannot be produced on demand on tiny data, so these tests spoil chosen
attempts after they train (weights zeroed: the model predicts one class) and check what
EU does about it: retry from the next initialisation seed, say so, count the cost, and
hand back the best model with a warning when no attempt fits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltainf_core.config import DataConfig, TrainConfig, UnlearnConfig
from deltainf_core.errors import ConfigError, TrainingError, UnlearningError
from deltainf_core.models import build_model
from deltainf_core.training import accuracy, train_model
from deltainf_core.unlearning import UNLEARNERS, UnlearnContext, eu

TRAIN = TrainConfig(epochs=10, batch_size=64, seed=3)


@pytest.fixture(scope="module")
def setting():
    from deltainf_core.data import load_dataset

    splits = load_dataset(DataConfig(max_train=400, max_test=100))

    def build() -> torch.nn.Module:
        return build_model(TRAIN.model, splits.train.image_shape, splits.train.num_classes, splits.mean, splits.std)

    torch.manual_seed(TRAIN.seed)
    model = build()
    train_model(model, splits.train, TRAIN, device=torch.device("cpu"))
    return splits, model, build


def run_eu(setting, **params):
    splits, model, build = setting
    ctx = UnlearnContext(model=model, train=splits.train, forget=np.arange(10), build_model=build,
                         train_config=TRAIN, cfg=UnlearnConfig(method="eu", params=params, seed=0),
                         device=torch.device("cpu"))
    return UNLEARNERS.get("eu")(ctx)


def spoil(monkeypatch, bad_seeds: set[int], error: bool = False) -> list[int]:
    """Make the attempts trained with these recipe seeds fail; returns the seeds trained, in order."""
    seen: list[int] = []

    def train(model, data, cfg, **kw):
        seen.append(cfg.seed)
        if cfg.seed in bad_seeds and error:
            raise TrainingError("training loss became nan at epoch 2; lower the learning rate")
        stats = train_model(model, data, cfg, **kw)
        if cfg.seed in bad_seeds:
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
        return stats

    monkeypatch.setattr(eu, "train_model", train)
    return seen


def test_a_retrain_that_fits_is_kept_without_a_note(setting, monkeypatch):
    seen = spoil(monkeypatch, set())
    out = run_eu(setting)
    assert seen == [TRAIN.seed]
    assert len(out.info["attempts"]) == 1 and out.info["seed"] == TRAIN.seed
    assert out.info["attempts"][0]["fit"] >= 0.5
    assert "note" not in out.info


def test_a_retrain_that_failed_to_fit_is_redone_from_the_next_seed(setting, monkeypatch):
    one = run_eu(setting)
    seen = spoil(monkeypatch, {TRAIN.seed})
    out = run_eu(setting)
    assert seen == [TRAIN.seed, TRAIN.seed + 1]
    first, second = out.info["attempts"]
    assert first["fit"] < 0.5 <= second["fit"]
    assert out.info["seed"] == TRAIN.seed + 1
    assert f"seed {TRAIN.seed + 1}" in out.info["note"]
    assert out.passes == pytest.approx(2 * one.passes, rel=0.1)  # two trainings paid for
    splits = setting[0]
    assert accuracy(out.model, splits.test) > 0.5


def test_a_nan_loss_is_retried_too(setting, monkeypatch):
    seen = spoil(monkeypatch, {TRAIN.seed}, error=True)
    out = run_eu(setting)
    assert seen == [TRAIN.seed, TRAIN.seed + 1]
    assert out.info["attempts"][0]["fit"] is None and "nan" in out.info["attempts"][0]["error"]
    assert "non-finite loss" in out.info["note"]


def test_when_no_attempt_fits_the_best_is_returned_with_a_warning(setting, monkeypatch):
    seen = spoil(monkeypatch, {TRAIN.seed + k for k in range(3)})
    out = run_eu(setting)
    assert seen == [TRAIN.seed, TRAIN.seed + 1, TRAIN.seed + 2]
    assert "failed to fit the retained images in 3 attempts" in out.info["note"]
    assert "lower the learning rate" in out.info["note"] and "\n" not in out.info["note"]


def test_every_attempt_crashing_is_one_sentence(setting, monkeypatch):
    spoil(monkeypatch, {TRAIN.seed + k for k in range(2)}, error=True)
    with pytest.raises(UnlearningError, match="failed in all 2 attempts") as caught:
        run_eu(setting, attempts=2)
    assert "\n" not in str(caught.value)


def test_one_attempt_means_no_retry(setting, monkeypatch):
    seen = spoil(monkeypatch, {TRAIN.seed})
    out = run_eu(setting, attempts=1)
    assert seen == [TRAIN.seed]
    assert "failed to fit the retained images in its one attempt" in out.info["note"]


def test_fit_share_is_measured_above_chance():
    assert eu.fit_share(0.55, 0.9, 0.1) == pytest.approx(0.5625)
    assert eu.fit_share(0.1, 0.9, 0.1) == 0.0
    assert eu.fit_share(0.3, 0.1, 0.1) == 1.0  # a reference at chance gives nothing to compare with


@pytest.mark.parametrize("params", [{"attempts": 0}, {"min_fit": 1.5}])
def test_bad_parameters_are_refused(setting, params):
    with pytest.raises(ConfigError, match="EU needs"):
        run_eu(setting, **params)
