"""deltainf: trace a data-poisoning attack to the training images responsible, and unlearn them.

The public API used by the app's pages and by scripts. Everything heavy goes
through ``Pipeline``, which caches every stage on disk by a hash of its configs;
the collapse statistics and rules live in ``collapse`` (all of them importable
from there); every family of methods is a self-describing registry (``ATTACKS``,
``DETECTORS``, ``RULES``, ...).
"""

from .attacks import ATTACKS, NO_ATTACK, PoisonedScenario
from .checkpoints import checkpoint_bytes, load_checkpoint, read_checkpoint
from .collapse import (
    RULES,
    TRANSFORMS,
    CollapseEvidence,
    CollapseQueries,
    RuleResult,
    apply_transform,
    as_target,
    build_queries,
    collapse_panels,
    collapse_stats,
    delta_scores,
    effect_size,
    influence_collapse,
    pooled_effect_size,
    register_rule,
)
from .config import (
    STAGES,
    AttackConfig,
    CollapseConfig,
    DataConfig,
    DetectConfig,
    InfluenceConfig,
    Scenario,
    TrainConfig,
    UnlearnConfig,
)
from .data import DATASETS, DatasetSplits, ImageSet, load_dataset
from .detectors import DETECTORS, Detection
from .errors import DeltaInfError
from .metrics import SUCCESS_PSR, clean_accuracy, poison_success_rate, precision_recall
from .models import MODELS, build_model
from .pipeline import CollapseResult, Investigation, Pipeline, Rounds, TrainedModel, UnlearnOutcome, investigate
from .store import Store
from .training import predict, predict_logits
from .unlearning import UNLEARNERS

__version__ = "0.1.0"

__all__ = [
    "ATTACKS", "DATASETS", "DETECTORS", "MODELS", "NO_ATTACK", "RULES", "STAGES", "SUCCESS_PSR", "TRANSFORMS",
    "UNLEARNERS", "AttackConfig", "CollapseConfig", "CollapseEvidence", "CollapseQueries",
    "CollapseResult", "DataConfig", "DatasetSplits", "DeltaInfError", "DetectConfig", "Detection",
    "ImageSet", "InfluenceConfig", "Investigation", "Pipeline", "PoisonedScenario", "Rounds", "RuleResult",
    "Scenario", "Store", "TrainConfig", "TrainedModel", "UnlearnConfig", "UnlearnOutcome", "apply_transform",
    "as_target", "build_model", "build_queries", "checkpoint_bytes", "clean_accuracy",
    "collapse_panels", "collapse_stats", "delta_scores", "effect_size",
    "influence_collapse", "investigate", "load_checkpoint", "load_dataset",
    "poison_success_rate", "pooled_effect_size", "precision_recall", "predict", "predict_logits",
    "read_checkpoint", "register_rule",
]
