"""ResNet-9 (the fast CIFAR ResNet used by Potion), from torchvision building blocks."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation


def _conv(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [Conv2dNormActivation(cin, cout, kernel_size=3, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.inner = nn.Sequential(_conv(ch, ch), _conv(ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


class ResNet9(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv(in_channels, w),
            _conv(w, 2 * w, pool=True),
            _Residual(2 * w),
            _conv(2 * w, 4 * w, pool=True),
            _conv(4 * w, 8 * w, pool=True),
            _Residual(8 * w),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build(in_channels: int, num_classes: int, image_size: int, **kwargs: int) -> nn.Module:
    return ResNet9(in_channels, num_classes, **kwargs)
