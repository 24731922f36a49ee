"""Flagging rules on the Δ matrix.

``Δ[t, i] = score(copy_t, i) − score(original_of_t, i)``; influence collapse is
``c = −Δ`` (positive when training image ``i`` stops supporting the copy).

Raw EK-FAC magnitudes are meaningless across (and even within) models, so the
statistic is a per-training-image effect size: ``d_i = mean(c_i) / std(c_i)``
pooled over copies of every affected image (std within each affected image). It is
the magnitude-aware form of the published "Δ < 0 on nearly all copies" vote (SPEC
§4, findings 2-4). The default rule adds two steps, neither with a threshold to tune:

1. **Broken copies only** (``broken_copies``): a copy the model still predicts as
   the target (e.g. a colour jitter that keeps a black-and-white trigger) only
   measures the relabelling, and relabelling alone makes *every* image of the
   target class collapse. Only copies whose prediction left the target count.
2. **Split the candidates** (``split_rule``): among images with ``d ≥ 2`` the
   poisons form the top group of ``log d``; Otsu's two-group split keeps it.

Measured on mnist5k BadNet (3x3, seeds 0-2, max-pooling small CNN): ``d ≥ 2`` on all
copies flagged 434 / 438 / 433 at precision 0.09 (nearly the whole target class; EU
then lost 5.0 / 4.0 / 1.0 accuracy points); broken copies + split flagged 199 / 80 / 40
at recall 1.00 / 1.00 / 0.95 (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .queries import CollapseQueries

DEFAULT_EFFECT_SIZE = 2.0


MIN_BROKEN_COPIES = 3
"""An affected image with fewer broken copies than this keeps all of its copies."""


def broken_copies(queries: CollapseQueries, predicted: np.ndarray, target_class: int,
                  min_per_image: int = MIN_BROKEN_COPIES) -> np.ndarray:
    """Boolean mask over *all* query rows: copies the model no longer predicts as the target.

    Originals are False. Where an affected image has fewer than ``min_per_image``
    broken copies (a transformation set that rarely breaks this trigger), all of its
    copies are kept: some evidence beats none.
    """
    predicted = np.asarray(predicted)
    if predicted.shape != queries.is_original.shape:
        raise ValueError(f"need one prediction per query ({len(queries.is_original)}), got {predicted.shape}")
    keep = ~queries.is_original & (predicted != target_class)
    for k in np.unique(queries.image_of):
        copies = ~queries.is_original & (queries.image_of == k)
        if keep[copies].sum() < min_per_image:
            keep[copies] = True
    return keep


def delta_scores(scores: np.ndarray, queries: CollapseQueries,
                 transforms: Sequence[str] | None = None,
                 keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``Δ`` for the copy rows (optionally only those of some transformations, or in ``keep``).

    ``keep`` is a boolean mask over all query rows (e.g. ``broken_copies``).
    Returns ``(delta [n_copies, n_train] float64, copy_rows)``.
    """
    rows = queries.copy_rows()
    orig = queries.original_row_of()
    sel = np.ones(rows.shape, dtype=bool)
    if transforms is not None:
        sel &= np.isin(queries.transform[rows], list(transforms))
    if keep is not None:
        sel &= np.asarray(keep, dtype=bool)[rows]
    rows, orig = rows[sel], orig[sel]
    s = np.asarray(scores, dtype=np.float64)
    return s[rows] - s[orig], rows


def influence_collapse(scores: np.ndarray, queries: CollapseQueries,
                       transforms: Sequence[str] | None = None) -> np.ndarray:
    """``c = −Δ``: how much each training image's support drops on each copy."""
    delta, _ = delta_scores(scores, queries, transforms)
    return -delta


def collapse_effect_size(scores: np.ndarray, queries: CollapseQueries,
                         transforms: Sequence[str] | None = None,
                         keep: np.ndarray | None = None) -> np.ndarray:
    """The default rule's statistic straight from a score matrix: pooled ``d`` per training image."""
    delta, rows = delta_scores(scores, queries, transforms, keep)
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


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's cut of 1-D ``values`` into two groups (max between-group variance).

    Returns the smallest value of the upper group. Exact over every split point.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < 2:
        return float(x[0]) if n else np.inf
    csum = np.cumsum(x)
    i = np.arange(1, n)  # size of the lower group
    mean_lo = csum[:-1] / i
    mean_hi = (csum[-1] - csum[:-1]) / (n - i)
    between = i * (n - i) * (mean_hi - mean_lo) ** 2
    between[x[1:] == x[:-1]] = -1.0  # never split between equal values
    return float(x[int(np.argmax(between)) + 1]) if between.max() > 0 else float(x[0])


def split_rule(effect_size: np.ndarray, floor: float = DEFAULT_EFFECT_SIZE,
               min_candidates: int = 3) -> np.ndarray:
    """Candidates ``d ≥ floor``, then the upper group of Otsu's split of their ``log d``.

    Scale-free (a log split is unchanged by multiplying ``d``), no threshold to tune;
    with fewer than ``min_candidates`` candidates there is nothing to split. ``+inf``
    (a perfectly constant collapse) stays in the upper group.
    """
    if not floor > 0:
        raise ConfigError(f"splitting log d needs a positive candidate effect size, got {floor}")
    d = np.asarray(effect_size, dtype=np.float64)
    cand = np.flatnonzero(d >= floor)
    log_d = np.log(d[cand])  # every candidate is positive; +inf stays +inf
    finite = np.isfinite(log_d)
    if finite.sum() < min_candidates:
        return cand
    return cand[log_d >= otsu_threshold(log_d[finite])]


def collapse_votes(delta: np.ndarray, th: float) -> np.ndarray:
    """How many copies each training image's score dropped below ``th`` on."""
    return (np.asarray(delta) < th).sum(axis=0)


def published_vote(delta: np.ndarray, th: float = 0.0, n_tolerate: int = 1) -> np.ndarray:
    """The published rule: flag when ``Δ < th`` on at least ``T − n_tolerate`` copies."""
    t = delta.shape[0]
    return np.flatnonzero(collapse_votes(delta, th) >= t - n_tolerate)
