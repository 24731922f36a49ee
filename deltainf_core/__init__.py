"""deltainf: trace a data-poisoning attack to the training images responsible, and unlearn them.

The public API used by the app's pages and by scripts. Everything heavy goes
through ``Pipeline``, which caches every stage on disk by a hash of its configs;
the collapse statistics and rules live in ``collapse`` (all of them importable
from there); every family of methods is a self-describing registry (``ATTACKS``,
``DETECTORS``, ``RULES``, ...).

Names are imported on first use (PEP 562): ``python -m deltainf_core`` checks its
arguments and paths before torch is loaded, so bad input fails in well under a second.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    ".attacks": ("ATTACKS", "NO_ATTACK", "PoisonedScenario"),
    ".checkpoints": ("checkpoint_bytes", "load_checkpoint", "read_checkpoint"),
    ".collapse": (
        "CollapseEvidence", "CollapseQueries", "RULES", "RuleResult", "TRANSFORMS", "apply_transform", "as_target",
        "build_queries", "collapse_panels", "collapse_stats", "delta_scores", "effect_size", "influence_collapse",
        "pooled_effect_size", "register_rule"
    ),
    ".config": (
        "AttackConfig", "CollapseConfig", "DataConfig", "DetectConfig", "InfluenceConfig", "STAGES", "Scenario",
        "TrainConfig", "UnlearnConfig"
    ),
    ".data": ("DATASETS", "DatasetSplits", "ImageSet", "load_dataset"),
    ".detectors": ("DETECTORS", "Detection"),
    ".errors": ("DeltaInfError",),
    ".metrics": ("SUCCESS_PSR", "clean_accuracy", "poison_success_rate", "precision_recall", "still_affected"),
    ".models": ("MODELS", "build_model"),
    ".pipeline": (
        "CollapseResult", "Investigation", "Pipeline", "Rounds", "TrainedModel", "UnlearnOutcome", "investigate",
        "run_results",
    ),
    ".store": ("Store",),
    ".training": ("predict", "predict_logits"),
    ".unlearning": ("UNLEARNERS",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__version__ = "0.1.0"
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))

