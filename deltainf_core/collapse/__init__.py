"""Influence collapse: transformed, relabelled query copies, their statistics and the flagging rules.

- ``transforms``: the published test-time transformations (registry ``TRANSFORMS``);
- ``queries``: the affected images and their seeded, relabelled copies (one scoring pass);
- ``statistics``: the one implementation of Δ, the collapse values, the broken-copies
  mask and the pooled effect size ``d``;
- ``evidence``: one scoring pass as a rule sees it (``CollapseEvidence``);
- ``rules``: the flagging rules (registry ``RULES``; each is also a detector).

A rule in its own module registers itself with ``register_rule`` and is imported below.
"""

from . import heldout as _heldout
from . import label_consistency as _label_consistency
from . import profile as _profile  # noqa: F401  (registers delta_profile)
from .evidence import CollapseEvidence, TransformCollapse, transform_collapse
from .queries import CollapseQueries, as_target, build_queries
from .rules import RULES, RuleResult, register_rule
from .statistics import (
    CollapsePanels,
    CollapseStats,
    broken_copies,
    collapse_effect_size,
    collapse_panels,
    collapse_stats,
    delta_scores,
    effect_size,
    influence_collapse,
    per_image_effect_size,
    pooled_effect_size,
)
from .transforms import TRANSFORMS, apply_transform

CHECK_SENTENCES = {"label_check": _label_consistency.describe_label_check, "heldout_check": _heldout.describe_heldout}
"""A rule's second check, by the key its sentence has in a round's record (the JSON, the CLI summary)."""


def describe_checks(info: dict) -> dict[str, str]:
    """What a rule's second check did, as one sentence per check it ran (empty for rules without one)."""
    said = {key: describe(info) for key, describe in CHECK_SENTENCES.items()}
    return {key: sentence for key, sentence in said.items() if sentence}

__all__ = [
    "CHECK_SENTENCES",
    "RULES",
    "TRANSFORMS",
    "CollapseEvidence",
    "CollapsePanels",
    "CollapseQueries",
    "CollapseStats",
    "RuleResult",
    "TransformCollapse",
    "apply_transform",
    "as_target",
    "broken_copies",
    "build_queries",
    "collapse_effect_size",
    "collapse_panels",
    "collapse_stats",
    "delta_scores",
    "describe_checks",
    "effect_size",
    "influence_collapse",
    "per_image_effect_size",
    "pooled_effect_size",
    "register_rule",
    "transform_collapse",
]
