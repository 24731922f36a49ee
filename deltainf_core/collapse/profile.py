"""Collapse-profile rule: flag the images that collapse the way the most collapsed ones do.

Why not a cut on the pooled effect size ``d`` alone: every clean image of the target
class collapses too (the relabelled copies alone sever its support), and its ``d``
spreads from 2 into the poisons' range; a cut on ``log d`` (Otsu) keeps the clean bump
on one seed and drops weak poisons on the next (issue 17, SPEC §4 finding 6).

What the per-transformation evidence shows instead (``transform_evidence``): as a
share of its own support for the original, a poison keeps almost nothing on a copy
whose prediction left the target (the trigger is gone, so is its influence), and
keeps a smaller negative share than a clean target-class image on a copy that is
still called the target (the margin measurement's runner-up is the victim class, the
class the poison's own training error points at; a clean target-class image's points
elsewhere, so relabelling removes all of its support). Each transformation shifts
these shares differently, but all poisons share them, tightly: one mechanism seen many
times. The rule therefore keeps today's recall and only decides the ambiguous middle:

1. **Candidates and upper group as today**: broken copies only, ``d ≥ 2``, positive
   support for every original (a poison *supports* the affected prediction), Otsu's
   upper group of ``log d``. Nothing outside it is flagged, so recall is at most today's.
2. **Seeds, no threshold to tune**: Otsu's split of the upper group gives its core
   (most collapsed); the lower group is what today's split already calls clean.
3. **Decide the middle by its profile**: a logistic regression (L2, C = 1, classes
   balanced: the library's defaults) on the robustly standardised per-cell shares —
   not on ``d``, which defined the seeds — core against lower group; a middle image
   is flagged when it looks like the core (p ≥ 0.5, the Bayes decision for balanced
   classes).

Measured (studies/rule_study.py, docs/flagging-rule.md): on BadNet it keeps a
fraction of today's clean images at nearly today's recall; it is *not* the default,
because it loses poisons on the smooth trigger (where the transformations barely
break the trigger's influence on mnist5k and no rule reaches recall 0.98) and a few
on BadNet (a middle image whose profile looks like the lower group's).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .queries import CollapseQueries
from .rules import EffectSizeParams, otsu_threshold, register_rule
from .statistics import broken_copies, collapse_effect_size, pooled_effect_size

MIN_CELL_COPIES = 2
"""A (transformation, broken?) cell needs this many copies to give a mean share."""

MIN_SEEDS = 3
"""Fewer core or lower-group seeds than this: nothing to learn from, keep the candidates."""


@dataclass
class TransformEvidence:
    """Per-transformation evidence per training image (what Triage shows for a flagged image).

    names: one label per cell, e.g. ``"blur · broken"`` or ``"flip · still target"``.
    transform, broken: the cell's transformation and whether its copies left the target.
    n_copies: copies in the cell; break_rate: share of that transformation's copies
        the model no longer calls the target.
    retained: ``[n_cells, n_train]`` mean over the cell's copies of
        ``score(copy, i) / score(original, i)``: the share of its support for the
        original that image ``i`` keeps (NaN where it did not support an original).
    effect_size: ``[n_cells, n_train]`` the cell's own ``mean / std`` of collapse.
    """

    names: list[str]
    transform: list[str]
    broken: list[bool]
    n_copies: list[int]
    break_rate: list[float]
    retained: np.ndarray
    effect_size: np.ndarray

    def as_dict(self, index: int) -> list[dict]:
        """One training image's evidence, JSON-able (one row per cell)."""
        return [{"cell": n, "transform": t, "broken": b, "n_copies": c, "break_rate": r,
                 "retained": _finite(self.retained[k, index]), "effect_size": _finite(self.effect_size[k, index])}
                for k, (n, t, b, c, r) in enumerate(zip(self.names, self.transform, self.broken, self.n_copies,
                                                         self.break_rate, strict=True))]


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def transform_evidence(scores: np.ndarray, queries: CollapseQueries, predicted: np.ndarray, target_class: int,
                       *, min_copies: int = MIN_CELL_COPIES) -> TransformEvidence:
    """Retained support and collapse effect size per (transformation, broken?) cell."""
    s = np.asarray(scores, dtype=np.float64)
    rows = queries.copy_rows()
    orig = queries.original_row_of()
    hit = np.asarray(predicted)[rows] != target_class
    tt = queries.transform[rows]
    support = s[orig]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(support > 0, s[rows] / np.where(support > 0, support, 1.0), np.nan)
    collapse = support - s[rows]
    names, tnames, flags, counts, rates, retained, effect = [], [], [], [], [], [], []
    for t in sorted(set(tt.tolist())):
        in_t = tt == t
        for is_broken in (True, False):
            m = in_t & (hit == is_broken)
            if m.sum() < min_copies:
                continue
            names.append(f"{t} · {'broken' if is_broken else 'still target'}")
            tnames.append(str(t))
            flags.append(is_broken)
            counts.append(int(m.sum()))
            rates.append(float(hit[in_t].mean()))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                retained.append(np.nanmean(share[m], axis=0))
            effect.append(_effect_size(collapse[m], queries.image_of[rows][m]))
    n = s.shape[1]
    return TransformEvidence(names, tnames, flags, counts, rates,
                             np.array(retained).reshape(-1, n), np.array(effect).reshape(-1, n))


def _effect_size(c: np.ndarray, image_of: np.ndarray) -> np.ndarray:
    return np.clip(pooled_effect_size(c, image_of), -1e6, 1e6)


def collapse_profile(scores: np.ndarray, queries: CollapseQueries, predicted: np.ndarray, target_class: int, *,
                     effect_size: float = 2.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Today's upper group, minus the images whose per-transformation profile is the clean group's.

    Returns ``(flagged sorted int64, core-likeness per training image, info)``: the
    core-likeness is 1 for the core, the profile classifier's probability for the other
    candidates and 0 for non-candidates; flagged = upper group with core-likeness ≥ 0.5.
    """
    s = np.asarray(scores, dtype=np.float64)
    keep = broken_copies(queries, predicted, target_class)
    d = collapse_effect_size(s, queries, keep=keep)
    supports = (s[queries.is_original] > 0).all(axis=0)
    cand = np.flatnonzero((d >= effect_size) & supports)
    stat = np.zeros(s.shape[1])
    info: dict = {"effect_size": effect_size, "n_candidates": int(cand.size)}
    if cand.size < 2 * MIN_SEEDS:
        stat[cand] = 1.0
        return cand.astype(np.int64), stat, {**info, "fallback": "too few candidates to split"}
    log_d = np.log(d[cand])  # candidates have d >= effect_size > 0; +inf stays in the upper group
    finite = np.isfinite(log_d)
    upper = log_d >= otsu_threshold(log_d[finite])
    core = upper & (log_d >= otsu_threshold(log_d[upper & finite])) if (upper & finite).sum() >= 2 else upper
    lower = ~upper
    middle = upper & ~core
    info.update({"n_upper": int(upper.sum()), "n_core": int(core.sum()), "n_lower": int(lower.sum())})
    ev = transform_evidence(s, queries, predicted, target_class)
    if core.sum() < MIN_SEEDS or lower.sum() < MIN_SEEDS or len(ev.names) == 0 or not middle.any():
        stat[cand[upper]] = 1.0
        return np.sort(cand[upper]).astype(np.int64), stat, {**info, "fallback": "nothing to learn: upper group"}
    z = _robust_standardise(ev.retained[:, cand].T)
    prob, weights = _core_likeness(z, core, lower)
    prob[core] = 1.0
    stat[cand] = prob
    flagged = cand[upper & (prob >= 0.5)]
    info.update({"n_flagged": int(flagged.size), "features": ev.names,
                 "weights": [round(float(w), 4) for w in weights]})
    return np.sort(flagged).astype(np.int64), stat, info


def _robust_standardise(x: np.ndarray) -> np.ndarray:
    """Median/MAD per column (a handful of extreme shares must not set the scale); NaN → median."""
    med = np.nanmedian(x, axis=0)
    x = np.where(np.isfinite(x), x, med)
    mad = 1.4826 * np.median(np.abs(x - med), axis=0)
    scale = np.where(mad > 0, mad, np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0))
    return np.clip((x - med) / scale, -10.0, 10.0)


def _core_likeness(z: np.ndarray, core: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    train = core | lower
    clf = LogisticRegression(class_weight="balanced", max_iter=5000)
    clf.fit(z[train], core[train])
    return clf.predict_proba(z)[:, 1], clf.coef_.ravel()


@dataclass(frozen=True)
class ProfileParams:
    # the same knob as delta's (one help text: the CLI shares one --effect-size flag between them)
    effect_size: float = field(default=2.0, metadata=EffectSizeParams.__dataclass_fields__["effect_size"].metadata)


register_rule("delta_profile", collapse_profile,
              "Δ-Influence, today's upper group minus images whose per-transformation profile is the clean group's",
              params=ProfileParams, statistic="core-likeness")
