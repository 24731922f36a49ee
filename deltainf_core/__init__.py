"""deltainf: trace a data-poisoning attack to the training images responsible, and unlearn them.

The public API used by the app's pages and by scripts. Everything heavy goes
through ``Pipeline``, which caches every stage on disk by a hash of its configs.
"""

from .attacks import ATTACKS, PoisonedScenario
from .checkpoints import checkpoint_bytes, load_checkpoint, read_checkpoint
from .collapse.queries import CollapseQueries, build_queries
from .collapse.rules import (
    collapse_effect_size,
    collapse_votes,
    delta_scores,
    effect_size_rule,
    influence_collapse,
    per_image_effect_size,
    pooled_effect_size,
    published_vote,
)
from .collapse.transforms import TRANSFORMS, apply_transform
from .config import (
    ALL_TRANSFORMS,
    AttackConfig,
    CollapseConfig,
    DataConfig,
    DetectConfig,
    InfluenceConfig,
    TrainConfig,
    UnlearnConfig,
)
from .data import DATASETS, DatasetSplits, ImageSet, load_dataset
from .detectors import DETECTORS, Detection
from .errors import DeltaInfError
from .metrics import SUCCESS_PSR, clean_accuracy, poison_success_rate, precision_recall
from .models import MODELS, build_model
from .pipeline import CollapseResult, Pipeline, Scenario, TrainedModel, UnlearnOutcome
from .store import Store
from .training import predict, predict_logits
from .unlearning import UNLEARNERS

__version__ = "0.1.0"

__all__ = [
    "ALL_TRANSFORMS", "ATTACKS", "DATASETS", "DETECTORS", "MODELS", "SUCCESS_PSR", "TRANSFORMS",
    "UNLEARNERS", "AttackConfig", "CollapseConfig", "CollapseQueries", "CollapseResult", "DataConfig",
    "DatasetSplits", "DeltaInfError", "DetectConfig", "Detection", "ImageSet", "InfluenceConfig",
    "Pipeline", "PoisonedScenario", "Scenario", "Store", "TrainConfig", "TrainedModel", "UnlearnConfig",
    "UnlearnOutcome", "apply_transform", "build_model", "build_queries", "checkpoint_bytes",
    "clean_accuracy", "collapse_effect_size", "collapse_votes", "delta_scores", "effect_size_rule",
    "influence_collapse",
    "load_checkpoint", "load_dataset", "per_image_effect_size", "poison_success_rate",
    "pooled_effect_size", "precision_recall", "predict", "predict_logits", "published_vote",
    "read_checkpoint",
]
