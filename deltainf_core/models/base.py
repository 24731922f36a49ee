"""What every model shares: pixel-space input, normalisation inside, logits out.

``Classifier`` wraps any backbone — a built-in, a torchvision architecture or the
analyst's own class — as ``[0, 1] pixels → Normalize → backbone → selected logits``,
so attacks, transformations and uploaded images all live in pixel space and a saved
checkpoint is self-contained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import DeltaInfError
from .spec import ModelSpec

TRACKED_TYPES = (nn.Linear, nn.Conv2d)
"""Layers kronfluence's EK-FAC tracks (exact types: it looks subclasses up by type and fails)."""


class ModelError(DeltaInfError):
    """The architecture cannot be imported or built, or does not behave like a classifier."""


@dataclass(frozen=True)
class Architecture:
    """Everything needed to build the same architecture again (EU retrains, cache keys).

    small_images: whether the small-image adaptations were applied (torchvision models;
        a checkpoint made with torchvision's stock stem loads with ``False``).
    """

    spec: ModelSpec
    image_shape: tuple[int, int, int]
    num_classes: int
    small_images: bool = False


class Normalize(nn.Module):
    """Per-channel normalisation as the model's first step (kept in the state dict)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(tuple(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(tuple(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def values(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self.mean.flatten().tolist()), tuple(self.std.flatten().tolist())


def select_output(out: Any, selector: int | str | None, label: str = "the model") -> torch.Tensor:
    """The logits among a forward's outputs: the tensor itself, ``out[index]`` or ``out[key]``."""
    if isinstance(out, torch.Tensor):
        if selector is not None:
            raise ModelError(f"{label} returns a single tensor; drop the model output selector {selector!r}")
        return out
    if isinstance(out, Mapping):
        keys = ", ".join(map(repr, out))
        if selector is None:
            raise ModelError(f"{label} returns a dict ({keys}); say which entry is the logits with "
                             "--model-output KEY")
        key = selector if selector in out else str(selector)
        if key not in out:
            raise ModelError(f"{label} returns a dict with keys {keys}; there is no {selector!r}")
        return out[key]
    if isinstance(out, Sequence) and not isinstance(out, (str, bytes)):
        if selector is None:
            raise ModelError(f"{label} returns {len(out)} outputs ({_describe(out)}); say which one is the "
                             "logits with --model-output INDEX")
        if isinstance(selector, str) and selector in getattr(out, "_fields", ()):
            return getattr(out, selector)
        try:
            index = int(selector)
        except (TypeError, ValueError):
            raise ModelError(f"{label} returns a tuple; the model output must be an index, got {selector!r}"
                             ) from None
        if not -len(out) <= index < len(out):
            raise ModelError(f"{label} returns {len(out)} outputs; index {index} does not exist")
        return out[index]
    raise ModelError(f"{label} returns a {type(out).__name__}, not a tensor of logits")


def _describe(out: Sequence) -> str:
    return ", ".join(f"[{', '.join(map(str, o.shape))}]" if isinstance(o, torch.Tensor) else type(o).__name__
                     for o in out)


class Classifier(nn.Module):
    """``Normalize`` → backbone → logits; takes images in ``[0, 1]``.

    output: which of the backbone's outputs is the logits (None: it returns a tensor).
    arch: how to build the same architecture again (``build_like``); None for ad-hoc use.
    """

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float],
                 output: int | str | None = None, arch: Architecture | None = None) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone
        self.output = output
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.backbone(self.normalize(x)), self.output)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: the input of the last Linear/Conv2d layer the forward runs.

        One rule for every architecture (activation clustering and spectral signatures
        need it), found by a forward hook instead of a per-class ``features`` method;
        for the built-ins it is their pooled features, the input of ``fc``. A model
        with no such layer gives its logits.
        """
        last: list[torch.Tensor] = []

        def keep(_module: nn.Module, args: tuple) -> None:
            last[:] = [args[0]]

        handles = [m.register_forward_pre_hook(keep) for m in self.backbone.modules()
                   if isinstance(m, TRACKED_TYPES)]
        try:
            logits = self(x)
        finally:
            for h in handles:
                h.remove()
        return (last[0] if last else logits).flatten(1)
