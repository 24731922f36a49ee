"""Dataclass configs for every stage, with validation and a stable content hash.

Each field carries a one-line ``help`` in its metadata; a field whose value is a
registry name says which family (``family="model"``) and a field with a fixed set of
values lists them (``choices=...``). The CLI generates one flag per field from these
(``deltainf_core.flags``) and the app reads the same help and choices, so neither can
drift from the configs. A stage's cache key is the hash of every config it depends on
plus the stage's and the registry entry's code version (see ``pipeline``).

The field holding a registry name says so with ``family`` metadata and is named after
its family (``dataset``, ``model``, ``attack``, ``detector``; ``strategy`` is kronfluence's),
except ``UnlearnConfig.method``, which the unlearners' own code and tests construct.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .models.spec import ModelSpec

AUTO_EPOCHS = 12
"""Epochs when none are given and the set is large enough for ``min_steps``."""

INFLUENCE_STRATEGIES = ("ekfac", "kfac", "diagonal", "identity")
"""kronfluence's Hessian approximations, most faithful first (EK-FAC is the paper's)."""

AMP_DTYPES = ("bf16", "fp16")
"""Mixed-precision dtypes kronfluence may use for factors and scores (GPU only)."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _registered_transforms() -> tuple[str, ...]:
    """Every registered test-time transformation, in registration order (the draw order)."""
    from .collapse.transforms import TRANSFORMS

    return tuple(TRANSFORMS.names())


@dataclass
class DataConfig:
    dataset: str = _f("mnist5k", "registered dataset name (mnist5k is built in and offline)", family="dataset")
    data_dir: str | None = _f(None, "ImageFolder root with train/<class>/* and test/<class>/* (instead of --dataset)")
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
    attack: str = _f("badnet", "poisoning attack (none for a clean model)", family="attack")
    poison_frac: float = _f(0.01, "fraction of the training set that is poisoned, in (0, 0.5]")
    victim_class: int | None = _f(None, "class whose images carry the trigger (default 0)")
    target_class: int | None = _f(None, "class the attacker wants predicted (default 1)")
    params: dict = _f({}, "attack-specific parameters (trigger pattern, size, budget, ...)")
    seed: int = _f(0, "seed for choosing and crafting poisons")

    def validate(self, num_classes: int | None = None) -> None:
        if not (0.0 < self.poison_frac <= 0.5) and self.attack != "none":
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
        out = AttackConfig(self.attack, self.poison_frac, victim, target, dict(self.params), self.seed)
        out.validate(num_classes)
        return out


@dataclass
class TrainConfig:
    model: str = _f("smallcnn", "architecture: a built-in name, torchvision:NAME, path/to/file.py:NAME or "
                    "package.module:NAME (NAME a class or a factory function)", family="model", open_family=True)
    model_kwargs: dict = _f({}, "keyword arguments for the architecture, a JSON object such as '{\"width\": 16}' "
                                "(num_classes comes from the data when the class takes it)",
                            parser="model_kwargs", metavar="JSON")
    model_output: int | str | None = _f(None, "which output is the logits when forward returns a tuple or list "
                                              "(an index) or a dict (a key)", parser="model_output",
                                        metavar="INDEX_OR_KEY")
    input_mean: tuple[float, ...] | None = _f(
        None, "per-channel mean the model normalises its [0, 1] input with, as a,b,c (default: the data's "
        "statistics when the tool trains it; raw pixels for a checkpoint)", parser="channels",
        metavar="a,b,c")
    input_std: tuple[float, ...] | None = _f(None, "per-channel std that goes with input_mean, as a,b,c",
                                             parser="channels", metavar="a,b,c")
    epochs: int | None = _f(
        None, "training epochs (default: auto, 12 or more so that a small set still gets "
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

    def model_spec(self) -> ModelSpec:
        """The architecture these fields describe (``models.ModelSpec`` has the same field names)."""
        from .models.spec import ModelSpec

        return ModelSpec.from_config(self)

    def validate(self) -> None:
        self.model_spec().validate()
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")


@dataclass
class InfluenceConfig:
    strategy: str = _f("ekfac", "kronfluence Hessian approximation", choices=INFLUENCE_STRATEGIES)
    damping: float | None = _f(None, "Hessian damping (default: kronfluence's heuristic)")
    covariance_max_examples: int | None = _f(None, "cap on examples for covariance (shuffled)")
    train_batch_size: int = _f(64, "per-device batch size over the training set")
    query_batch_size: int = _f(64, "per-device batch size over the queries")
    lambda_max_examples: int | None = _f(
        20_000, "cap on examples for the eigenvalue-correction pass (shuffled; the costliest pass "
        "per image); None: all")
    amp_dtype: str | None = _f(None, "mixed precision for factors and scores on a GPU: bf16 or fp16",
                               choices=AMP_DTYPES)
    query_memory_mb: int = _f(
        1024, "memory for the queries' preconditioned gradients: every query that fits is scored "
        "in one pass over the training set")
    query_gradient_rank: int | None = _f(
        None, "low-rank approximation of each query's preconditioned gradient (kronfluence's "
        "query_gradient_low_rank): more queries per pass on large models, scores change slightly")

    def validate(self) -> None:
        if self.strategy not in INFLUENCE_STRATEGIES:
            raise ConfigError(f"unknown influence strategy {self.strategy!r} "
                              f"(choose from: {', '.join(INFLUENCE_STRATEGIES)})")
        if self.amp_dtype is not None and self.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)} or None, got {self.amp_dtype!r}")
        for name in ("lambda_max_examples", "covariance_max_examples", "query_gradient_rank"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be a positive integer or None, got {v}")
        for name in ("train_batch_size", "query_batch_size", "query_memory_mb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class CollapseConfig:
    transforms: tuple[str, ...] = field(default_factory=_registered_transforms, metadata={
        "help": "test-time transformations to draw the copies from", "family": "transformation"})
    n_copies: int = _f(50, "transformed, relabelled copies of the first affected image")
    n_copies_extra: int = _f(20, "copies of each further affected image")
    max_affected: int = _f(5, "use up to this many affected images (scored in one pass)")
    seed: int = _f(0, "seed for transform draws and random labels")

    def validate(self) -> None:
        if self.n_copies < 1:
            raise ConfigError("need at least one transformed copy")
        if self.n_copies_extra < 1:
            raise ConfigError("need at least one copy of each further affected image")
        if self.max_affected < 1:
            raise ConfigError("need at least one affected image")
        if not self.transforms:
            raise ConfigError("choose at least one transformation")


@dataclass
class DetectConfig:
    detector: str = _f("delta", "detector (the Δ-Influence rules and the baselines)", family="detector")
    params: dict = _f({}, "detector-specific parameters (e.g. effect_size for delta)")


@dataclass
class UnlearnConfig:
    method: str = _f("eu", "unlearning method", family="unlearner")
    epochs: int | None = _f(None, "epochs for fine-tuning methods (default: method's own)")
    params: dict = _f({}, "method-specific hyper-parameters")
    seed: int = _f(0, "seed for the unlearning run")


ENGINES = ("local", "ray")
"""Where the work runs: this process (the reference) or Ray tasks (a local cluster or one joined)."""


@dataclass
class ComputeConfig:
    """Where the investigation's work runs. Never part of a cache key: every engine makes the same
    artefacts, so ``local`` and ``ray`` share a cache (``train_workers`` > 1 is, being other arithmetic)."""

    engine: str = _f("local", "where factors, scores and retrains run: local (this process, the reference) or "
                     "ray (one Ray task per cached unit; same results)", choices=ENGINES)
    ray_address: str | None = _f(None, "the Ray cluster to join (host:port as ray start printed it, ray://host:port "
                                 "or auto); default: start a local one", metavar="ADDRESS")
    unit_cpus: int = _f(1, "CPU cores, and torch threads, each Ray unit asks for (the local engine's thread count "
                        "gives identical results)")
    train_workers: int = _f(1, "processes that train the model, EU's retrains and the oracle as one "
                            "DistributedDataParallel job (torchrun with the local engine, Ray Train with ray); "
                            "more than 1 is other arithmetic, so it keys the models")

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.ray_address and self.engine != "ray":
            raise ConfigError("a Ray address needs the ray engine (--engine ray)")
        for name in ("unit_cpus", "train_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class Scenario:
    """Everything that determines an investigation's results: one config per stage.

    checkpoint: path of an existing model file to investigate instead of training
        one (no attack, no ground truth); hashed by content.
    max_rounds: detect→unlearn rounds while an affected image still shows the
        attack (SPEC §4 finding 5; ground-truth free). 1 = single shot.
    """

    data: DataConfig = field(default_factory=DataConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    influence: InfluenceConfig = field(default_factory=InfluenceConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    checkpoint: str | None = _f(None, "investigate this existing model file (a state_dict as .pt/.pth or "
                                      ".safetensors) instead of training one; --model says its architecture")
    affected_test_index: tuple[int, ...] = _f(
        (), "test images the investigation explains, by index in the test set (ImageFolder order: classes, then "
        "files, sorted); its target is the model's own prediction on them. Default: triggered test images the "
        "model predicts as the attack target", metavar="I")
    max_rounds: int = _f(2, "detect/unlearn rounds while an affected image still shows the attack")

    def as_dict(self) -> dict:
        return config_dict(self)

    def unlearn_config(self, method: str | None = None) -> UnlearnConfig:
        """The unlearning ``method`` runs with: the scenario's own, or another (the oracle's, delta_heldout's EU)
        with that method's defaults."""
        if method is None or method == self.unlearn.method:
            return self.unlearn
        return replace(self.unlearn, method=method, params={})

    @classmethod
    def from_dict(cls, values: dict) -> Scenario:
        """The inverse of ``as_dict`` (a saved investigation, a results JSON's ``config``).

        Fields missing from ``values`` keep today's defaults, so records written before
        a field existed still open; unknown fields are refused in one sentence.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown scenario setting(s): {', '.join(unknown)}")
        return _stage_from_dict(cls, values, nested=True)

    def validate(self) -> None:
        """Checks that need no data (class ranges are checked once the data is loaded)."""
        self.data.validate()
        self.attack.validate()
        self.train.validate()
        self.influence.validate()
        self.collapse.validate()
        if self.max_rounds < 1:
            raise ConfigError(f"need at least one detect/unlearn round, got {self.max_rounds}")
        picks = list(self.affected_test_index)
        if any(not isinstance(i, int) or i < 0 for i in picks):
            raise ConfigError(f"affected test indices must be whole numbers from 0, got {picks}")
        if len(set(picks)) != len(picks):
            raise ConfigError("each affected test index may be given only once")


STAGES: dict[str, type] = {"data": DataConfig, "attack": AttackConfig, "train": TrainConfig,
                           "influence": InfluenceConfig, "collapse": CollapseConfig, "detect": DetectConfig,
                           "unlearn": UnlearnConfig}
"""Scenario field name -> its stage config class, in the order of the investigation."""


def _stage_from_dict(cls: type, values: dict, nested: bool = False) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{cls.__name__} settings must be a mapping, got {type(values).__name__}")
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    kw = {k: tuple(v) if isinstance(v, list) and "tuple" in str(by_name[k].type) else v for k, v in values.items()}
    if nested:  # a Scenario: its stage fields are configs of their own
        kw = {k: _stage_from_dict(STAGES[k], v) if k in STAGES else v for k, v in kw.items()}
    return cls(**kw)


def config_from_dict(cls: type, values: dict) -> Any:
    """A stage config from ``config_dict``'s output (its lists back to tuples): what another process reads."""
    return _stage_from_dict(cls, values)


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
