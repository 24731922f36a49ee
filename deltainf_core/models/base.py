"""What every architecture shares: pixel-space input with normalisation inside the model."""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel normalisation as the model's first step (kept in the state dict)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``Normalize`` followed by a backbone; takes images in ``[0, 1]``.

    Keeping normalisation inside means attacks, transformations and uploaded images
    all live in pixel space and a saved checkpoint is self-contained.
    """

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (for activation clustering / spectral signatures)."""
        body = self.backbone
        return body.features(self.normalize(x))  # type: ignore[operator]
