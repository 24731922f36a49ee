"""How many epochs a training run gets, and that EU repeats the original recipe."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from deltainf_core.config import AUTO_EPOCHS, TrainConfig
from deltainf_core.errors import ConfigError


def test_auto_epochs_keep_the_default_on_large_sets():
    cfg = TrainConfig()
    assert cfg.epochs is None
    assert cfg.epochs_for(50_000) == AUTO_EPOCHS


def test_auto_epochs_give_small_sets_enough_steps():
    cfg = TrainConfig(min_steps=600, batch_size=128)
    # 1,900 images: 15 mini-batches an epoch, so 40 epochs reach 600 steps.
    assert cfg.epochs_for(1_900) == 40
    for n in (1, 100, 1_900, 4_000, 7_000):
        epochs = cfg.epochs_for(n)
        assert epochs >= AUTO_EPOCHS
        assert epochs * math.ceil(n / 128) >= 600


def test_explicit_epochs_are_exact_and_validated():
    assert TrainConfig(epochs=3).epochs_for(10) == 3
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        TrainConfig(epochs=0).validate()


def test_eu_retrains_with_the_original_epoch_count(tiny_scenario, pipeline):
    # 800 images in batches of 133 are 7 steps an epoch, the 797 retained ones 6: the
    # retrain must run the original run's 15 epochs, not 17 recomputed for 797.
    scn = replace(tiny_scenario, train=replace(tiny_scenario.train, epochs=None, batch_size=133,
                                               min_steps=100))
    n_train = len(pipeline.poisoned(scn).train)
    assert n_train == 800 and scn.train.epochs_for(n_train) == 15
    out = pipeline.unlearn(scn, [0, 1, 2], method="eu")
    assert out.info["epochs"] == 15
    assert out.info["retained"] == 797
