"""The seven published test-time transformations, applied in pixel space ``[0, 1]``.

Each one is meant to break a trigger's link to the target class while keeping the
image recognisable; parameters are the published ones (SPEC §1). They act on
pixels *before* normalisation (normalisation lives in the model), so colour
jitter and invert mean what they say.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from ..registry import Registry

ImageTransform = Callable[[torch.Tensor], torch.Tensor]
"""Maps one ``[C, H, W]`` image in ``[0, 1]`` to another; randomness from torch's RNG."""


def _channel_swap(img: torch.Tensor) -> torch.Tensor:
    """Swap red and green; a single-channel image has nothing to swap."""
    if img.shape[0] < 2:
        return img.clone()
    out = img.clone()
    out[[0, 1]] = img[[1, 0]]
    return out


def _colour_only(tf: v2.Transform) -> ImageTransform:
    """Saturation/hue need three channels; grayscale images get the rest of the jitter."""

    def apply(img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] == 3:
            return tf(img)
        return v2.ColorJitter(brightness=tf.brightness, contrast=tf.contrast)(img)

    return apply


def _elastic(alpha: float = 150.0, sigma: float = 5.0) -> ImageTransform:
    """Elastic deformation; the smoothing kernel shrinks for images under ~42 px so it fits."""
    full = v2.ElasticTransform(alpha=alpha, sigma=sigma)

    def apply(img: torch.Tensor) -> torch.Tensor:
        side = min(img.shape[-2:])
        if 8 * sigma + 1 < side:
            return full(img)
        return v2.ElasticTransform(alpha=alpha, sigma=max(0.5, (side - 2) / 8))(img)

    return apply


TRANSFORMS: Registry[ImageTransform] = Registry("transformation", {
    "title": "",  # how figures and the app name it ("" = the registry name)
    "short": "",  # a caption-sized label under a thumbnail ("" = the title)
    "identity_on_gray": False,  # leaves a one-channel image unchanged (nothing to act on)
})
TRANSFORMS.register("flip", v2.RandomHorizontalFlip(p=1.0), "horizontal flip", title="horizontal flip",
                    short="flip")
TRANSFORMS.register(
    "color_jitter",
    _colour_only(v2.ColorJitter(brightness=(0.9, 1.1), contrast=(0.9, 1.1), saturation=(0.6, 1.4),
                                hue=(-0.1, 0.1))),
    "colour jitter (brightness, contrast, saturation, hue)", title="colour jitter", short="jitter",
)
TRANSFORMS.register("affine", v2.RandomAffine(degrees=(-180, 180), scale=(1, 2), shear=10),
                    "random rotation, zoom and shear", title="random affine", short="affine")
TRANSFORMS.register("elastic", _elastic(alpha=150.0), "elastic deformation", title="elastic")
TRANSFORMS.register("blur", v2.GaussianBlur(kernel_size=(5, 9), sigma=(8, 10)), "strong Gaussian blur",
                    title="Gaussian blur", short="blur")
TRANSFORMS.register("invert", v2.RandomInvert(p=1.0), "colour inversion", title="invert")
TRANSFORMS.register("channel_swap", _channel_swap, "red/green channel swap", title="red/green swap", short="R↔G",
                    identity_on_gray=True)


def transform_title(name: str) -> str:
    """The display title of a transformation (its name when it declares none or is unknown)."""
    return (TRANSFORMS.trait(name, "title") or name) if name in TRANSFORMS else name


def transform_short(name: str) -> str:
    """A caption-sized label for a transformation."""
    return (TRANSFORMS.trait(name, "short") or transform_title(name)) if name in TRANSFORMS else name


def apply_transform(name: str, image: torch.Tensor, seed: int) -> torch.Tensor:
    """Apply transformation ``name`` to one image with its own seeded RNG (reproducible)."""
    fn = TRANSFORMS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = fn(image)
    return out.clamp(0.0, 1.0).to(torch.float32)
