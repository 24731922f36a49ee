"""What the stages hand on: each artefact carries the cache key it was made under.

Later stages build their keys on these instead of hashing weights or images again
(a CIFAR-10 training set is ≈600 MB of floats). Poisoned sets are stored compactly:
only the images the attack changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..attacks.base import PoisonedScenario
from ..collapse import CollapseEvidence
from ..data.base import ImageSet


class KeyedModel(Protocol):
    """A model plus the key of the stage that made it (trained, loaded or unlearned)."""

    model: nn.Module
    key: str


@dataclass
class TrainedModel:
    """The model under investigation, how it was made (``key``) and how it does."""

    model: nn.Module
    key: str
    clean_accuracy: float
    poison_success_rate: float | None
    seconds: float
    cached: bool
    trained_on: dict | None = None  # ``training.training_environment`` where it was trained (None: not recorded)


@dataclass
class CollapseResult(CollapseEvidence):
    """The collapse evidence plus how it was made: the labelled affected images, timings, key."""

    affected: ImageSet | None = None
    factor_seconds: float = 0.0
    score_seconds: float = 0.0
    key: str = ""


@dataclass
class UnlearnOutcome:
    """A model with a forget set unlearned, and what it costs and achieves."""

    model: nn.Module
    key: str
    method: str
    clean_accuracy: float
    poison_success_rate: float | None
    seconds: float
    passes: float
    info: dict
    cached: bool
    gaussian: dict | None = None


def pack(result: PoisonedScenario, clean: ImageSet) -> dict:
    """Store only what the attack changed: large training sets are not duplicated on disk."""
    same_label = result.train.labels == clean.labels
    same_image = result.train.rows_equal(clean)
    changed = torch.nonzero(~(same_label & same_image)).flatten()
    return {
        "changed": changed, "images": result.train.float_batch(changed),
        "labels": result.train.labels[changed].clone(), "n": len(result.train),
        "poison_indices": result.poison_indices, "psr_set": result.psr_set,
        "psr_source_indices": result.psr_source_indices, "target_class": result.target_class,
        "victim_class": result.victim_class, "info": result.info, "noise": result.noise,
        "trigger_fn": result.trigger_fn,
    }


def unpack(packed: dict, clean: ImageSet, key: str) -> PoisonedScenario:
    """The poisoned set from its packed form; new tensors, the clean set is never written into."""
    train = clean
    if len(packed["changed"]):
        train = clean.with_rows(packed["changed"], packed["images"], packed["labels"])
    return PoisonedScenario(train, np.asarray(packed["poison_indices"]), packed["psr_set"],
                            np.asarray(packed["psr_source_indices"]), packed["target_class"],
                            packed["victim_class"], packed["info"], packed["noise"], packed["trigger_fn"], key)


def jsonable(info: dict) -> dict:
    """The plain-value entries of an ``info`` dict (what can go into results JSON)."""
    out = {}
    for k, v in info.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)
        elif isinstance(v, np.generic):
            out[k] = v.item()
    return out
