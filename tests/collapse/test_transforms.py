"""Every registered test-time transformation on tiny images (toys included)."""

from __future__ import annotations

import pytest
import torch

from deltainf_core import TRANSFORMS, CollapseConfig, apply_transform
from deltainf_core.collapse.transforms import transform_short, transform_title


@pytest.mark.parametrize("channels", [1, 3])
def test_transforms_stay_in_pixel_space_and_are_seeded(transform_name, channels, with_toys):
    img = torch.rand(channels, 16, 16, generator=torch.Generator().manual_seed(1))
    a = apply_transform(transform_name, img, seed=5)
    b = apply_transform(transform_name, img, seed=5)
    assert a.shape == img.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    identity = channels == 1 and TRANSFORMS.trait(transform_name, "identity_on_gray")
    assert torch.allclose(a, img) == identity  # every transformation changes the image unless it says not
    assert transform_title(transform_name) and transform_short(transform_name)


def test_the_default_draw_is_every_registered_transformation(with_toys):
    assert CollapseConfig().transforms == tuple(TRANSFORMS.names())


def test_the_published_transforms_are_registered():
    assert {"flip", "color_jitter", "affine", "elastic", "blur", "invert", "channel_swap"} <= set(TRANSFORMS.names())


def test_invert_and_swap_mean_what_they_say():
    img = torch.rand(3, 8, 8)
    assert torch.allclose(apply_transform("invert", img, 0), 1 - img)
    swapped = apply_transform("channel_swap", img, 0)
    assert torch.equal(swapped[0], img[1]) and torch.equal(swapped[1], img[0]) and torch.equal(swapped[2], img[2])
