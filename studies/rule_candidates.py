"""Candidate flagging rules measured by ``studies/rule_study.py`` (issue 17).

Every candidate has the rule signature ``(scores, queries, predicted, target_class)
-> (flagged, statistic, info)``. They are kept here, beside the adopted rule, so the
study table shows what each idea measured on every dataset and seed — including the
ones that did not work.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deltainf_core.collapse.evidence import CollapseEvidence
from deltainf_core.collapse.profile import collapse_profile
from deltainf_core.collapse.queries import CollapseQueries
from deltainf_core.collapse.rules import RULES, otsu_threshold, split_rule
from deltainf_core.collapse.statistics import (
    broken_copies,
    collapse_effect_size,
    delta_scores,
    pooled_effect_size,
)

Rule = Callable[[np.ndarray, CollapseQueries, np.ndarray, int], tuple[np.ndarray, np.ndarray, dict]]


def today(scores, queries, predicted, target):
    """The shipped default: broken copies, candidates d >= 2, Otsu's upper group of log d."""
    res = RULES.get("delta")(CollapseEvidence(scores, queries, predicted, target), RULES.parse_params("delta", {}))
    return res.flagged, res.statistic, res.info


def d_at_least(threshold: float) -> Rule:
    def rule(scores, queries, predicted, target):
        d = collapse_effect_size(scores, queries, keep=broken_copies(queries, predicted, target))
        return np.flatnonzero(d >= threshold), d, {"threshold": threshold}
    return rule


def _candidates(scores, queries, predicted, target):
    keep = broken_copies(queries, predicted, target)
    d = collapse_effect_size(scores, queries, keep=keep)
    support = np.asarray(scores, dtype=np.float64)[queries.is_original]
    cand = np.flatnonzero((d >= 2.0) & (support > 0).all(axis=0))
    return d, cand, keep


def otsu_twice(scores, queries, predicted, target):
    """Otsu's upper group, split again by Otsu: the most collapsed core only."""
    d, cand, _ = _candidates(scores, queries, predicted, target)
    ld = np.log(d[cand])
    up = cand[ld >= otsu_threshold(ld)]
    lu = np.log(d[up])
    return up[lu >= otsu_threshold(lu)], d, {}


def gmm_bic(scores, queries, predicted, target):
    """Gaussian mixture on log d of the candidates (1-4 components by BIC); the top component."""
    from sklearn.mixture import GaussianMixture

    d, cand, _ = _candidates(scores, queries, predicted, target)
    x = np.log(d[cand])[:, None]
    fits = [GaussianMixture(k, random_state=0, n_init=3).fit(x) for k in (1, 2, 3, 4)]
    g = fits[int(np.argmin([f.bic(x) for f in fits]))]
    if g.n_components == 1:
        return cand, d, {"components": 1}
    top = int(np.argmax(g.means_.ravel()))
    return cand[g.predict(x) == top], d, {"components": g.n_components}


def stouffer_transforms(scores, queries, predicted, target):
    """Per-transformation effect sizes combined Stouffer-like (sqrt(n)-weighted), then today's split."""
    keep = broken_copies(queries, predicted, target)
    delta, rows = delta_scores(scores, queries, keep=keep)
    tt, io = queries.transform[rows], queries.image_of[rows]
    num, den = 0.0, 0.0
    for t in np.unique(tt):
        m = tt == t
        if m.sum() < 2:
            continue
        dt = np.clip(pooled_effect_size(-delta[m], io[m]), -1e6, 1e6)
        num = num + np.sqrt(m.sum()) * dt
        den += m.sum()
    z = num / np.sqrt(max(den, 1.0))
    return split_rule(z), z, {}


def profile_rule(scores, queries, predicted, target):
    return collapse_profile(scores, queries, predicted, target)


CANDIDATES: dict[str, Rule] = {
    "today": today,
    "d>=2.5": d_at_least(2.5),
    "otsu_twice": otsu_twice,
    "gmm_bic": gmm_bic,
    "stouffer_t": stouffer_transforms,
    "profile": profile_rule,
}


def _two_mechanisms(scores, queries, predicted, target):
    """z(log d) + z(relabel specificity): robust z over the candidates; both oriented 'higher = poison'."""
    from deltainf_core.collapse.profile import _robust_standardise, transform_evidence

    d, cand, _ = _candidates(scores, queries, predicted, target)
    ev = transform_evidence(scores, queries, predicted, target)
    still = np.array([not b for b in ev.broken], dtype=bool)
    zd = _robust_standardise(np.log(d[cand])[:, None])[:, 0]
    zr = _robust_standardise(ev.retained[still][:, cand].T).mean(axis=1) if still.any() else np.zeros(cand.size)
    return d, cand, ev, zd + zr


def comb_upper(scores, queries, predicted, target):
    """Otsu's upper group of the two-mechanism score (collapse + relabel specificity)."""
    d, cand, _, comb = _two_mechanisms(scores, queries, predicted, target)
    stat = np.full(d.shape, -np.inf)
    stat[cand] = comb
    return np.sort(cand[comb >= otsu_threshold(comb)]), stat, {}


def comb_profile(scores, queries, predicted, target):
    """Two-mechanism upper group; its middle decided by the per-cell profile (core vs lower)."""
    from deltainf_core.collapse.profile import _core_likeness, _robust_standardise

    d, cand, ev, comb = _two_mechanisms(scores, queries, predicted, target)
    up = comb >= otsu_threshold(comb)
    core = up & (comb >= otsu_threshold(comb[up]))
    low = ~up
    z = _robust_standardise(ev.retained[:, cand].T)
    prob, _ = _core_likeness(z, core, low)
    prob[core] = 1.0
    stat = np.zeros(d.shape)
    stat[cand] = prob
    return np.sort(cand[up & (prob >= 0.5)]), stat, {}


CANDIDATES.update({"comb_upper": comb_upper, "comb_profile": comb_profile})


def all_copies_split(scores, queries, predicted, target):
    """Today's split on d over every copy (broken or not): the pre-broken-copies default."""
    params = RULES.parse_params("delta", {"broken_only": False})
    res = RULES.get("delta")(CollapseEvidence(scores, queries, predicted, target), params)
    return res.flagged, res.statistic, res.info


CANDIDATES.update({"all_copies": all_copies_split})


def without(transform: str) -> Rule:
    """Today's rule on the copies of every transformation but one (the app's toggles)."""
    def rule(scores, queries, predicted, target):
        keep = [t for t in queries.transforms_present() if t != transform]
        ev = CollapseEvidence(scores, queries, predicted, target)
        res = RULES.get("delta")(ev, RULES.parse_params("delta", {}), keep)
        return res.flagged, res.statistic, res.info
    return rule


CANDIDATES.update({"no_invert": without("invert")})


def all_copies_candidates(scores, queries, predicted, target):
    """The recall envelope: every image with d >= 2 over all copies, no split (nearly the whole target class)."""
    params = RULES.parse_params("delta", {"broken_only": False, "split": False})
    res = RULES.get("delta")(CollapseEvidence(scores, queries, predicted, target), params)
    return res.flagged, res.statistic, res.info


CANDIDATES.update({"envelope": all_copies_candidates})


def label_consistency(scores, queries, predicted, target, label_check=None):
    """delta_label: today's set; where label breaks agree with collapse, the images that lose their label."""
    ev = CollapseEvidence(scores, queries, predicted, target, label_check)
    res = RULES.get("delta_label")(ev, RULES.parse_params("delta_label", {}))
    return res.flagged, res.statistic, res.info


label_consistency.needs_model = True  # type: ignore[attr-defined]  (rule_study passes the model's label check)
CANDIDATES.update({"label": label_consistency})


def with_tail(n_sd: float) -> Rule:
    """today's set with its group's lower tail: delta_heldout's fallback (``rules.upper_group_tail``)."""
    def rule(scores, queries, predicted, target):
        _, d, info = today(scores, queries, predicted, target)
        return split_rule(d, 2.0, tail_sd=n_sd), d, {**info, "tail_sd": n_sd}
    return rule


def halfway(scores, queries, predicted, target):
    """The lead noted beside delta_heldout version 2 (502ef95): a cut halfway between Otsu's and the mean
    of its lower group, in log d."""
    flagged, d, info = today(scores, queries, predicted, target)
    cand = np.flatnonzero(d >= 2.0)
    ld = np.log(d[cand])
    finite = np.isfinite(ld)
    if finite.sum() < 3:
        return flagged, d, info
    cut = otsu_threshold(ld[finite])
    lower = ld[finite & (ld < cut)]
    return (cand[ld >= (cut + lower.mean()) / 2] if lower.size else flagged), d, info


CANDIDATES.update({"tail": with_tail(2.0), "halfway": halfway})
