"""Dataclass configs for every stage, with validation and a stable content hash.

Each field carries a one-line ``help`` in its metadata; the CLI builds its flags
from the same fields, so the two cannot drift. A stage's cache key is the hash of
every config it depends on plus the stage's code version (see ``store``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ConfigError

AUTO_EPOCHS = 12
"""Epochs when none are given and the set is large enough for ``min_steps``."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


ALL_TRANSFORMS = ("flip", "color_jitter", "affine", "elastic", "blur", "invert", "channel_swap")


@dataclass
class DataConfig:
    dataset: str = _f("mnist5k", "registered dataset name (mnist5k is built in and offline)")
    data_dir: str | None = _f(None, "ImageFolder root with train/<class>/* and test/<class>/*")
    data_root: str = _f("data", "where torchvision datasets live or are downloaded to")
    max_train: int | None = _f(None, "keep at most this many training images (stratified)")
    max_test: int | None = _f(None, "keep at most this many test images (stratified)")
    image_size: int | None = _f(None, "resize images to this side length (default: dataset's own)")

    def validate(self) -> None:
        for name in ("max_train", "max_test", "image_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v}")


@dataclass
class AttackConfig:
    name: str = _f("badnet", "poisoning attack (none for a clean model)")
    poison_frac: float = _f(0.01, "fraction of the training set that is poisoned")
    victim_class: int | None = _f(None, "class whose images carry the trigger (default 0)")
    target_class: int | None = _f(None, "class the attacker wants predicted (default 1)")
    params: dict = _f({}, "attack-specific parameters (trigger pattern, size, budget, ...)")
    seed: int = _f(0, "seed for choosing and crafting poisons")

    def validate(self, num_classes: int | None = None) -> None:
        if not (0.0 < self.poison_frac <= 0.5) and self.name != "none":
            raise ConfigError(f"poison fraction must be in (0, 0.5], got {self.poison_frac}")
        for role in ("victim_class", "target_class"):
            c = getattr(self, role)
            if c is not None and (c < 0 or (num_classes is not None and c >= num_classes)):
                raise ConfigError(
                    f"{role.replace('_', ' ')} {c} does not exist (classes are 0..{(num_classes or 1) - 1})"
                )
        if self.victim_class is not None and self.victim_class == self.target_class:
            raise ConfigError("victim class and target class must differ")

    def resolved(self, num_classes: int) -> AttackConfig:
        """Fill default victim/target classes once the number of classes is known."""
        victim = 0 if self.victim_class is None else self.victim_class
        target = self.target_class
        if target is None:
            target = 1 if victim != 1 else 2 % num_classes
        out = AttackConfig(self.name, self.poison_frac, victim, target, dict(self.params), self.seed)
        out.validate(num_classes)
        return out


@dataclass
class TrainConfig:
    model: str = _f("smallcnn", "architecture")
    epochs: int | None = _f(
        None, "training epochs (None: auto, 12 or more so that a small set still gets "
        "min_steps mini-batches)")
    batch_size: int = _f(128, "mini-batch size")
    lr: float = _f(0.05, "peak learning rate (SGD + Nesterov, one-cycle)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(5e-4, "L2 weight decay")
    augment: bool = _f(True, "random crop (and flip where labels allow) while training")
    seed: int = _f(0, "seed for initialisation and batch order")
    min_steps: int = _f(600, "with automatic epochs, train for at least this many mini-batches")
    precision: str = _f("float32", "training arithmetic: float32, or bf16 (autocast; for GPUs with bfloat16)")

    def epochs_for(self, n_train: int) -> int:
        """Epochs actually run on ``n_train`` images.

        Why automatic: 12 epochs of 1,900 CIFAR images are 180 SGD steps, which left
        the model at 50% accuracy and a BadNet trigger unlearnt (PSR 7%); 40 epochs
        (600 steps) reached 62% and PSR 95%. Sets of 10,000+ images keep 12 epochs.
        """
        if self.epochs is not None:
            return self.epochs
        steps_per_epoch = max(1, math.ceil(n_train / self.batch_size))
        return max(AUTO_EPOCHS, math.ceil(self.min_steps / steps_per_epoch))

    def validate(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")


@dataclass
class InfluenceConfig:
    strategy: str = _f("ekfac", "kronfluence strategy: identity, diagonal, kfac or ekfac")
    damping: float | None = _f(None, "Hessian damping (None: kronfluence's heuristic)")
    covariance_max_examples: int | None = _f(None, "cap on examples for covariance (shuffled)")
    train_batch_size: int = _f(64, "per-device batch size over the training set")
    query_batch_size: int = _f(64, "per-device batch size over the queries")
    lambda_max_examples: int | None = _f(
        20_000, "cap on examples for the eigenvalue-correction pass (shuffled; the costliest pass "
        "per image); None: all")
    amp_dtype: str | None = _f(None, "mixed precision for factors and scores on a GPU: bf16 or fp16")
    query_memory_mb: int = _f(
        1024, "memory for the queries' preconditioned gradients: every query that fits is scored "
        "in one pass over the training set")
    query_gradient_rank: int | None = _f(
        None, "low-rank approximation of each query's preconditioned gradient (kronfluence's "
        "query_gradient_low_rank): more queries per pass on large models, scores change slightly")

    def validate(self) -> None:
        if self.strategy not in ("identity", "diagonal", "kfac", "ekfac"):
            raise ConfigError(f"unknown influence strategy {self.strategy!r}")


@dataclass
class CollapseConfig:
    transforms: tuple[str, ...] = _f(ALL_TRANSFORMS, "test-time transformations to draw from")
    n_copies: int = _f(50, "transformed, relabelled copies of the first affected image")
    n_copies_extra: int = _f(20, "copies of each further affected image")
    max_affected: int = _f(5, "use up to this many affected images (scored in one pass)")
    seed: int = _f(0, "seed for transform draws and random labels")

    def validate(self) -> None:
        if self.n_copies < 1:
            raise ConfigError("need at least one transformed copy")
        if self.max_affected < 1:
            raise ConfigError("need at least one affected image")
        if not self.transforms:
            raise ConfigError("choose at least one transformation")


@dataclass
class DetectConfig:
    method: str = _f("delta", "detector")
    effect_size: float = _f(2.0, "delta: candidates have pooled mean/std of influence collapse >= this")
    broken_only: bool = _f(True, "delta: count only copies the model no longer predicts as the target")
    split: bool = _f(True, "delta: keep the upper of two groups of candidates (Otsu on log d)")
    th: float = _f(0.0, "delta_published: a copy votes when its score change is below th")
    n_tolerate: int = _f(1, "delta_published: copies allowed not to vote")
    top_k: int | None = _f(None, "influence_topk etc.: flag this many (default: expected poisons)")


@dataclass
class UnlearnConfig:
    method: str = _f("eu", "unlearning method")
    epochs: int | None = _f(None, "epochs for fine-tuning methods (default: method's own)")
    params: dict = _f({}, "method-specific hyper-parameters")
    seed: int = _f(0, "seed for the unlearning run")


def config_dict(obj: Any) -> dict:
    """Plain JSON-able dict of a config (tuples become lists)."""
    return json.loads(json.dumps(asdict(obj), default=list))


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Content hash of configs / plain values; order of dict keys never matters."""

    def norm(x: Any) -> Any:
        if hasattr(x, "__dataclass_fields__"):
            return {"__type__": type(x).__name__, **config_dict(x)}
        return x

    payload = json.dumps([norm(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def field_help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}
