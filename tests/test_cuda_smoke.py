"""On a GPU: bf16 training and kronfluence scoring run on CUDA and agree with float32 in kind,
and the same config gives the same model and scores twice (the cache relies on it).

Skipped where no CUDA device exists (the CI machines); run it wherever one does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def small(mnist_splits):
    return mnist_splits.train.subset(np.arange(512)), mnist_splits.test.subset(np.arange(256))


def _model(splits, seed=0):
    from deltainf_core.models import build_model

    torch.manual_seed(seed)
    return build_model("smallcnn", splits.train.image_shape, 10, splits.mean, splits.std)


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_training_runs_on_cuda(mnist_splits, small, precision):
    from deltainf_core.config import TrainConfig
    from deltainf_core.training import accuracy, train_model

    train, test = small
    model = _model(mnist_splits)
    cfg = replace(TrainConfig(epochs=3, batch_size=64), precision=precision)
    stats = train_model(model, train, cfg, augment_flip=False, device=torch.device("cuda"))
    assert next(model.parameters()).is_cuda and np.isfinite(stats.final_loss)
    assert accuracy(model, test) > 0.5  # learnt something in three short epochs


def test_influence_scores_on_cuda(mnist_splits, small, tmp_path):
    from deltainf_core.config import InfluenceConfig
    from deltainf_core.influence import InfluenceEngine

    train, test = small
    model = _model(mnist_splits).cuda()
    eng = InfluenceEngine(model, train, InfluenceConfig(), str(tmp_path / "f32"))
    scores = eng.scores(test.subset(np.arange(4)))
    assert eng.device.type == "cuda" and scores.shape == (4, 512) and np.isfinite(scores).all()
    amp = InfluenceEngine(model, train, InfluenceConfig(amp_dtype="bf16"), str(tmp_path / "bf16"))
    low = amp.scores(test.subset(np.arange(4)))
    # bf16 changes magnitudes a little, not which training images matter most
    top = [set(np.argsort(-row)[:20]) for row in (scores[0], low[0])]
    assert len(top[0] & top[1]) >= 10


def test_same_config_same_model_and_scores_on_cuda(mnist_splits, small, tmp_path):
    from deltainf_core.config import InfluenceConfig, TrainConfig
    from deltainf_core.influence import InfluenceEngine
    from deltainf_core.training import pick_device, train_model

    train, test = small
    device = pick_device()
    models = []
    for _ in range(2):
        model = _model(mnist_splits)
        train_model(model, train, TrainConfig(epochs=2, batch_size=64, seed=3), augment_flip=False, device=device)
        models.append(model)
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    scores = [InfluenceEngine(models[0], train, InfluenceConfig(), str(tmp_path / f"run{i}")).scores(
        test.subset(np.arange(4))) for i in range(2)]
    np.testing.assert_array_equal(scores[0], scores[1])
