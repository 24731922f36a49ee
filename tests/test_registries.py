"""Every registry entry on tiny data: a new attack or detector is tested the moment it registers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from deltainf_core import ATTACKS, DETECTORS, AttackConfig, CollapseConfig, DataConfig, DetectConfig, load_dataset
from deltainf_core.detectors.base import DetectionContext
from deltainf_core.models import build_model
from deltainf_core.training import train_model

FAST_PARAMS = {"witches_brew": {"steps": 3, "restarts": 1}}
"""Per-attack parameters that keep a registry check to seconds (crafting steps etc.)."""


@pytest.fixture(scope="module")
def tiny_splits():
    return load_dataset(DataConfig(max_train=300, max_test=100))


@pytest.fixture(scope="module")
def tiny_model(tiny_splits):
    from deltainf_core import TrainConfig

    torch.manual_seed(0)
    s = tiny_splits
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    train_model(m, s.train, TrainConfig(epochs=1), augment_flip=False)
    return m


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_contract(name, tiny_splits):
    from deltainf_core import TrainConfig

    s = tiny_splits
    params = dict(FAST_PARAMS.get(name, {}))
    if name == "witches_brew":  # a one-epoch surrogate may get no test image right: name the target
        params["target_index"] = int(np.flatnonzero(s.test.labels.numpy() == 0)[0])
    cfg = AttackConfig(name=name, poison_frac=0.02, params=params).resolved(10)
    out = ATTACKS.get(name)(s, cfg, TrainConfig(epochs=1), lambda f, m: None)
    assert len(out.train) == len(s.train) and out.train.image_shape == s.train.image_shape
    assert float(out.train.images.min()) >= -1e-6 or name == "gaussian"
    idx = np.asarray(out.poison_indices)
    assert idx.dtype.kind == "i" and len(np.unique(idx)) == len(idx)
    if name != "none":
        assert len(idx) == 6 and idx.min() >= 0 and idx.max() < len(s.train)
        changed = ~(out.train.images == s.train.images).flatten(1).all(1) | (out.train.labels != s.train.labels)
        assert set(np.flatnonzero(changed.numpy())) <= set(idx.tolist())  # only poisons change
    assert len(out.psr_set) == len(out.psr_source_indices)
    if len(out.psr_set):
        assert (out.psr_set.labels == s.test.labels[torch.as_tensor(out.psr_source_indices)]).all()
    back = pickle.loads(pickle.dumps(out))  # the store pickles scenarios
    assert torch.equal(back.train.images, out.train.images)
    assert torch.equal(back.trigger(s.test.images[:2]), out.trigger(s.test.images[:2]))


class FakeScorer:
    """Influence that singles out training images 0..4 for every query."""

    def __init__(self, n_train: int):
        self.n_train = n_train

    def scores(self, queries):
        rng = np.random.default_rng(len(queries))
        s = rng.normal(0, 1, (len(queries), self.n_train)).astype(np.float32)
        s[:, :5] += 50.0
        originals = (queries.labels == queries.labels[0]).numpy()
        s[~originals, :5] -= 100.0  # collapse on every relabelled copy
        return s


@pytest.mark.parametrize("name", DETECTORS.names())
def test_detector_contract(name, tiny_splits, tiny_model):
    s = tiny_splits
    affected = s.test.subset([0, 1])
    affected.labels[:] = 1
    ctx = DetectionContext(tiny_model, s.train, affected, 1, DetectConfig(method=name),
                           CollapseConfig(n_copies=6, n_copies_extra=3), FakeScorer(len(s.train)),
                           expected_poisons=5)
    det = DETECTORS.get(name)(ctx)
    assert det.scores.shape == (len(s.train),) and np.isfinite(det.scores[np.isfinite(det.scores)]).all()
    f = np.asarray(det.flagged)
    assert (np.sort(f) == f).all() and len(np.unique(f)) == len(f)
    assert f.size == 0 or (f.min() >= 0 and f.max() < len(s.train))
    if name.startswith("delta") or name == "influence_topk":
        assert set(range(5)) <= set(f.tolist())  # the planted collapse is found
