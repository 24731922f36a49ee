"""Shared pieces of the scale-out tests: a tiny workload and a back-end that runs units in this process.

``SerialBackend`` runs every unit through the workers' own code (``units.run_unit``: its own
attempt folder, its own analyzer, an atomic commit) one after the other, so the driver's merge
is tested in seconds without Ray; the Ray tests (slow-marked) run the same units as tasks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltainf_core import influence
from deltainf_core.config import InfluenceConfig
from deltainf_core.influence import InfluenceEngine
from deltainf_core.models import build_model
from deltainf_core.scaleout.driver import Board
from deltainf_core.scaleout.units import UnitJob, run_unit
from deltainf_core.store import Store

CHUNK = 32
"""Images per partition and score chunk: 96 images make three units of each kind."""


class SerialBackend:
    """``driver.Backend`` that runs each unit here, in order; ``ran`` lists the steps it computed."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, jobs: list[UnitJob], board: Board) -> None:
        threads = torch.get_num_threads()
        try:
            for job in jobs:
                _step, attempt = run_unit(job)
                self.ran.append(job.name)
                board.finish(job, attempt)
        finally:
            torch.set_num_threads(threads)  # run_unit sets the unit's thread count


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(influence, "CHUNK", CHUNK)


@pytest.fixture(scope="module")
def tiny(mnist_splits):
    """96 mnist5k training images, 3 queries, an untrained SmallCNN (factors need no trained model)."""
    train = mnist_splits.train.subset(np.arange(96)).to_uint8()
    queries = mnist_splits.test.subset(np.arange(3)).to_uint8()
    torch.manual_seed(0)
    model = build_model("smallcnn", train.image_shape, 10, mnist_splits.mean, mnist_splits.std)
    return model, train, queries


def engine(tiny, cache, runner=None) -> InfluenceEngine:
    model, train, _ = tiny
    store = Store(str(cache))
    return InfluenceEngine(model, train, InfluenceConfig(train_batch_size=32), str(cache),
                           score_cache=(store.get, store.set), key="influence-tiny", runner=runner)


def factor_contents(folder: str) -> dict:
    """Every factor file's tensors and metadata (kronfluence's JSON files as text).

    Content, not bytes: safetensors writes its metadata map in a per-process hash order, so two
    processes that save equal tensors with equal metadata can write different bytes.
    """
    import json
    import os

    from safetensors import safe_open

    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".safetensors"):
            with safe_open(path, "pt") as fh:
                out[name] = ({k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata())  # noqa: SIM118
        elif name.endswith(".json"):
            with open(path) as fh:
                out[name] = json.load(fh)
    return out


def assert_same_factors(a: str, b: str) -> None:
    """The two factor folders hold the same files with bit-identical tensors."""
    fa, fb = factor_contents(a), factor_contents(b)
    assert sorted(fa) == sorted(fb)
    for name, value in fa.items():
        if isinstance(value, tuple):
            tensors, meta = value
            assert meta == fb[name][1], name
            assert sorted(tensors) == sorted(fb[name][0]), name
            for k, t in tensors.items():
                assert torch.equal(t, fb[name][0][k]), f"{name}:{k}"
        else:
            assert value == fb[name], name
