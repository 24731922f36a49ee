"""Model registry: ``build_model(name, ...)`` returns a pixel-space ``Classifier``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..registry import Registry
from . import resnet9, resnet18, smallcnn
from .base import Classifier, Normalize

MODELS: Registry[Callable[[int, int, int], nn.Module]] = Registry("model")
MODELS.register("smallcnn", smallcnn.build, "3-block CNN, fast on a CPU (default)")
MODELS.register("resnet9", resnet9.build, "ResNet-9 (Potion's CIFAR model)")
MODELS.register("resnet18", resnet18.build, "ResNet-18, CIFAR stem for small images (the paper's)")


def build_model(
    name: str,
    image_shape: tuple[int, int, int],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Classifier:
    """A freshly initialised classifier (seed torch beforehand for reproducibility)."""
    channels, height, _ = image_shape
    backbone = MODELS.get(name)(channels, num_classes, height)
    return Classifier(backbone, mean, std)


__all__ = ["MODELS", "Classifier", "Normalize", "build_model"]
