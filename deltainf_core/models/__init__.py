"""Models: ``build_model(spec, ...)`` returns a pixel-space ``Classifier`` for any architecture.

The architecture is a built-in (``MODELS``), ``torchvision:NAME`` or the analyst's own
``path/to/file.py:NAME`` / ``package.module:NAME``; every one is wrapped the same way
(``Classifier``: pixels → normalisation → backbone → selected logits) and checked
once on synthetic images, so a model that cannot work fails here in one sentence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict

import torchvision
from torch import nn

from ..errors import UnknownNameError
from ..registry import Registry
from . import from_code, from_torchvision, resnet9, resnet18, smallcnn
from .base import TRACKED_TYPES, Architecture, Classifier, ModelError, Normalize, select_output
from .probing import check_outputs, influence_tracked_modules, require_influence_trackable
from .spec import (
    TORCHVISION_PREFIX,
    ModelSpec,
    parse_channel_values,
    parse_model_kwargs,
    parse_model_output,
)

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("smallcnn", smallcnn.build, "3-block CNN, fast on a CPU (default)")
MODELS.register("resnet9", resnet9.build, "ResNet-9 (Potion's CIFAR model)")
MODELS.register("resnet18", resnet18.build, "ResNet-18, CIFAR stem for small images (the paper's)")


def torchvision_model_names() -> list[str]:
    """torchvision's classification architectures, for ``torchvision:NAME`` (choices in the app)."""
    return from_torchvision.classification_models()


def as_spec(model: ModelSpec | str) -> ModelSpec:
    spec = ModelSpec(model=model) if isinstance(model, str) else model
    spec.validate()
    return spec


def _backbone(spec: ModelSpec, image_shape: tuple[int, int, int], num_classes: int,
              small_images: bool | None) -> tuple[nn.Module, bool]:
    channels, height, width = image_shape
    if spec.kind == "builtin":
        if spec.model not in MODELS:
            raise UnknownNameError(f"unknown model {spec.model!r} (choose from: {', '.join(MODELS)}, or "
                                   "torchvision:NAME, path/to/file.py:NAME, package.module:NAME)")
        build = MODELS.get(spec.model)
        return from_code.instantiate(lambda **kw: build(channels, num_classes, height, **kw), spec.model,
                                     spec.model_kwargs, num_classes), False
    where, name = spec.target()
    if spec.kind == "torchvision":
        return from_torchvision.build(name, channels, num_classes, (height, width), spec.model_kwargs, small_images)
    factory = from_code.resolve(where, name, spec.kind == "file")
    return from_code.instantiate(factory, spec.model, spec.model_kwargs, num_classes), False


def build_model(
    model: ModelSpec | str,
    image_shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    small_images: bool | None = None,
) -> Classifier:
    """A freshly initialised classifier (seed torch beforehand for reproducibility).

    mean/std: the normalisation used when the spec gives none (the data's statistics
    when the tool trains the model); with neither, the model sees raw pixels.
    small_images: torchvision only; None decides by image size (``from_torchvision``).
    Raises ``UnknownNameError``/``ConfigError`` for a bad spec and ``ModelError`` for an
    architecture that cannot be imported, built or run on these images.
    """
    spec = as_spec(model)
    image_shape = tuple(int(v) for v in image_shape)  # type: ignore[assignment]
    norm_mean, norm_std = spec.normalisation(image_shape[0], tuple(mean) if mean is not None else None,
                                             tuple(std) if std is not None else None)
    backbone, small = _backbone(spec, image_shape, num_classes, small_images)
    arch = Architecture(spec, image_shape, int(num_classes), small)
    classifier = Classifier(backbone, norm_mean, norm_std, spec.model_output, arch)
    check_outputs(classifier, image_shape, num_classes, spec.model)
    return classifier


def build_like(model: Classifier) -> Classifier:
    """A freshly initialised model of the same architecture and normalisation (EU retrains)."""
    arch = getattr(model, "arch", None)
    if not isinstance(model, Classifier) or arch is None:
        raise ModelError("this model does not record its architecture, so it cannot be built again")
    mean, std = model.normalize.values()
    spec = ModelSpec(arch.spec.model, dict(arch.spec.model_kwargs), arch.spec.model_output, mean, std)
    return build_model(spec, arch.image_shape, arch.num_classes, small_images=arch.small_images)


def architecture_key(model: ModelSpec | str) -> str:
    """A hash that changes whenever the code or arguments behind the architecture change.

    Cache keys of trained models must use this instead of the spec alone: the analyst
    may edit their architecture file between runs.
    """
    spec = as_spec(model)
    if spec.kind == "torchvision":
        code = torchvision.__version__
    elif spec.kind == "builtin":
        code = f"builtin-v{MODELS.version(spec.model)}"
    else:
        code = from_code.source_fingerprint(spec.target()[0], spec.kind == "file")
    payload = json.dumps([asdict(spec), code], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


__all__ = [
    "MODELS", "TORCHVISION_PREFIX", "TRACKED_TYPES", "Architecture", "Classifier", "ModelError", "ModelSpec",
    "Normalize", "architecture_key", "as_spec", "build_like", "build_model", "check_outputs",
    "influence_tracked_modules", "parse_channel_values", "parse_model_kwargs", "parse_model_output",
    "require_influence_trackable", "select_output", "torchvision_model_names",
]
