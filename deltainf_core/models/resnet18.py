"""torchvision's ResNet-18 with the CIFAR stem (3x3 conv, no max-pool) for small images."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


class CifarResNet18(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, small_images: bool) -> None:
        super().__init__()
        net = resnet18(weights=None, num_classes=num_classes)
        if small_images:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.fc = net.fc
        net.fc = nn.Identity()
        self.net = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return CifarResNet18(in_channels, num_classes, small_images=image_size <= 64)
