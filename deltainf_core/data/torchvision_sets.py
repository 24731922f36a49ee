"""CIFAR-10/100, MNIST, Fashion-MNIST and Imagenette through torchvision's loaders.

Downloads when online; offline, a missing folder is a one-line ``DataError`` that
names where the files were expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError
from .base import DatasetSplits, ImageSet, channel_stats


def _root(cfg: DataConfig) -> str:
    return os.path.expanduser(cfg.data_root)


def _open(factory: Callable[..., object], name: str, cfg: DataConfig, **kw: object) -> object:
    root = _root(cfg)
    try:
        return factory(root, download=False, **kw)
    except (RuntimeError, FileNotFoundError):
        pass
    try:
        return factory(root, download=True, **kw)
    except Exception as err:  # noqa: BLE001 - network errors come in many types
        raise DataError(
            f"{name} is not in {os.path.abspath(root)} and could not be downloaded "
            f"({type(err).__name__}); put it there or pass --data-root"
        ) from None


def _from_arrays(data: object, targets: object, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[N, C, H, W]`` images (converted to float a batch at a time later) and labels."""
    x = torch.as_tensor(np.asarray(data, dtype=np.uint8))
    x = x.permute(0, 3, 1, 2).contiguous() if channels_last else x.unsqueeze(1)
    return x, torch.as_tensor(np.asarray(targets), dtype=torch.long)


def _array_set(name: str, cls_name: str, channels_last: bool, flip: bool) -> Callable[[DataConfig], DatasetSplits]:
    def load(cfg: DataConfig) -> DatasetSplits:
        import torchvision.datasets as tvd

        factory = getattr(tvd, cls_name)
        parts = {}
        for split, train in (("train", True), ("test", False)):
            ds = _open(factory, name, cfg, train=train)
            x, y = _from_arrays(ds.data, ds.targets, channels_last)  # type: ignore[attr-defined]
            parts[split] = ImageSet(x, y, tuple(ds.classes))  # type: ignore[attr-defined]
        mean, std = channel_stats(parts["train"])
        return DatasetSplits(name, parts["train"], parts["test"], mean, std, augment_flip=flip,
                             source=f"torchvision.datasets.{cls_name} at {_root(cfg)}")

    return load


load_cifar10 = _array_set("cifar10", "CIFAR10", channels_last=True, flip=True)
load_cifar100 = _array_set("cifar100", "CIFAR100", channels_last=True, flip=True)
load_mnist = _array_set("mnist", "MNIST", channels_last=False, flip=False)
load_fashion_mnist = _array_set("fashion_mnist", "FashionMNIST", channels_last=False, flip=True)


def load_imagenette(cfg: DataConfig) -> DatasetSplits:
    """Imagenette (10 ImageNet classes) resized to ``image_size`` (default 64)."""
    import torchvision.datasets as tvd
    from torchvision.transforms import v2

    side = cfg.image_size or 64
    tf = v2.Compose([v2.Resize(side), v2.CenterCrop(side), v2.PILToTensor()])
    parts = {}
    for split in ("train", "val"):
        ds = _open(tvd.Imagenette, "imagenette", cfg, split=split, size="160px", transform=tf)
        xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)  # type: ignore[arg-type]
        x = torch.stack([t.expand(3, -1, -1) for t in xs])
        classes = tuple(c[0] if isinstance(c, tuple) else c for c in ds.classes)  # type: ignore[attr-defined]
        parts[split] = ImageSet(x, torch.tensor(ys), classes)
    mean, std = channel_stats(parts["train"])
    return DatasetSplits("imagenette", parts["train"], parts["val"], mean, std,
                         source=f"torchvision.datasets.Imagenette at {_root(cfg)}")
