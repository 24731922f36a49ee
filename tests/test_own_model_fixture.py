"""An analyst's own CIFAR-style ResNet (tests/fixtures), trained in plain PyTorch, brought to the tool.

The fixture expects normalised input and returns ``(features, logits)``; the tool must
give exactly the predictions plain PyTorch gives with the same normalisation applied
by hand, then retrain the architecture with its own recipe and score influence on it.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from test_own_model_cli import FIXTURES, MEAN, STD, normalised  # the analyst's normalisation, defined once

from deltainf_core.checkpoints import load_checkpoint
from deltainf_core.config import InfluenceConfig, TrainConfig
from deltainf_core.data.base import DatasetSplits, ImageSet
from deltainf_core.influence import InfluenceEngine
from deltainf_core.misclassified import affected_by_index, misclassified
from deltainf_core.models import ModelSpec, build_like, require_influence_trackable
from deltainf_core.training import accuracy, predict_logits, train_model

SPEC = ModelSpec(f"{FIXTURES / 'cifar_resnet.py'}:CifarResNet", {"width": 8}, 1, MEAN, STD)
PALETTE = torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.7, 0.2], [0.2, 0.3, 0.8], [0.7, 0.7, 0.2]])


def colour_set(n: int, seed: int) -> ImageSet:
    """Four classes of noisy colour fields with a dark square at a random place: easy, but not trivial."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = PALETTE[labels].view(n, 3, 1, 1) + 0.25 * torch.randn(n, 3, 32, 32, generator=gen)
    for i, (r, c) in enumerate(torch.randint(0, 24, (n, 2), generator=gen).tolist()):
        images[i, :, r : r + 8, c : c + 8] *= 0.3
    return ImageSet(images.clamp(0, 1), labels, ("red", "green", "blue", "yellow"))


@pytest.fixture(scope="module")
def splits() -> DatasetSplits:
    return DatasetSplits("colours", colour_set(48, 0), colour_set(32, 1), (0.5,) * 3, (0.25,) * 3)


@pytest.fixture(scope="module")
def users_net(splits):
    """The analyst's script: import their class, train a few steps on normalised input."""
    sys.path.insert(0, str(FIXTURES))
    try:
        net = importlib.import_module("cifar_resnet").CifarResNet(num_classes=4, width=8)
    finally:
        sys.path.remove(str(FIXTURES))
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    x, y = normalised(splits.train.images), splits.train.labels
    net.train()
    for _ in range(20):
        loss = F.cross_entropy(net(x)[1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loaded_model_matches_plain_pytorch(splits, users_net, tmp_path, suffix):
    path = tmp_path / f"users_weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(users_net.state_dict(), str(path))
    else:
        torch.save(users_net.state_dict(), path)
    model = load_checkpoint(str(path), SPEC, splits)
    x = splits.test.images
    with torch.no_grad():
        plain = users_net(normalised(x))[1]
    plain_accuracy = float((plain.argmax(1) == splits.test.labels).float().mean())
    assert plain_accuracy > 0.5, "the fixture should have learnt something for the comparison to mean anything"
    assert accuracy(model, splits.test) == plain_accuracy
    assert torch.allclose(predict_logits(model, x), plain, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(model.features(x), users_net(normalised(x))[0], atol=1e-5)
    wrong = misclassified(model, splits.test)
    assert len(wrong) == round((1 - plain_accuracy) * len(splits.test))
    assert np.array_equal(wrong.predicted, plain.argmax(1).numpy()[wrong.indices])


def test_without_the_users_normalisation_the_predictions_change(splits, users_net, tmp_path):
    """The mean/std are part of the model: forgetting them is not silently harmless."""
    path = tmp_path / "w.pt"
    torch.save(users_net.state_dict(), path)
    raw = ModelSpec(SPEC.model, SPEC.model_kwargs, SPEC.model_output)
    with torch.no_grad():
        plain = users_net(normalised(splits.test.images))[1]
    assert not torch.allclose(predict_logits(load_checkpoint(str(path), raw, splits), splits.test.images), plain)


@pytest.fixture()
def loaded(splits, users_net, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(users_net.state_dict(), path)
    return load_checkpoint(str(path), SPEC, splits)


def test_the_tool_retrains_the_users_architecture(splits, loaded):
    torch.manual_seed(0)
    fresh = build_like(loaded)  # what EU retrains: same class, kwargs, output and normalisation
    assert type(fresh.backbone) is type(loaded.backbone) and fresh.output == 1
    assert fresh.normalize.values() == loaded.normalize.values()
    stats = train_model(fresh, splits.train, TrainConfig(epochs=2, batch_size=16, lr=0.05, min_steps=1),
                        augment_flip=True, device=torch.device("cpu"))
    assert np.isfinite(stats.final_loss)
    assert not torch.equal(fresh.backbone.linear.weight, loaded.backbone.linear.weight)


@pytest.mark.slow
def test_influence_on_the_users_architecture(splits, users_net, loaded, tmp_path):
    layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in users_net.modules())
    assert len(require_influence_trackable(loaded)) == layers
    engine = InfluenceEngine(loaded, splits.train, InfluenceConfig(train_batch_size=32, query_batch_size=4),
                             str(tmp_path))
    queries = affected_by_index(loaded, splits.test, [0, 1, 2])
    scores = engine.scores(queries)
    assert scores.shape == (3, len(splits.train)) and np.isfinite(scores).all()
    # an image's own class supports its prediction more than the other classes do, on average
    own = np.mean([scores[q, (splits.train.labels == queries.labels[q]).numpy()].mean() for q in range(3)])
    other = np.mean([scores[q, (splits.train.labels != queries.labels[q]).numpy()].mean() for q in range(3)])
    assert own > other
