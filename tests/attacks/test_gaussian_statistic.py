"""The Gaussian-poisoning statistic: N(0, 1) for a model that never saw the noise, large when it did."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deltainf_core.attacks.gaussian import attack, gaussian_poisoning_statistic, poisoning_projections
from deltainf_core.config import AttackConfig, DataConfig, TrainConfig
from deltainf_core.data import load_dataset
from deltainf_core.errors import ConfigError
from deltainf_core.models import build_model
from deltainf_core.training import no_progress, train_model

SIGMA = 0.1
# Small set, half of it noisy, no crop augmentation, enough epochs to fit: the trace is strong.
# (With the default crop augmentation and 1% poisons on mnist5k the trace is too weak to detect.)
TRAIN = TrainConfig(epochs=15, batch_size=32, augment=False, seed=1)


@pytest.fixture(scope="module")
def setup():
    splits = load_dataset(DataConfig(max_train=300, max_test=50))
    cfg = AttackConfig("gaussian", poison_frac=0.5, params={"sigma": SIGMA}, seed=1).resolved(10)
    scn = attack(splits, cfg, TRAIN, no_progress)
    models = {}
    for name, data in (("with_noise", scn.train), ("never_saw_noise", splits.train)):
        torch.manual_seed(TRAIN.seed)
        model = build_model("smallcnn", splits.train.image_shape, 10, splits.mean, splits.std)
        train_model(model, data, TRAIN, augment_flip=False)
        models[name] = model.eval()
    idx = torch.as_tensor(scn.poison_indices)
    return models, splits.train.images[idx], splits.train.labels[idx], scn.noise


def test_trained_with_noise_is_detected(setup):
    models, clean, labels, noise = setup
    stat = gaussian_poisoning_statistic(models["with_noise"], clean, labels, noise, SIGMA)
    assert stat["n"] == len(clean) == 150
    assert stat["z"] > 4
    assert stat["p_value"] < 1e-4


def test_never_trained_on_noise_is_null(setup):
    models, clean, labels, noise = setup
    stat = gaussian_poisoning_statistic(models["never_saw_noise"], clean, labels, noise, SIGMA)
    assert abs(stat["z"]) < 2
    assert stat["p_value"] > 0.01


def test_null_distribution_is_standard_normal(setup):
    # Fresh noise the model cannot know: pooled over 10 draws the projections must be N(0, 1).
    models, clean, labels, _ = setup
    gen = torch.Generator().manual_seed(123)
    draws = [poisoning_projections(models["with_noise"], clean, labels,
                                   torch.randn(clean.shape, generator=gen) * SIGMA, SIGMA) for _ in range(10)]
    s = torch.cat(draws).numpy()
    assert abs(s.mean()) < 4 / math.sqrt(len(s))
    assert s.std() == pytest.approx(1.0, abs=0.06)


def test_z_and_p_value_follow_their_definitions(setup):
    models, clean, labels, noise = setup
    stat = gaussian_poisoning_statistic(models["with_noise"], clean[:40], labels[:40], noise[:40], SIGMA)
    s = poisoning_projections(models["with_noise"], clean[:40], labels[:40], noise[:40], SIGMA).numpy()
    assert stat["mean"] == pytest.approx(float(np.mean(s)))
    assert stat["std"] == pytest.approx(float(np.std(s)))
    assert stat["z"] == pytest.approx(stat["mean"] * math.sqrt(40))
    assert stat["p_value"] == pytest.approx(0.5 * math.erfc(stat["z"] / math.sqrt(2)))


def test_statistic_rejects_mismatched_inputs(setup):
    models, clean, labels, noise = setup
    with pytest.raises(ConfigError):
        gaussian_poisoning_statistic(models["with_noise"], clean, labels, noise[:-1], SIGMA)
    with pytest.raises(ConfigError):
        gaussian_poisoning_statistic(models["with_noise"], clean, labels, noise, 0.0)
