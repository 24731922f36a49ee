"""Build the collapse query set: each affected image plus T transformed, relabelled copies.

Every copy gets a random label other than the attack target: the relabelling alone
already severs most of a poison's support (SPEC §1), the transformations remove
false positives. All queries go through one influence pass together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import CollapseConfig
from ..data.base import ImageSet
from ..errors import ConfigError
from .transforms import TRANSFORMS, apply_transform


@dataclass
class CollapseQueries:
    """Queries and what each row is.

    queries: ``[Q]`` images with the label whose margin is measured.
    image_of: which affected image (0..K-1) each query derives from.
    is_original: True for the untransformed affected images (one per image).
    transform: transformation name per query ("" for originals).
    """

    queries: ImageSet
    image_of: np.ndarray
    is_original: np.ndarray
    transform: np.ndarray

    @property
    def n_affected(self) -> int:
        return int(self.is_original.sum())

    def copy_rows(self) -> np.ndarray:
        return np.flatnonzero(~self.is_original)

    def original_row_of(self) -> np.ndarray:
        """For every copy row, the row of its original image."""
        originals = np.flatnonzero(self.is_original)
        return originals[self.image_of[self.copy_rows()]]

    def transforms_present(self) -> list[str]:
        """The transformations that have copies here, in order of first appearance."""
        return [t for t in dict.fromkeys(self.transform[self.copy_rows()].tolist()) if t]

    def subset(self, rows: np.ndarray) -> CollapseQueries:
        """These query rows only, in order; every original must stay (copies point at them by position)."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        if not set(np.flatnonzero(self.is_original).tolist()) <= set(rows.tolist()):
            raise ValueError("a subset of collapse queries must keep every original affected image")
        return CollapseQueries(self.queries.subset(rows), self.image_of[rows], self.is_original[rows],
                               self.transform[rows])


def as_target(affected: ImageSet, target_class: int) -> ImageSet:
    """The affected images labelled with the class they are wrongly predicted as.

    That prediction is what influence explains, so every scoring of affected images
    (collapse queries, detectors, the app's picks) goes through here.
    """
    return ImageSet(affected.images, torch.full((len(affected),), int(target_class)), affected.classes)


def build_queries(affected: ImageSet, target_class: int, cfg: CollapseConfig) -> CollapseQueries:
    """Originals labelled as the target, copies labelled at random among the other classes."""
    cfg.validate()
    for name in cfg.transforms:
        TRANSFORMS.get(name)
    if len(affected) == 0:
        raise ConfigError("pick at least one affected image")
    if affected.num_classes < 2:
        raise ConfigError("influence collapse needs at least two classes")
    rng = np.random.default_rng(cfg.seed)
    others = np.array([c for c in range(affected.num_classes) if c != target_class])
    images, labels, image_of, is_orig, tnames = [], [], [], [], []
    k_used = min(len(affected), cfg.max_affected)
    for k in range(k_used):
        img = affected.images[k]
        images.append(img)
        labels.append(target_class)
        image_of.append(k)
        is_orig.append(True)
        tnames.append("")
        n = cfg.n_copies if k == 0 else cfg.n_copies_extra
        picks = rng.integers(0, len(cfg.transforms), size=n)
        seeds = rng.integers(0, 2**31 - 1, size=n)
        new_labels = rng.choice(others, size=n)
        for t, s, y in zip(picks, seeds, new_labels, strict=True):
            name = cfg.transforms[int(t)]
            images.append(apply_transform(name, img, int(s)))
            labels.append(int(y))
            image_of.append(k)
            is_orig.append(False)
            tnames.append(name)
    queries = ImageSet(torch.stack(images), torch.tensor(labels), affected.classes)
    return CollapseQueries(queries, np.array(image_of), np.array(is_orig), np.array(tnames, dtype=object))
