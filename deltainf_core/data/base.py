"""In-memory image sets: the one data type every stage passes around.

Images are float32 in pixel space ``[0, 1]`` (``[N, C, H, W]``); normalisation lives
inside the model, so attacks and test-time transformations act on real pixels
(the published code transformed normalised tensors, which breaks jitter/invert).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError


@dataclass
class ImageSet:
    """A labelled stack of images.

    images: float32 ``[N, C, H, W]`` in ``[0, 1]``.
    labels: int64 ``[N]`` class indices into ``classes``.
    classes: class names, index = label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DataError(
                f"labels must be [N] with N={len(self.images)}, got shape {tuple(self.labels.shape)}"
            )
        self.images = self.images.float()
        self.labels = self.labels.long()
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: np.ndarray | torch.Tensor | list[int]) -> ImageSet:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageSet(self.images[idx], self.labels[idx], self.classes)

    def without(self, indices: np.ndarray | list[int]) -> ImageSet:
        """The set minus ``indices`` (the retain set for a forget set)."""
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(indices, dtype=np.int64)] = False
        return self.subset(np.flatnonzero(keep))

    def clone(self) -> ImageSet:
        return ImageSet(self.images.clone(), self.labels.clone(), self.classes)

    def dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.images, self.labels)


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


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of a training set (std floored so constant channels stay finite)."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
