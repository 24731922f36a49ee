"""Influence collapse in numbers — the one place that computes Δ, the collapse values, which
copies count, and the pooled effect size ``d``. Rules, figures, the app and the benchmarks
all read these functions, so the scatter, Triage, the CLI and the JSON show the same ``d``.

``Δ[t, i] = score(copy_t, i) − score(original_of_t, i)``; influence collapse is
``c = −Δ`` (positive when training image ``i`` stops supporting the copy).

Raw EK-FAC magnitudes are meaningless across (and even within) models, so the statistic
is a per-training-image effect size: ``d_i = mean(c_i) / std(c_i)`` pooled over the
copies of every affected image, the std taken *within* each affected image (how strongly
an image supports one affected image rather than another is not evidence against its
collapse). It is the magnitude-aware form of the published "Δ < 0 on nearly all copies"
vote (SPEC §4, findings 2-4).

``d`` is computed from sufficient statistics per copy group — (transformation, affected
image, broken or not) — so that choosing another subset of transformations, or switching
"broken copies only", costs O(groups · n_train) however many copies were scored: the app's
toggles are instant and give exactly the rule's numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .queries import CollapseQueries

MIN_BROKEN_COPIES = 3
"""An affected image with fewer broken copies than this keeps all of its copies."""


# -- Δ and the copies that count ------------------------------------------------------------------
def delta_scores(scores: np.ndarray, queries: CollapseQueries, transforms: Sequence[str] | None = None,
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


def influence_collapse(scores: np.ndarray, queries: CollapseQueries, transforms: Sequence[str] | None = None,
                       keep: np.ndarray | None = None) -> np.ndarray:
    """``c = −Δ``: how much each training image's support drops on each copy."""
    delta, _ = delta_scores(scores, queries, transforms, keep)
    return -delta


def broken_copies(queries: CollapseQueries, predicted: np.ndarray, target_class: int,
                  min_per_image: int = MIN_BROKEN_COPIES) -> np.ndarray:
    """Boolean mask over *all* query rows: copies the model no longer predicts as the target.

    Why: a copy the model still predicts as the target (e.g. a colour jitter that keeps a
    black-and-white trigger) only measures the relabelling, and relabelling alone makes
    *every* image of the target class collapse. Originals are False. Where an affected
    image has fewer than ``min_per_image`` broken copies (a transformation set that rarely
    breaks this trigger), all of its copies are kept: some evidence beats none.
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


# -- sufficient statistics --------------------------------------------------------------------------
@dataclass
class CollapseStats:
    """Sums of the collapse values per copy group, enough for any subset's mean and pooled std.

    transforms: names along axis 0 ("" when the copies carry no transformation names).
    counts: ``[T, K, 2]`` copies per (transformation, affected image, in the keep mask).
    shift: ``[K, n_train]`` each affected image's mean collapse over all its copies; the
        sums are taken around it so the variance has no cancellation.
    s1, s2: ``[T, K, 2, n_train]`` sums of ``c − shift`` and of its square.
    original: ``[n_train]`` mean influence on the original affected image(s).
    """

    transforms: list[str]
    counts: np.ndarray
    shift: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    original: np.ndarray

    @property
    def n_train(self) -> int:
        return int(self.shift.shape[1])

    def selection(self, transforms: Sequence[str] | None = None, kept_only: bool = False,
                  images: Sequence[int] | None = None) -> np.ndarray:
        """Boolean ``[T, K, 2]`` mask of the groups a subset of copies is made of."""
        sel = np.ones(self.counts.shape, dtype=bool)
        if transforms is not None:
            sel &= np.isin(self.transforms, list(transforms))[:, None, None]
        if kept_only:
            sel[:, :, 0] = False
        if images is not None:
            sel &= np.isin(np.arange(self.counts.shape[1]), list(images))[None, :, None]
        return sel


def stats_of(collapse: np.ndarray, image_of: np.ndarray | None = None, transform: np.ndarray | None = None,
             kept: np.ndarray | None = None, original: np.ndarray | None = None) -> CollapseStats:
    """Group the rows of a collapse matrix ``[n_copies, n_train]`` by (transformation, image, kept)."""
    c = np.asarray(collapse, dtype=np.float64)
    return _grouped_stats(lambda rows: c[rows], c.shape[0], c.shape[1], image_of, transform, kept, original)


def _grouped_stats(rows_of: Callable[[np.ndarray], np.ndarray], n_rows: int, n: int, image_of: np.ndarray | None,
                   transform: np.ndarray | None, kept: np.ndarray | None,
                   original: np.ndarray | None) -> CollapseStats:
    """``stats_of`` one affected image at a time: ``rows_of(rows)`` gives those collapse rows as a new
    float64 array, so the whole ``[n_copies, n_train]`` float64 matrix (1 KB per training image for
    the default 130 copies) and its centred copy never exist; the sums equal the whole-matrix
    computation to the bit (``tests/collapse/test_statistics.py``)."""
    image_of = np.zeros(n_rows, dtype=np.int64) if image_of is None else np.asarray(image_of, dtype=np.int64)
    transform = np.full(n_rows, "", dtype=object) if transform is None else np.asarray(transform, dtype=object)
    kept = np.ones(n_rows, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    names = list(dict.fromkeys(transform.tolist())) or [""]
    n_images = int(image_of.max()) + 1 if n_rows else 1
    shift = np.zeros((n_images, n))
    counts = np.zeros((len(names), n_images, 2), dtype=np.int64)
    s1 = np.zeros((len(names), n_images, 2, n))
    s2 = np.zeros((len(names), n_images, 2, n))
    for k in range(n_images):
        mine = np.flatnonzero(image_of == k)
        if not mine.size:
            continue
        c = rows_of(mine)
        shift[k] = c.mean(axis=0)
        c -= shift[k]
        for t_pos, t in enumerate(names):
            for b in (0, 1):
                block = c[(transform[mine] == t) & (kept[mine] == bool(b))]
                counts[t_pos, k, b] = block.shape[0]
                if block.shape[0]:
                    s1[t_pos, k, b] = block.sum(axis=0)
                    s2[t_pos, k, b] = np.einsum("ij,ij->j", block, block)
    orig = np.zeros(n, dtype=np.float32) if original is None else np.asarray(original, dtype=np.float32)
    return CollapseStats(names, counts, shift, s1, s2, orig)


def collapse_stats(scores: np.ndarray, queries: CollapseQueries, keep: np.ndarray | None = None) -> CollapseStats:
    """The sufficient statistics of a score matrix's collapse; ``keep`` (over all query rows) marks
    the copies that count when only kept copies are asked for (e.g. ``broken_copies``)."""
    s = np.asarray(scores)
    rows = queries.copy_rows()
    to_original = queries.original_row_of()
    original = s[np.flatnonzero(queries.is_original)].astype(np.float64).mean(axis=0)
    kept = None if keep is None else np.asarray(keep, dtype=bool)[rows]

    def collapse(sel: np.ndarray) -> np.ndarray:
        return s[to_original[sel]].astype(np.float64) - s[rows[sel]]

    return _grouped_stats(collapse, len(rows), s.shape[1], queries.image_of[rows], queries.transform[rows], kept,
                          original)


# -- the effect size -------------------------------------------------------------------------------
def effect_size(stats: CollapseStats, transforms: Sequence[str] | None = None, kept_only: bool = False,
                images: Sequence[int] | None = None) -> np.ndarray:
    """Pooled ``d = mean / std`` per training image over the selected copies (population std
    within each affected image). ``±inf`` where the std is 0 but the mean is not; 0 when no
    copy is selected."""
    sel = stats.selection(transforms, kept_only, images)
    n_k = (stats.counts * sel).sum(axis=(0, 2)).astype(np.float64)  # copies per affected image
    total = n_k.sum()
    if total == 0:
        return np.zeros(stats.n_train)
    w = sel[..., None]
    s1_k = (stats.s1 * w).sum(axis=(0, 2))
    s2_k = (stats.s2 * w).sum(axis=(0, 2))
    mean = (n_k[:, None] * stats.shift + s1_k).sum(axis=0) / total
    safe_n = np.where(n_k > 0, n_k, 1.0)[:, None]
    within = np.where(n_k[:, None] > 0, s2_k - s1_k**2 / safe_n, 0.0).sum(axis=0)
    std = np.sqrt(np.maximum(within / total, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(std > 0, mean / np.where(std > 0, std, 1.0), np.sign(mean) * np.inf)
    return np.nan_to_num(d, nan=0.0, posinf=np.inf, neginf=-np.inf)


def pooled_effect_size(collapse: np.ndarray, image_of_copy: np.ndarray | None = None) -> np.ndarray:
    """``d`` of a collapse matrix ``[n_copies, n_train]``; with ``image_of_copy`` (the affected image
    of each row) the std is pooled within images, else it is the total std."""
    c = np.asarray(collapse, dtype=np.float64)
    if c.shape[0] == 0:
        return np.zeros(c.shape[1])
    return effect_size(stats_of(c, image_of_copy))


def per_image_effect_size(collapse: np.ndarray, image_of_copy: np.ndarray) -> np.ndarray:
    """Mean over affected images of each image's own effect size (the 'safer' variant, finding 5)."""
    stats = stats_of(collapse, image_of_copy)
    present = np.flatnonzero(stats.counts.sum(axis=(0, 2)) > 0)
    ds = [effect_size(stats, images=[k]) for k in present]
    return np.mean(np.clip(np.stack(ds), -1e6, 1e6), axis=0)


def collapse_effect_size(scores: np.ndarray, queries: CollapseQueries, transforms: Sequence[str] | None = None,
                         keep: np.ndarray | None = None) -> np.ndarray:
    """``d`` straight from a score matrix, over the copies of ``transforms`` (all) in ``keep`` (all)."""
    return effect_size(collapse_stats(scores, queries, keep), transforms, kept_only=keep is not None)


# -- per-transformation panels (what the collapse scatter draws) --------------------------------------
@dataclass
class CollapsePanels:
    """Per-training-image numbers behind the collapse scatter.

    original: mean influence on the original affected image(s), ``[n_train]``.
    delta: transformation name -> mean ``Δ`` over its selected copies.
    n_copies: transformation name -> number of copies behind its panel.
    scored: transformation name -> copies scored, for every transformation asked for,
        also those without a panel (no copy counted), so a page can say why it has none.
    """

    original: np.ndarray
    delta: dict[str, np.ndarray]
    n_copies: dict[str, int]
    scored: dict[str, int] = field(default_factory=dict)

    @property
    def transforms(self) -> list[str]:
        return list(self.delta)

    @property
    def n_train(self) -> int:
        return int(self.original.shape[0])


def copies_counted(stats: CollapseStats, transforms: Sequence[str] | None = None,
                   kept_only: bool = False) -> dict[str, tuple[int, int]]:
    """Per transformation ``(copies the rule counts, copies scored)``: the one count behind the
    collapse page's toggles, its panels, Triage's evidence and the reports (with ``kept_only``
    a copy counts when it broke the attack, or when its affected image has too few that did)."""
    wanted = stats.transforms if transforms is None else [t for t in transforms if t in stats.transforms]
    out = {}
    for t in wanted:
        k = stats.transforms.index(t)
        counted = stats.counts[k, :, 1].sum() if kept_only else stats.counts[k].sum()
        out[t] = (int(counted), int(stats.counts[k].sum()))
    return out


def collapse_panels(stats: CollapseStats, transforms: Sequence[str] | None = None,
                    kept_only: bool = False) -> CollapsePanels:
    """One mean-``Δ`` row per selected transformation, over the same copies the rule counts
    (none for a transformation with no counted copy; ``scored`` still names it)."""
    counted = copies_counted(stats, transforms, kept_only)
    delta, counts = {}, {}
    for t, (n, _) in counted.items():
        if n == 0:
            continue
        sel = stats.selection([t], kept_only)
        n_k = (stats.counts * sel).sum(axis=(0, 2)).astype(np.float64)
        s1 = (stats.s1 * sel[..., None]).sum(axis=(0, 1, 2))
        mean_collapse = ((n_k[:, None] * stats.shift).sum(axis=0) + s1) / n_k.sum()
        delta[t] = (-mean_collapse).astype(np.float32)
        counts[t] = int(n_k.sum())
    return CollapsePanels(stats.original, delta, counts, {t: total for t, (_, total) in counted.items()})
