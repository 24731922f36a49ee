"""Every registered detector on tiny data: flagged indices plus a per-image score, same contract for all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltainf_core import DETECTORS, CollapseConfig, DataConfig, DetectConfig, TrainConfig, load_dataset
from deltainf_core.collapse.heldout import HeldOutRetrain
from deltainf_core.detectors.base import DetectionContext
from deltainf_core.errors import ConfigError
from deltainf_core.models import build_model
from deltainf_core.training import train_model

PLANTED = np.arange(5)


@pytest.fixture(scope="module")
def tiny_splits():
    return load_dataset(DataConfig(max_train=300, max_test=100))


@pytest.fixture(scope="module")
def tiny_model(tiny_splits):
    torch.manual_seed(0)
    s = tiny_splits
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    train_model(m, s.train, TrainConfig(epochs=1), augment_flip=False)
    return m


class FakeScorer:
    """Influence that singles out training images 0..4 for every query and collapses on every copy."""

    def __init__(self, n_train: int):
        self.n_train = n_train

    def scores(self, queries):
        rng = np.random.default_rng(len(queries))
        s = rng.normal(0, 1, (len(queries), self.n_train)).astype(np.float32)
        s[:, PLANTED] += 50.0
        originals = (queries.labels == queries.labels[0]).numpy()
        s[np.ix_(~originals, PLANTED)] -= 100.0
        return s


def test_detector_contract(detector_name, tiny_splits, tiny_model, with_toys):
    s = tiny_splits
    affected = s.test.subset([0, 1])
    ctx = DetectionContext(tiny_model, s.train, affected, 1, DetectConfig(detector=detector_name),
                           CollapseConfig(n_copies=6, n_copies_extra=3), FakeScorer(len(s.train)),
                           expected_poisons=len(PLANTED))
    if DETECTORS.trait(detector_name, "needs_retrain"):
        with pytest.raises(ConfigError, match="retrains"):
            DETECTORS.get(detector_name)(ctx)
        ctx.heldout = HeldOutRetrain(lambda exclude: tiny_model, s.train, s.test)  # not retrained: the shape only
    det = DETECTORS.get(detector_name)(ctx)
    assert det.method == detector_name
    assert det.scores.shape == (len(s.train),)
    f = np.asarray(det.flagged)
    assert f.dtype.kind == "i" and (np.sort(f) == f).all() and len(np.unique(f)) == len(f)
    assert f.size == 0 or (f.min() >= 0 and f.max() < len(s.train))
    if DETECTORS.trait(detector_name, "needs_influence"):
        assert set(PLANTED.tolist()) <= set(f.tolist())  # the planted collapse is found
        with pytest.raises(ConfigError, match="influence"):
            DETECTORS.get(detector_name)(DetectionContext(tiny_model, s.train, affected, 1,
                                                          DetectConfig(detector=detector_name)))


def test_detector_parameters_describe_themselves(detector_name, with_toys):
    entry = DETECTORS.entry(detector_name)
    assert entry.help and all(entry.param_help().values())
    with pytest.raises(ConfigError, match="no_such_knob"):
        DETECTORS.parse_params(detector_name, {"no_such_knob": 1})
