"""Shared fixtures: a private cache per test session and tiny scenarios that train in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]
CIFAR_SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("deltainf-cache"))
    os.environ["DELTAINF_CACHE"] = path
    return path


@pytest.fixture(scope="session")
def tiny_scenario():
    """mnist5k capped to 800 training images, BadNet 5% with a 4x4 trigger, 5 epochs of 64.

    Trains in seconds on a CPU; the trigger is made strong enough to implant on so
    few steps (a 3x3 trigger at 2% did not, PSR 0)."""
    from deltainf_core import AttackConfig, CollapseConfig, DataConfig, Scenario, TrainConfig

    return Scenario(
        data=DataConfig(max_train=800, max_test=300),
        attack=AttackConfig(poison_frac=0.05, params={"size": 4}),
        train=TrainConfig(epochs=5, batch_size=64),
        collapse=CollapseConfig(n_copies=12, n_copies_extra=6, max_affected=3),
        max_rounds=1,
    )


@pytest.fixture(scope="session")
def pipeline(cache_dir):
    from deltainf_core import Pipeline, Store

    return Pipeline(Store(cache_dir))


@pytest.fixture(scope="session")
def mnist_splits():
    from deltainf_core import DataConfig, load_dataset

    return load_dataset(DataConfig())


@pytest.fixture(scope="session")
def cifar_root() -> str:
    """The shared real-CIFAR ImageFolder subset; tests using it skip when it is absent."""
    if not CIFAR_SUBSET.is_dir():
        pytest.skip("../shared/data/cifar10-subset is not present")
    return str(CIFAR_SUBSET)
