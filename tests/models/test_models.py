"""Every registered model and transformation on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from deltainf_core import MODELS, TRANSFORMS, apply_transform, build_model


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


def test_seven_published_transforms():
    assert set(TRANSFORMS.names()) == {"flip", "color_jitter", "affine", "elastic", "blur", "invert", "channel_swap"}


@pytest.mark.parametrize("name", TRANSFORMS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_transforms_stay_in_pixel_space_and_are_seeded(name, channels):
    img = torch.rand(channels, 16, 16, generator=torch.Generator().manual_seed(1))
    a = apply_transform(name, img, seed=5)
    b = apply_transform(name, img, seed=5)
    assert a.shape == img.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    if name in ("flip", "invert", "affine", "elastic", "blur") or (name == "channel_swap" and channels == 3):
        assert not torch.allclose(a, img)


def test_invert_and_swap_mean_what_they_say():
    img = torch.rand(3, 8, 8)
    assert torch.allclose(apply_transform("invert", img, 0), 1 - img)
    swapped = apply_transform("channel_swap", img, 0)
    assert torch.equal(swapped[0], img[1]) and torch.equal(swapped[1], img[0]) and torch.equal(swapped[2], img[2])
