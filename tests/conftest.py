"""Shared fixtures: a private cache per test session, tiny scenarios that train in seconds, and
registry-parametrised tests that include a toy entry of each family (``toys``)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]
CIFAR_SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"

REGISTRY_ARGS = {"attack_name": "ATTACKS", "detector_name": "DETECTORS", "transform_name": "TRANSFORMS",
                 "unlearner_name": "UNLEARNERS"}
"""A test argument with one of these names runs once per entry of that registry, toys included."""


def registry_names(argname: str) -> list[str]:
    """The entries a registry-parametrised test runs on: every registered one plus the toy."""
    import toys

    import deltainf_core

    with toys.registered():
        return getattr(deltainf_core, REGISTRY_ARGS[argname]).names()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for argname in REGISTRY_ARGS:
        if argname in metafunc.fixturenames:
            metafunc.parametrize(argname, registry_names(argname))


@pytest.fixture
def with_toys():
    """The toy entries, registered for one test (a contract test run on a toy needs them)."""
    import toys

    with toys.registered():
        yield


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


@pytest.fixture(autouse=True)
def app_py_runs_every_time():
    """AppTest runs app.py on every run, as the server does (``app_driver.app_py_runs_every_time``).

    A core-only environment (no Streamlit, e.g. a GPU box running the CUDA smoke tests)
    has no app to run, so the fixture does nothing there.
    """
    keep_navigation = _keep_navigation()
    if keep_navigation is None:
        yield
        return
    with keep_navigation():
        yield


@functools.cache
def _keep_navigation():
    """The app driver's navigation fix, found once per session; None without Streamlit."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        return None
    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from app_driver import app_py_runs_every_time

    return app_py_runs_every_time
