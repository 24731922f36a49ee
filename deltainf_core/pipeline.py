"""The investigation as cached stages: data → attack → model → affected → collapse → detect → unlearn.

This is the only module that knows the order. Each stage is a pure function of
the configs it depends on and is cached in the ``Store`` under a hash of them, so
a second visit (app) or rerun (CLI) is instant and a killed run keeps every stage
it finished. The CLI and every page go through ``Pipeline`` and nothing deeper.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from .attacks import ATTACK_VERSIONS, ATTACKS
from .attacks.base import PoisonedScenario
from .checkpoints import load_checkpoint
from .collapse.queries import CollapseQueries, build_queries
from .config import (
    AttackConfig,
    CollapseConfig,
    DataConfig,
    DetectConfig,
    InfluenceConfig,
    TrainConfig,
    UnlearnConfig,
    config_dict,
    stable_hash,
)
from .data import load_dataset
from .data.base import DatasetSplits, ImageSet
from .detectors import DETECTORS
from .detectors.base import Detection, DetectionContext
from .errors import ConfigError, DataError, UnlearningError
from .influence import InfluenceEngine, data_fingerprint, model_fingerprint
from .metrics import clean_accuracy, poison_success_rate, precision_recall
from .models import Classifier, build_model
from .store import Store
from .training import pick_device, predict, train_model
from .unlearning import UNLEARNERS, UnlearnContext

INFLUENCE_DETECTORS = ("delta", "delta_published", "influence_topk")
"""Detectors that need EK-FAC factors (timed separately as factors + scores)."""

StageProgress = Callable[[str, float, str], None]
"""Progress for a whole pipeline: (stage name, fraction of that stage done, message)."""


def quiet(stage: str, frac: float, msg: str) -> None:
    return None


@dataclass
class Scenario:
    """Everything that determines an investigation's results.

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
    checkpoint: str | None = None
    max_rounds: int = 2

    def as_dict(self) -> dict:
        return {
            "data": config_dict(self.data), "attack": config_dict(self.attack),
            "train": config_dict(self.train), "influence": config_dict(self.influence),
            "collapse": config_dict(self.collapse), "detect": config_dict(self.detect),
            "unlearn": config_dict(self.unlearn), "checkpoint": self.checkpoint,
            "max_rounds": self.max_rounds,
        }


@dataclass
class TrainedModel:
    """A model ready for analysis plus how it was made and how it does."""

    model: Classifier
    key: str
    clean_accuracy: float
    poison_success_rate: float | None
    seconds: float
    cached: bool


@dataclass
class CollapseResult:
    """Scores of the collapse queries: ``scores[q, i]`` for query ``q`` and training image ``i``."""

    queries: CollapseQueries
    scores: np.ndarray
    affected: ImageSet
    target_class: int
    factor_seconds: float
    score_seconds: float
    predicted: np.ndarray | None = None
    """The model's label for every query (which copies broke the attack)."""


@dataclass
class UnlearnOutcome:
    model: nn.Module
    method: str
    clean_accuracy: float
    poison_success_rate: float | None
    seconds: float
    passes: float
    info: dict
    cached: bool
    gaussian: dict | None = None


@dataclass
class Investigation:
    """What ``Pipeline.investigate`` found and did.

    affected_idx: indices into the attack's ``psr_set`` used as affected images.
    flagged: union of every round's flagged training indices.
    outcome: the unlearned model after the last round (None if nothing was flagged).
    rounds: per-round summary (flag counts, precision/recall when known, PSR, accuracy).
    """

    affected_idx: np.ndarray
    flagged: np.ndarray
    outcome: UnlearnOutcome | None
    rounds: list[dict]
    precision: float | None
    recall: float | None
    timings: dict


def _file_hash(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Pipeline:
    """Runs and caches the stages; holds small in-process memos for the app's reruns."""

    def __init__(self, store: Store | None = None, progress: StageProgress = quiet) -> None:
        self.store = store or Store()
        self.progress = progress
        self.device = pick_device()
        self._datasets: dict[str, DatasetSplits] = {}
        self._poisoned: dict[str, PoisonedScenario] = {}
        self._models: dict[str, TrainedModel] = {}
        self._engines: dict[str, InfluenceEngine] = {}

    # -- helpers -----------------------------------------------------------------
    def _stage(self, stage: str) -> Callable[[float, str], None]:
        return lambda frac, msg: self.progress(stage, frac, msg)

    def with_progress(self, progress: StageProgress) -> Pipeline:
        """Same pipeline and memos, another progress sink (one per app run)."""
        self.progress = progress
        return self

    # -- data and attack ---------------------------------------------------------------
    def dataset(self, cfg: DataConfig) -> DatasetSplits:
        key = stable_hash(cfg)
        if key not in self._datasets:
            self.progress("data", 0.0, "loading data")
            self._datasets[key] = load_dataset(cfg)
            self.progress("data", 1.0, f"{len(self._datasets[key].train)} training images")
        return self._datasets[key]

    def attack_config(self, scn: Scenario) -> AttackConfig:
        return scn.attack.resolved(self.dataset(scn.data).train.num_classes)

    def poison_key(self, scn: Scenario) -> str:
        """Key of the poisoned training set (carries the poison stage's code version)."""
        if scn.checkpoint:
            scn = replace(scn, attack=replace(scn.attack, name="none"))
        acfg = self.attack_config(scn)
        train_for_attack = scn.train if acfg.name == "witches_brew" else None
        version = (ATTACK_VERSIONS[acfg.name],) if acfg.name in ATTACK_VERSIONS else ()
        return self.store.key("poison", scn.data, acfg, train_for_attack, *version)

    def poisoned(self, scn: Scenario) -> PoisonedScenario:
        """The poisoned training set (cached compactly: only the changed images are stored)."""
        if scn.checkpoint:
            scn = replace(scn, attack=replace(scn.attack, name="none"))
        splits = self.dataset(scn.data)
        acfg = self.attack_config(scn)
        ATTACKS.get(acfg.name)
        key = self.poison_key(scn)
        if key in self._poisoned:
            return self._poisoned[key]
        packed = self.store.get(key)
        if packed is None:
            fn = ATTACKS.get(acfg.name)
            result = fn(splits, acfg, scn.train, self._stage("attack"))
            packed = _pack(result, splits.train)
            self.store.set(key, packed)
        else:
            self.progress("attack", 1.0, "poisoned set from cache")
        self._poisoned[key] = _unpack(packed, splits.train)
        return self._poisoned[key]

    # -- model ------------------------------------------------------------------------
    def new_model(self, scn: Scenario, seed: int | None = None) -> Classifier:
        splits = self.dataset(scn.data)
        torch.manual_seed(scn.train.seed if seed is None else seed)
        return build_model(scn.train.model, splits.train.image_shape, splits.train.num_classes,
                           splits.mean, splits.std)

    def model_key(self, scn: Scenario) -> str:
        if scn.checkpoint:
            if not os.path.isfile(scn.checkpoint):
                raise DataError(f"checkpoint {scn.checkpoint} does not exist")
            return self.store.key("train", "checkpoint", _file_hash(scn.checkpoint), scn.train.model,
                                  scn.data)
        # The poison key (not just the attack config) so a change to an attack's code
        # or defaults retrains instead of reusing a model trained on other poisons.
        return self.store.key("train", self.poison_key(scn), scn.train)

    def trained(self, scn: Scenario) -> TrainedModel:
        """Train (or load) the model under investigation and evaluate it."""
        key = self.model_key(scn)
        if key in self._models:
            return self._models[key]
        splits = self.dataset(scn.data)
        poisoned = self.poisoned(scn)
        model = self.new_model(scn)
        entry = self.store.get(key)
        cached = entry is not None
        if scn.checkpoint:
            model = load_checkpoint(scn.checkpoint, scn.train.model, splits)
            entry = {"seconds": 0.0}
        elif entry is None:
            stats = train_model(model, poisoned.train, scn.train, augment_flip=splits.augment_flip,
                                progress=self._stage("train"), device=self.device)
            entry = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                     "seconds": stats.seconds}
            self.store.set(key, entry)
        else:
            model.load_state_dict(entry["state_dict"])
            self.progress("train", 1.0, "model from cache")
        model.to(self.device).eval()
        tm = TrainedModel(model, key, clean_accuracy(model, splits.test),
                          poison_success_rate(model, poisoned), float(entry["seconds"]), cached)
        self._models[key] = tm
        return tm

    # -- affected images -------------------------------------------------------------
    def affected_candidates(self, scn: Scenario) -> np.ndarray:
        """Indices into ``psr_set`` of images the model predicts as the attack target."""
        poisoned = self.poisoned(scn)
        if len(poisoned.psr_set) == 0 or poisoned.target_class is None:
            return np.zeros(0, dtype=np.int64)
        model = self.trained(scn).model
        pred = predict(model, poisoned.psr_set.images).numpy()
        return np.flatnonzero(pred == poisoned.target_class)

    def affected_set(self, scn: Scenario, psr_indices: list[int] | np.ndarray) -> ImageSet:
        poisoned = self.poisoned(scn)
        idx = np.asarray(psr_indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(poisoned.psr_set)):
            raise ConfigError(f"affected image index out of range 0..{len(poisoned.psr_set) - 1}")
        return poisoned.psr_set.subset(idx)

    def default_affected(self, scn: Scenario) -> np.ndarray:
        cands = self.affected_candidates(scn)
        if cands.size == 0:
            raise ConfigError(
                "no test image shows the attack (none is predicted as the target class); "
                "pick or upload an affected image"
            )
        return cands[: scn.collapse.max_affected]

    # -- influence collapse ----------------------------------------------------------
    def engine(self, scn: Scenario, model: nn.Module | None = None) -> InfluenceEngine:
        tm = None if model is not None else self.trained(scn)
        model = model if model is not None else tm.model  # type: ignore[union-attr]
        train = self.poisoned(scn).train
        key = stable_hash(model_fingerprint(model), data_fingerprint(train), scn.influence)
        if key not in self._engines:
            self._engines[key] = InfluenceEngine(
                model, train, scn.influence, self.store.directory, progress=self._stage("influence"),
                score_cache=(self.store.get, self.store.set),
            )
        eng = self._engines[key]
        eng.progress = self._stage("influence")
        return eng

    def collapse(self, scn: Scenario, affected: ImageSet, target_class: int | None = None,
                 model: nn.Module | None = None) -> CollapseResult:
        """Score the affected images and their transformed, relabelled copies in one pass."""
        model = model if model is not None else self.trained(scn).model
        if target_class is None:
            target_class = int(predict(model, affected.images[:1])[0])
        labelled = ImageSet(affected.images, torch.full((len(affected),), target_class), affected.classes)
        queries = build_queries(labelled, target_class, scn.collapse)
        eng = self.engine(scn, model)
        t0 = time.perf_counter()
        eng.fit_factors()
        t1 = time.perf_counter()
        scores = eng.scores(queries.queries)
        t2 = time.perf_counter()
        predicted = predict(model, queries.queries.images).numpy()
        return CollapseResult(queries, scores, labelled, target_class, t1 - t0, t2 - t1, predicted)

    # -- detection --------------------------------------------------------------------
    def detect(self, scn: Scenario, affected: ImageSet, target_class: int | None = None,
               model: nn.Module | None = None) -> Detection:
        model = model if model is not None else self.trained(scn).model
        if target_class is None:
            target_class = int(predict(model, affected.images[:1])[0])
        poisoned = self.poisoned(scn)
        labelled = ImageSet(affected.images, torch.full((len(affected),), target_class), affected.classes)
        expected = round(scn.attack.poison_frac * len(poisoned.train)) if scn.attack.name != "none" else None
        ctx = DetectionContext(model, poisoned.train, labelled, target_class, scn.detect, scn.collapse,
                               self.engine(scn, model), expected, self._stage("detect"))
        return DETECTORS.get(scn.detect.method)(ctx)

    # -- unlearning -------------------------------------------------------------------
    def unlearn(self, scn: Scenario, forget: np.ndarray | list[int], method: str | None = None,
                model: nn.Module | None = None, base_key: str | None = None) -> UnlearnOutcome:
        """Unlearn ``forget`` from the model (cached by model, forget set and method)."""
        cfg = scn.unlearn if method is None else replace(scn.unlearn, method=method)
        UNLEARNERS.get(cfg.method)
        splits = self.dataset(scn.data)
        poisoned = self.poisoned(scn)
        tm = self.trained(scn)
        model = model if model is not None else tm.model
        forget = np.unique(np.asarray(forget, dtype=np.int64))
        key = self.store.key("unlearn", base_key or tm.key, forget.tolist(), cfg, scn.train)
        entry = self.store.get(key)
        new = self.new_model(scn)
        if entry is None:
            ctx = UnlearnContext(model, poisoned.train, forget, lambda: self.new_model(scn), scn.train,
                                 splits.augment_flip, cfg, self._stage("unlearn"), self.device)
            result = UNLEARNERS.get(cfg.method)(ctx)
            entry = {"state_dict": {k: v.cpu() for k, v in result.model.state_dict().items()},
                     "seconds": result.seconds, "passes": result.passes, "info": result.info}
            self.store.set(key, entry)
            cached = False
        else:
            self.progress("unlearn", 1.0, "unlearned model from cache")
            cached = True
        new.load_state_dict(entry["state_dict"])
        new.to(self.device).eval()
        return UnlearnOutcome(new, cfg.method, clean_accuracy(new, splits.test),
                              poison_success_rate(new, poisoned), float(entry["seconds"]),
                              float(entry["passes"]), dict(entry["info"]), cached,
                              self.gaussian_check(scn, new))

    @staticmethod
    def still_affected(model: nn.Module, affected: ImageSet, target: int | None) -> int:
        """How many affected images the model still predicts as the attack target."""
        if target is None or len(affected) == 0:
            return 0
        return int((predict(model, affected.images).numpy() == target).sum())

    def oracle(self, scn: Scenario) -> UnlearnOutcome | None:
        """EU without exactly the true poisons (cached): the best any detector could do.

        Its accuracy isolates retraining noise; its PSR is the floor a clean model
        shows anyway (natural victim→target confusions), e.g. 9% on the CIFAR subset.
        """
        poisoned = self.poisoned(scn)
        if len(poisoned.poison_indices) == 0:
            return None
        return self.unlearn(scn, poisoned.poison_indices, method="eu")

    def oracle_accuracy(self, scn: Scenario) -> float | None:
        """Clean accuracy of EU without exactly the true poisons (isolates retraining noise)."""
        out = self.oracle(scn)
        return None if out is None else out.clean_accuracy

    def gaussian_check(self, scn: Scenario, model: nn.Module) -> dict | None:
        """The Gaussian-poisoning statistic on the noisy training images, when there are any."""
        poisoned = self.poisoned(scn)
        if poisoned.noise is None or len(poisoned.poison_indices) == 0:
            return None
        from .attacks.gaussian import gaussian_poisoning_statistic

        splits = self.dataset(scn.data)
        idx = torch.as_tensor(poisoned.poison_indices)
        sigma = float(poisoned.info.get("sigma", poisoned.noise.std()))
        return gaussian_poisoning_statistic(model, splits.train.images[idx], splits.train.labels[idx],
                                            poisoned.noise, sigma)

    # -- the whole path, headless -----------------------------------------------------
    def investigate(self, scn: Scenario, affected_idx: np.ndarray | None = None) -> Investigation:
        """Detect → unlearn, repeated while an affected image still shows the attack (finding 5).

        Each round scores the affected images on the latest unlearned model, adds what
        it flags to the set, and unlearns the union from the model under investigation.
        Ground truth is only used to report precision/recall, never to decide.
        """
        timings = {"factors": 0.0, "scores": 0.0, "detect": 0.0, "unlearn": 0.0}
        tm = self.trained(scn)
        poisoned = self.poisoned(scn)
        truth = poisoned.poison_indices if len(poisoned.poison_indices) else None
        if affected_idx is None:
            affected_idx = self.default_affected(scn)
        affected = self.affected_set(scn, affected_idx)
        target = poisoned.target_class
        flagged = np.zeros(0, dtype=np.int64)
        model = tm.model
        rounds: list[dict] = []
        outcome: UnlearnOutcome | None = None
        uses_influence = scn.detect.method in INFLUENCE_DETECTORS
        for r in range(max(1, scn.max_rounds)):
            t = time.perf_counter()
            eng = None
            if uses_influence:
                eng = self.engine(scn, model)
                eng.fit_factors()
                timings["factors"] += time.perf_counter() - t
            t_det = time.perf_counter()
            detection = self.detect(scn, affected, target, model)
            spent = time.perf_counter() - t_det
            score_time = eng.score_seconds if eng is not None else 0.0
            timings["scores"] += score_time
            timings["detect"] += max(0.0, spent - score_time)
            new_flags = np.setdiff1d(detection.flagged, flagged)
            flagged = np.union1d(flagged, detection.flagged).astype(np.int64)
            if flagged.size == 0:
                break
            precision, recall = precision_recall(flagged, truth)
            t_u = time.perf_counter()
            # Always unlearn the union from the model under investigation; later rounds
            # only use the unlearned model to look for what the first round missed.
            try:
                outcome = self.unlearn(scn, flagged)
            except UnlearningError as err:
                # e.g. the rule flagged a whole class: report the detection, say why nothing was unlearned
                rounds.append({"round": r + 1, "n_flagged": int(flagged.size), "new_flags": int(new_flags.size),
                               "precision": precision, "recall": recall, "unlearn_error": str(err)})
                break
            timings["unlearn"] += time.perf_counter() - t_u
            n_still = self.still_affected(outcome.model, affected, target)
            rounds.append({"round": r + 1, "n_flagged": int(flagged.size), "new_flags": int(new_flags.size),
                           "precision": precision, "recall": recall,
                           "poison_success_rate": outcome.poison_success_rate,
                           "clean_accuracy": outcome.clean_accuracy,
                           "affected_still_target": n_still, "seconds": time.perf_counter() - t})
            if n_still == 0 or (new_flags.size == 0 and r > 0):
                break
            model = outcome.model
        precision, recall = precision_recall(flagged, truth)
        return Investigation(np.asarray(affected_idx), flagged, outcome, rounds, precision, recall, timings)

    def audit_known_poisons(self, scn: Scenario) -> UnlearnOutcome:
        """Gaussian poisoning has no affected image: unlearn the known noisy images and
        report the statistic, which shows whether their trace is gone."""
        poisoned = self.poisoned(scn)
        return self.unlearn(scn, poisoned.poison_indices)

    def run(self, scn: Scenario) -> dict:
        """Everything the CLI reports (SPEC §3)."""
        t0 = time.perf_counter()
        tm = self.trained(scn)
        poisoned = self.poisoned(scn)
        timings = {"train": time.perf_counter() - t0}
        truth = poisoned.poison_indices if len(poisoned.poison_indices) else None
        result: dict = {
            "scenario": {**self._scenario_summary(scn), "config": scn.as_dict()},
            "poisoned": {
                "clean_accuracy": tm.clean_accuracy,
                "poison_success_rate": tm.poison_success_rate,
                "n_train": len(poisoned.train),
                "n_poisons": len(poisoned.poison_indices),
                "attack_info": _jsonable(poisoned.info),
                "gaussian": self.gaussian_check(scn, tm.model),
            },
            "device": str(self.device),
        }
        if poisoned.noise is not None and len(poisoned.psr_set) == 0:
            t = time.perf_counter()
            out = self.audit_known_poisons(scn)
            timings.update({"factors": 0.0, "scores": 0.0, "detect": 0.0, "unlearn": time.perf_counter() - t})
            result.update({"affected_test_index": None, "affected_test_indices": [],
                           "detection": {"method": "known (gaussian audit)",
                                         "flagged": poisoned.poison_indices.tolist(),
                                         "n_flagged": len(poisoned.poison_indices), "precision": 1.0,
                                         "recall": 1.0},
                           "rounds": [], "unlearned": self._unlearned_json(out, tm, None)})
        else:
            inv = self.investigate(scn)
            timings.update(inv.timings)
            result.update({
                "affected_test_index": int(poisoned.psr_source_indices[inv.affected_idx[0]]),
                "affected_test_indices": [int(poisoned.psr_source_indices[i]) for i in inv.affected_idx],
                "detection": {
                    "method": scn.detect.method, "flagged": inv.flagged.tolist(), "n_flagged": int(inv.flagged.size),
                    "flagged_fraction": float(inv.flagged.size / len(poisoned.train)),
                    "precision": inv.precision, "recall": inv.recall,
                },
                "rounds": inv.rounds,
                "unlearned": None,
            })
            if inv.rounds and "unlearn_error" in inv.rounds[-1]:
                result["unlearn_error"] = inv.rounds[-1]["unlearn_error"]
            if inv.outcome is not None:
                t = time.perf_counter()
                oracle = self.oracle(scn) if truth is not None else None
                timings["oracle"] = time.perf_counter() - t
                result["unlearned"] = self._unlearned_json(inv.outcome, tm, oracle)
        result["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        result["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
        return result

    @staticmethod
    def _unlearned_json(out: UnlearnOutcome, tm: TrainedModel, oracle: UnlearnOutcome | None) -> dict:
        return {
            "method": out.method, "clean_accuracy": out.clean_accuracy,
            "poison_success_rate": out.poison_success_rate,
            "oracle_clean_accuracy": None if oracle is None else oracle.clean_accuracy,
            "oracle_poison_success_rate": None if oracle is None else oracle.poison_success_rate,
            "accuracy_change": out.clean_accuracy - tm.clean_accuracy,
            "seconds": out.seconds, "passes": out.passes, "info": _jsonable(out.info),
            "gaussian": out.gaussian,
        }

    def _scenario_summary(self, scn: Scenario) -> dict:
        acfg = self.attack_config(scn)
        epochs = scn.train.epochs_for(len(self.dataset(scn.data).train))
        return {
            "dataset": scn.data.dataset if not scn.data.data_dir else None,
            "data_dir": scn.data.data_dir, "model": scn.train.model, "attack": acfg.name,
            "poison_frac": acfg.poison_frac, "victim_class": acfg.victim_class,
            "target_class": acfg.target_class, "epochs": epochs, "seed": scn.train.seed,
            "detector": scn.detect.method, "unlearn": scn.unlearn.method, "checkpoint": scn.checkpoint,
        }


def _jsonable(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)
        elif isinstance(v, np.generic):
            out[k] = v.item()
    return out


def _pack(result: PoisonedScenario, clean: ImageSet) -> dict:
    """Store only what the attack changed: large training sets are not duplicated on disk."""
    same_label = result.train.labels == clean.labels
    same_image = (result.train.images == clean.images).flatten(1).all(dim=1)
    changed = torch.nonzero(~(same_label & same_image)).flatten()
    return {
        "changed": changed, "images": result.train.images[changed].clone(),
        "labels": result.train.labels[changed].clone(), "n": len(result.train),
        "poison_indices": result.poison_indices, "psr_set": result.psr_set,
        "psr_source_indices": result.psr_source_indices, "target_class": result.target_class,
        "victim_class": result.victim_class, "info": result.info, "noise": result.noise,
        "trigger_fn": result.trigger_fn,
    }


def _unpack(packed: dict, clean: ImageSet) -> PoisonedScenario:
    train = clean.clone() if len(packed["changed"]) else clean
    train.images[packed["changed"]] = packed["images"]
    train.labels[packed["changed"]] = packed["labels"]
    return PoisonedScenario(train, np.asarray(packed["poison_indices"]), packed["psr_set"],
                            np.asarray(packed["psr_source_indices"]), packed["target_class"],
                            packed["victim_class"], packed["info"], packed["noise"], packed["trigger_fn"])
