"""No attack: a clean model, for baselines and for investigating real checkpoints."""

from __future__ import annotations

import numpy as np

from ..config import AttackConfig, TrainConfig
from ..data.base import DatasetSplits
from ..training import Progress
from .base import PoisonedScenario, empty_like


def attack(splits: DatasetSplits, cfg: AttackConfig, train_cfg: TrainConfig, progress: Progress) -> PoisonedScenario:
    progress(1.0, "no attack")
    return PoisonedScenario(splits.train, np.zeros(0, dtype=np.int64), empty_like(splits.test),
                            np.zeros(0, dtype=np.int64), cfg.target_class, cfg.victim_class, {})
