"""A three-block CNN that trains in seconds on a CPU: the default model.

The head pools with a global *max*, not an average: a small patch trigger lights up
a few positions of the last feature map, and averaging over the map diluted it.
Measured (mnist5k BadNet 3x3, seed 2, 12 epochs): average pooling PSR 0.54, max
pooling 1.00 at the same accuracy (97.9 vs 98.1%); on the CIFAR subset 0.07 → 0.35
at 12 epochs and 0.30 → 0.95 at 40 epochs.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(in_channels, width), _block(width, 2 * width), _block(2 * width, 4 * width)
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build(in_channels: int, num_classes: int, image_size: int, **kwargs: int) -> nn.Module:
    return SmallCNN(in_channels, num_classes, **kwargs)
