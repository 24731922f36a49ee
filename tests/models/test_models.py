"""Every registered model on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from deltainf_core import MODELS, build_model


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_models_forward_backward(name, shape):
    torch.manual_seed(0)
    m = build_model(name, shape, 7, (0.5,) * shape[0], (0.25,) * shape[0])
    x = torch.rand(4, *shape)
    out = m(x)
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    assert m.features(x).shape[0] == 4


def test_models_are_seeded():
    torch.manual_seed(3)
    a = build_model("smallcnn", (1, 28, 28), 10, (0.1,), (0.3,))
    torch.manual_seed(3)
    b = build_model("smallcnn", (1, 28, 28), 10, (0.1,), (0.3,))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
