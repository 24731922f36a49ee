"""Image sets: the one data type every stage passes around.

Images live in pixel space: float32 ``[0, 1]`` or uint8 ``[0, 255]`` (a quarter of
the memory: CIFAR-10's 50,000 training images are 150 MB instead of 614 MB, and can
be a memory-mapped file). Normalisation lives inside the model, so attacks and
test-time transformations act on real pixels (the published code transformed
normalised tensors, which breaks jitter/invert).

Code that walks a set in batches uses ``float_batch`` (or ``dataset()``), which
converts one batch at a time. ``images`` still gives the whole set as float32 for
code written before uint8 storage; on a uint8 set that first access converts the
storage to float once (so writes into ``images[...]`` keep working).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from ..errors import DataError

Index = np.ndarray | torch.Tensor | Sequence[int] | slice


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Pixels as float32 in ``[0, 1]`` (uint8 / 255, exactly as the float loaders compute it)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def _as_index(indices: Index) -> torch.Tensor | slice:
    if isinstance(indices, slice):
        return indices
    return torch.as_tensor(np.asarray(indices, dtype=np.int64))


class ImageSet:
    """A labelled stack of images.

    pixels: ``[N, C, H, W]``, float32 in ``[0, 1]`` or uint8 in ``[0, 255]`` (storage).
    labels: int64 ``[N]`` class indices into ``classes``.
    classes: class names, index = label.
    """

    __slots__ = ("_pixels", "classes", "labels")

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> None:
        if images.ndim != 4:
            raise DataError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"labels must be [N] with N={len(images)}, got shape {tuple(labels.shape)}")
        self._pixels = images if images.dtype == torch.uint8 else images.float()
        self.labels = labels.long()
        self.classes = tuple(classes)

    # -- storage --------------------------------------------------------------------------
    @property
    def pixels(self) -> torch.Tensor:
        """The stored tensor, uint8 or float32, never converted (read it, don't write it)."""
        return self._pixels

    @property
    def is_uint8(self) -> bool:
        return self._pixels.dtype == torch.uint8

    @property
    def images(self) -> torch.Tensor:
        """The whole set as float32 ``[0, 1]``; converts uint8 storage to float once."""
        if self.is_uint8:
            self._pixels = to_float(self._pixels)
        return self._pixels

    @images.setter
    def images(self, value: torch.Tensor) -> None:
        if tuple(value.shape) != tuple(self._pixels.shape):
            raise DataError(f"images must keep shape {tuple(self._pixels.shape)}, got {tuple(value.shape)}")
        self._pixels = value if value.dtype == torch.uint8 else value.float()

    @property
    def nbytes(self) -> int:
        return self._pixels.element_size() * self._pixels.nelement()

    def float_batch(self, indices: Index | None = None, device: torch.device | str | None = None,
                    non_blocking: bool = False) -> torch.Tensor:
        """Float32 pixels of ``indices`` (all when None), moved to ``device`` before converting."""
        x = self._pixels if indices is None else self._pixels[_as_index(indices)]
        if device is not None:
            x = x.to(device, non_blocking=non_blocking)
        return to_float(x)

    def to_uint8(self) -> ImageSet:
        """The same images quantised to uint8 (exact for images that came from 8-bit files)."""
        if self.is_uint8:
            return self
        q = (self._pixels * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        return ImageSet(q, self.labels, self.classes)

    # -- set algebra --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ImageSet({len(self)} x {self.image_shape} {str(self._pixels.dtype).replace('torch.', '')}, "
                f"{self.num_classes} classes)")

    def __getstate__(self) -> dict:
        return {"pixels": self._pixels, "labels": self.labels, "classes": self.classes}

    def __setstate__(self, state: dict) -> None:
        self._pixels = state["pixels"] if "pixels" in state else state["images"]  # or a pre-uint8 pickle
        self.labels = state["labels"]
        self.classes = state["classes"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self._pixels.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: Index) -> ImageSet:
        idx = _as_index(indices)
        return ImageSet(self._pixels[idx], self.labels[idx], self.classes)

    def without(self, indices: np.ndarray | list[int]) -> ImageSet:
        """The set minus ``indices`` (the retain set for a forget set)."""
        return self.subset(self.rows_without(indices))

    def rows_without(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """The row indices of ``without(indices)``, in order (to train on them without a copy)."""
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(indices, dtype=np.int64)] = False
        return np.flatnonzero(keep)

    def clone(self) -> ImageSet:
        return ImageSet(self._pixels.clone(), self.labels.clone(), self.classes)

    def with_rows(self, indices: Index, rows: torch.Tensor, labels: torch.Tensor | int | None = None) -> ImageSet:
        """A new set with ``rows`` (float ``[0, 1]``) in place of ``indices``; this set is untouched.

        Why: an attack changes a few hundred images of tens of thousands. Where every new
        value is an exact 8-bit level (a BadNet patch of 0s and 1s) the set stays uint8 —
        a quarter of float32's memory and the same floats per batch; only changes that
        8 bits cannot hold (a smooth trigger, noise, a crafted perturbation) turn it float.
        """
        idx = _as_index(indices)
        rows = rows.float()
        if self.is_uint8:
            q = (rows * 255.0).round_().clamp_(0, 255).to(torch.uint8)
            if torch.equal(to_float(q), rows):
                pixels = self._pixels.clone()
                pixels[idx] = q
            else:
                pixels = to_float(self._pixels)
                pixels[idx] = rows
        else:
            pixels = self._pixels.clone()
            pixels[idx] = rows
        new_labels = self.labels.clone()
        if labels is not None:
            new_labels[idx] = labels if isinstance(labels, int) else torch.as_tensor(labels, dtype=new_labels.dtype)
        return ImageSet(pixels, new_labels, self.classes)

    def rows_equal(self, other: ImageSet, chunk: int = 8192) -> torch.Tensor:
        """Per image, whether its pixels equal ``other``'s (chunked: no whole-set copy, float or bool)."""
        if len(self) == 0:
            return torch.zeros(0, dtype=torch.bool)
        stored = self.is_uint8 and other.is_uint8  # compare the stored bytes; otherwise as floats

        def rows(s: ImageSet, a: int) -> torch.Tensor:
            return s._pixels[a : a + chunk] if stored else s.float_batch(slice(a, a + chunk))
        return torch.cat([(rows(self, a) == rows(other, a)).flatten(1).all(dim=1) for a in range(0, len(self), chunk)])

    def dataset(self, order: np.ndarray | None = None,
                on_batch: Callable[[int], None] | None = None) -> ImageDataset:
        """A torch ``Dataset`` of ``(float image, label)`` that converts a batch at a time."""
        return ImageDataset(self, order, on_batch)


class ImageDataset(torch.utils.data.Dataset):
    """``(float32 image, label)`` pairs of an ``ImageSet`` without copying it.

    order: read the set in this order (e.g. shuffled before kronfluence caps the
        number of examples: it takes the first N).
    on_batch: called with the number of images in every batch fetched (progress).
    """

    def __init__(self, data: ImageSet, order: np.ndarray | None = None,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.data = data
        self.order = None if order is None else torch.as_tensor(np.asarray(order, dtype=np.int64))
        self.on_batch = on_batch

    def __len__(self) -> int:
        return len(self.data) if self.order is None else len(self.order)

    def _rows(self, indices: list[int]) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return idx if self.order is None else self.order[idx]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])[0]
        return x, y

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rows = self._rows(indices)
        x = self.data.float_batch(rows)
        y = self.data.labels[rows]
        if self.on_batch is not None:
            self.on_batch(len(rows))
        return list(zip(x, y, strict=True))


@dataclass
class DatasetSplits:
    """Train and test sets of one dataset plus how to normalise and augment them.

    mean/std: per-channel statistics the model's first layer normalises with.
    augment_flip: whether horizontal flips are label-preserving (not for digits).
    """

    name: str
    train: ImageSet
    test: ImageSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment_flip: bool = True
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.train) == 0:
            raise DataError(f"dataset {self.name!r} has no training images")
        if len(self.test) == 0:
            raise DataError(f"dataset {self.name!r} has no test images")
        if self.train.image_shape != self.test.image_shape:
            raise DataError(
                f"train images are {self.train.image_shape} but test images are {self.test.image_shape}"
            )

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes


def channel_stats(images: torch.Tensor | ImageSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of a training set (std floored so constant channels stay finite).

    uint8 pixels are summed exactly in integers, a channel at a time (no float copy of
    the set, and no dependence on memory layout or thread count); the float path's
    float32 sums agree to about 1e-7.
    """
    x = images.pixels if isinstance(images, ImageSet) else images
    if x.dtype != torch.uint8:
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    n = x.shape[0] * x.shape[2] * x.shape[3]
    means, stds = [], []
    for c in range(x.shape[1]):
        total = sq = 0
        for start in range(0, x.shape[0], 4096):
            block = x[start : start + 4096, c].to(torch.int64)
            total += int(block.sum())
            sq += int((block * block).sum())
        var = (Fraction(sq) - Fraction(total) ** 2 / n) / max(1, n - 1) / 255**2
        means.append(total / (n * 255))
        stds.append(max(float(var) ** 0.5, 1e-3))
    return tuple(means), tuple(stds)
