"""Flagging rules on the Δ matrix.

``Δ[t, i] = score(copy_t, i) − score(original_of_t, i)``; influence collapse is
``c = −Δ`` (positive when training image ``i`` stops supporting the copy).

Raw EK-FAC magnitudes are meaningless across (and even within) models, so the
default rule is a per-training-image effect size: ``d_i = mean(c_i) / std(c_i)``
pooled over every copy of every affected image (std within each affected image),
flagged at ``d_i ≥ 2``. It is the
magnitude-aware form of the published "Δ < 0 on nearly all copies" vote and needs
no per-scenario threshold (SPEC §4, findings 2-4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .queries import CollapseQueries

DEFAULT_EFFECT_SIZE = 2.0


def delta_scores(scores: np.ndarray, queries: CollapseQueries,
                 transforms: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``Δ`` for the copy rows (optionally only those of some transformations).

    Returns ``(delta [n_copies, n_train] float64, copy_rows)``.
    """
    rows = queries.copy_rows()
    orig = queries.original_row_of()
    if transforms is not None:
        keep = np.isin(queries.transform[rows], list(transforms))
        rows, orig = rows[keep], orig[keep]
    s = np.asarray(scores, dtype=np.float64)
    return s[rows] - s[orig], rows


def influence_collapse(scores: np.ndarray, queries: CollapseQueries,
                       transforms: Sequence[str] | None = None) -> np.ndarray:
    """``c = −Δ``: how much each training image's support drops on each copy."""
    delta, _ = delta_scores(scores, queries, transforms)
    return -delta


def collapse_effect_size(scores: np.ndarray, queries: CollapseQueries,
                         transforms: Sequence[str] | None = None) -> np.ndarray:
    """The default rule's statistic straight from a score matrix: pooled ``d`` per training image."""
    delta, rows = delta_scores(scores, queries, transforms)
    return pooled_effect_size(-delta, queries.image_of[rows])


def pooled_effect_size(collapse: np.ndarray, image_of_copy: np.ndarray | None = None) -> np.ndarray:
    """``mean / std`` of each training image's collapse values (population std).

    With ``image_of_copy`` (which affected image each copy row comes from) the std is
    the *within-image* pooled std: how strongly an image supported one affected image
    versus another is not evidence against its collapse, only the wobble of its
    collapse across one image's copies is. With one affected image both forms agree.
    ``±inf`` where the std is 0 but the mean is not.
    """
    c = np.asarray(collapse, dtype=np.float64)
    if c.shape[0] == 0:
        return np.zeros(c.shape[1])
    mean = c.mean(axis=0)
    if image_of_copy is None:
        std = c.std(axis=0)
    else:
        image_of_copy = np.asarray(image_of_copy)
        resid = np.empty_like(c)
        for k in np.unique(image_of_copy):
            rows = image_of_copy == k
            resid[rows] = c[rows] - c[rows].mean(axis=0)
        std = np.sqrt((resid**2).mean(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(std > 0, mean / np.where(std > 0, std, 1.0), np.sign(mean) * np.inf)
    return np.nan_to_num(d, nan=0.0, posinf=np.inf, neginf=-np.inf)


def per_image_effect_size(collapse: np.ndarray, image_of_copy: np.ndarray) -> np.ndarray:
    """Mean over affected images of each image's own effect size (the 'safer' variant)."""
    ds = [pooled_effect_size(collapse[image_of_copy == k]) for k in np.unique(image_of_copy)]
    return np.mean(np.clip(np.stack(ds), -1e6, 1e6), axis=0)


def effect_size_rule(effect_size: np.ndarray, threshold: float = DEFAULT_EFFECT_SIZE) -> np.ndarray:
    """Indices with ``d ≥ threshold`` (sorted)."""
    return np.flatnonzero(np.asarray(effect_size) >= threshold)


def collapse_votes(delta: np.ndarray, th: float) -> np.ndarray:
    """How many copies each training image's score dropped below ``th`` on."""
    return (np.asarray(delta) < th).sum(axis=0)


def published_vote(delta: np.ndarray, th: float = 0.0, n_tolerate: int = 1) -> np.ndarray:
    """The published rule: flag when ``Δ < th`` on at least ``T − n_tolerate`` copies."""
    t = delta.shape[0]
    return np.flatnonzero(collapse_votes(delta, th) >= t - n_tolerate)
