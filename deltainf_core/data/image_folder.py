"""Bring-your-own data: an ImageFolder root holding ``train/<class>/*`` and ``test/<class>/*``."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..config import DataConfig
from ..errors import DataError
from .base import DatasetSplits, ImageSet, channel_stats

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _scan(split_dir: str) -> tuple[list[str], list[tuple[str, str]]]:
    if not os.path.isdir(split_dir):
        raise DataError(f"missing folder {split_dir} (expected <root>/train/<class>/* and <root>/test/<class>/*)")
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    files = []
    for c in classes:
        for f in sorted(os.listdir(os.path.join(split_dir, c))):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                files.append((os.path.join(split_dir, c, f), c))
    if not files:
        raise DataError(f"no images found under {split_dir}")
    return classes, files


def _read(
    files: list[tuple[str, str]], class_index: dict[str, int], size: int | None
) -> tuple[torch.Tensor, torch.Tensor, str]:
    arrays, labels, mode = [], [], None
    first_shape = None
    for path, c in files:
        try:
            with Image.open(path) as im:
                im.load()
                if mode is None:
                    mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                im = im.convert(mode)
                if size is not None:
                    im = im.resize((size, size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        if first_shape is None:
            first_shape = (arr.shape, path)
        elif arr.shape != first_shape[0]:
            raise DataError(
                f"images differ in size: {path} is {arr.shape[:2]} but {first_shape[1]} is "
                f"{first_shape[0][:2]} (pass --image-size to resize all)"
            )
        arrays.append(arr)
        labels.append(class_index[c])
    x = torch.from_numpy(np.stack(arrays))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float() / 255.0, torch.tensor(labels, dtype=torch.long), str(mode)


def load(cfg: DataConfig) -> DatasetSplits:
    root = os.path.expanduser(cfg.data_dir or "")
    if not root or not os.path.isdir(root):
        raise DataError(f"data folder {root or '(none)'} does not exist")
    classes, train_files = _scan(os.path.join(root, "train"))
    test_classes, test_files = _scan(os.path.join(root, "test"))
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(f"test folder has classes not in train: {', '.join(unknown)}")
    if len(classes) < 2:
        raise DataError(f"need at least two classes under {root}/train, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    xtr, ytr, mode = _read(train_files, index, cfg.image_size)
    xte, yte, _ = _read(test_files, index, cfg.image_size)
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"train images are {tuple(xtr.shape[1:])} but test images are {tuple(xte.shape[1:])}")
    train = ImageSet(xtr, ytr, tuple(classes))
    test = ImageSet(xte, yte, tuple(classes))
    mean, std = channel_stats(train.images)
    # Flips keep labels for photographs; grayscale folders are often digits/characters.
    return DatasetSplits(os.path.basename(os.path.normpath(root)), train, test, mean, std,
                         augment_flip=mode == "RGB", source=f"ImageFolder {root}")
