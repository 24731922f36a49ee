"""torchvision's classification architectures by name (``torchvision:NAME``), for any image size.

Built with ``weights=None`` (no downloads: the analyst brings weights with a checkpoint)
and the data's number of classes. The first convolution takes the data's channel
count (same kernel, stride and padding when the images are large). Images of at most
``SMALL_SIDE`` pixels get what CIFAR versions of each family use, so the feature
maps are not 1×1 after the stem:

=====================================  =======================================================
family (torchvision class)             change for small images
=====================================  =======================================================
ResNet, ResNeXt, Wide ResNet (ResNet)  conv1 → 3×3 stride 1; maxpool → Identity
DenseNet                               features.conv0 → 3×3 stride 1; features.pool0 → Identity
ShuffleNetV2                           conv1 → 3×3 stride 1; maxpool → Identity
GoogLeNet                              conv1 → 3×3 stride 1; maxpool1 → Identity
MobileNetV2/V3, EfficientNet (+V2),    first conv → 3×3 stride 1
MNASNet, RegNet, SqueezeNet
AlexNet                                features.0 → 3×3 stride 1; avgpool → 1×1;
                                       classifier.1 → Linear(256, 4096)
VGG (all, with or without BN)          avgpool → 1×1; classifier.0 → Linear(512, 4096); a
                                       max-pool that would leave less than 1 pixel → Identity
ConvNeXt                               features.0.0 → 2×2 stride 2 patchify (was 4×4 stride 4)
Inception3                             Conv2d_1a_3x3 → 3×3 stride 1; maxpool1, maxpool2 → Identity
VisionTransformer, MaxVit              image_size / input_size set to the images' size (always)
SwinTransformer and anything else      nothing
=====================================  =======================================================

Replaced layers are initialised as torchvision's families do (convolutions Kaiming
normal, fan-out; linear layers N(0, 0.01)). GoogLeNet and Inception3 are built without
auxiliary heads. A checkpoint made with torchvision's stock stem still loads: the
loader tries the stock variant (``small_images=False``) when the adapted one does not fit.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import torchvision
from torch import nn

from ..errors import ConfigError, UnknownNameError
from .base import ModelError

SMALL_SIDE = 64
"""Images at most this many pixels on a side get the small-image adaptations."""


@dataclass(frozen=True)
class _Adapt:
    stem: tuple[int, int, int] | None = None  # kernel, stride, padding of the first conv
    identity: tuple[str, ...] = ()  # modules replaced by nn.Identity
    head: tuple[str, str] | None = None  # (adaptive pool, first Linear): pool to 1×1
    shrink_pools: bool = False  # drop max-pools that would leave less than one pixel


_CIFAR_STEM = (3, 1, 1)
FAMILIES: dict[str, _Adapt] = {
    "ResNet": _Adapt(_CIFAR_STEM, ("maxpool",)),
    "DenseNet": _Adapt(_CIFAR_STEM, ("features.pool0",)),
    "ShuffleNetV2": _Adapt(_CIFAR_STEM, ("maxpool",)),
    "GoogLeNet": _Adapt(_CIFAR_STEM, ("maxpool1",)),
    "MobileNetV2": _Adapt(_CIFAR_STEM),
    "MobileNetV3": _Adapt(_CIFAR_STEM),
    "EfficientNet": _Adapt(_CIFAR_STEM),
    "MNASNet": _Adapt(_CIFAR_STEM),
    "RegNet": _Adapt(_CIFAR_STEM),
    "SqueezeNet": _Adapt(_CIFAR_STEM),
    "AlexNet": _Adapt(_CIFAR_STEM, head=("avgpool", "classifier.1")),
    "VGG": _Adapt(head=("avgpool", "classifier.0"), shrink_pools=True),
    "ConvNeXt": _Adapt((2, 2, 0)),
    "Inception3": _Adapt(_CIFAR_STEM, ("maxpool1", "maxpool2")),
}
"""Small-image adaptations per torchvision class (the table in the module docstring)."""


def classification_models() -> list[str]:
    return list(torchvision.models.list_models(module=torchvision.models))


def build(name: str, in_channels: int, num_classes: int, image_size: tuple[int, int],
          kwargs: dict, small_images: bool | None = None) -> tuple[nn.Module, bool]:
    """``torchvision.models.NAME`` for these images; returns the model and whether it was adapted."""
    known = classification_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(f"torchvision has no classification model {name!r} ({hint}see "
                               "torchvision.models.list_models(module=torchvision.models))")
    if "weights" in kwargs or "pretrained" in kwargs:
        raise ConfigError("torchvision weights are never downloaded here; bring your own with a checkpoint")
    height, width = image_size
    small = max(height, width) <= SMALL_SIDE if small_images is None else small_images
    config = dict(kwargs)
    config.setdefault("num_classes", num_classes)
    if name.startswith("vit_"):
        config.setdefault("image_size", height)
    elif name.startswith("maxvit"):
        config.setdefault("input_size", (height, width))
    elif name in ("googlenet", "inception_v3"):
        config.setdefault("aux_logits", False)
        config.setdefault("init_weights", True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(name, weights=None, **config)
    except (TypeError, ValueError, AssertionError) as err:
        given = f" with {kwargs}" if kwargs else ""
        raise ModelError(f"torchvision:{name} cannot be built for {in_channels}×{height}×{width} images{given}: "
                         f"{_line(err)}") from None
    adapt = FAMILIES.get(type(model).__name__, _Adapt())
    _first_conv(model, in_channels, adapt.stem if small else None)
    if small:
        for path in adapt.identity:
            _replace(model, path, nn.Identity())
        if adapt.head is not None:
            _pool_head(model, *adapt.head)
        if adapt.shrink_pools:
            _shrink_pools(model, min(height, width))
    return model, small and type(model).__name__ in FAMILIES


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def _first_conv(model: nn.Module, in_channels: int, stem: tuple[int, int, int] | None) -> None:
    """Give the first convolution the data's channels and, for small images, the small stem."""
    path, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None))
    if conv is None or (in_channels == conv.in_channels and stem is None):
        return
    kernel, stride, padding = stem if stem is not None else (conv.kernel_size, conv.stride, conv.padding)
    new = nn.Conv2d(in_channels, conv.out_channels, kernel, stride, padding, bias=conv.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    _replace(model, path, new)


def _pool_head(model: nn.Module, pool: str, linear: str) -> None:
    """Global 1×1 pooling before the classifier instead of up-sampling a tiny map to 7×7 or 6×6."""
    old_pool = model.get_submodule(pool)
    old = model.get_submodule(linear)
    cells = old_pool.output_size if isinstance(old_pool.output_size, tuple) else (old_pool.output_size,) * 2
    channels = old.in_features // (cells[0] * cells[1])
    _replace(model, pool, nn.AdaptiveAvgPool2d(1))
    new = nn.Linear(channels, old.out_features, bias=old.bias is not None)
    nn.init.normal_(new.weight, 0.0, 0.01)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    _replace(model, linear, new)


def _shrink_pools(model: nn.Module, side: int) -> None:
    """VGG pools 5 times (28 px: 14, 7, 3, 1, then 0): drop the pools that would empty the map."""
    for path, module in list(model.named_modules()):
        if isinstance(module, nn.MaxPool2d):
            if side // 2 < 1:
                _replace(model, path, nn.Identity())
            else:
                side //= 2


__all__ = ["FAMILIES", "SMALL_SIDE", "build", "classification_models"]
