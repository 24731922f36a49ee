"""The investigation's stages, each cached: data → attack → model → affected → collapse → detect → unlearn.

This is the only module that knows the order. Each stage is a pure function of the configs it
depends on and is stored under ``store.key(stage, ...)``: the stage name (its code version lives in
the store's ``STAGE_VERSIONS``), the key of the artefact it was made from and the registry entry's
``version``. Keys are computed once and handed on with the artefacts, so weights and images are
never re-hashed. The executor (``scaleout``) says where the work runs and never enters a key.
Stage names used in the store: ``poison``, ``train`` and ``unlearn``; data and the kronfluence
engine get plain content keys (``data:…``, ``influence-…``) from which it derives its factor and score keys.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..attacks import ATTACKS, NO_ATTACK
from ..attacks.base import PoisonedScenario
from ..checkpoints import file_hash, load_checkpoint
from ..collapse import as_target, build_queries
from ..collapse.heldout import HeldOutRetrain
from ..collapse.label_consistency import LabelCheck
from ..config import AttackConfig, DataConfig, Scenario, stable_hash
from ..data import DATASETS, load_dataset
from ..data.base import DatasetSplits, ImageSet
from ..detectors import DETECTORS
from ..detectors.base import Detection, DetectionContext
from ..errors import CheckpointError, ConfigError
from ..influence import InfluenceEngine, data_fingerprint
from ..metrics import clean_accuracy, poison_success_rate
from ..misclassified import affected_by_index, misclassified
from ..models import Classifier, architecture_key, build_like, build_model, require_influence_trackable
from ..scaleout.executor import LOCAL, Executor
from ..store import Store, finite_state_dict
from ..training import batching_key, cached_model_note, pick_device, predict, train_model, training_environment
from ..unlearning import UNLEARNERS, UnlearnContext
from .artefacts import CollapseResult, KeyedModel, TrainedModel, UnlearnOutcome, pack, unpack
from .memo import LRU

StageProgress = Callable[[str, float, str], None]
"""Progress for a whole pipeline: (stage name, fraction of that stage done, message)."""

MEMO_SIZE = 3
"""Artefacts of each kind kept in memory (the disk store keeps them all)."""
ORACLE_UNLEARNER = "eu"
"""The oracle retrains without exactly the true poisons: exact unlearning by definition."""


def quiet(stage: str, frac: float, msg: str) -> None:
    return None


def _data_key(*parts: object) -> str:
    """Data is never stored (datasets cache themselves), so its key is a plain hash, not a store key."""
    return f"data:{stable_hash(*parts)}"


class Pipeline:
    """Runs and caches the stages. ``with_progress`` gives a view with another progress sink
    that shares the store and the (bounded) memos, so concurrent callers never swap sinks."""

    def __init__(self, store: Store | None = None, progress: StageProgress = quiet, memo_size: int = MEMO_SIZE,
                 executor: Executor = LOCAL) -> None:
        self.store, self.progress, self.executor, self.device = store or Store(), progress, executor, pick_device()
        self._memo = {"data": LRU[DatasetSplits](min(2, memo_size)), "data_key": LRU[str](8),
                      "poison": LRU[PoisonedScenario](memo_size), "model": LRU[TrainedModel](memo_size),
                      "engine": LRU[InfluenceEngine](min(2, memo_size)), "file": LRU[str](8),
                      "label_check": LRU[LabelCheck](min(2, memo_size))}

    def with_progress(self, progress: StageProgress) -> Pipeline:
        view = copy.copy(self)
        view.progress = progress
        return view

    def _stage(self, stage: str) -> Callable[[float, str], None]:
        return lambda frac, msg: self.progress(stage, frac, msg)

    # -- data and attack ---------------------------------------------------------------
    def dataset(self, cfg: DataConfig) -> DatasetSplits:
        def load() -> DatasetSplits:
            self.progress("data", 0.0, "loading data")
            splits = load_dataset(cfg)
            self.progress("data", 1.0, f"{len(splits.train)} training images")
            return splits

        return self._memo["data"].get_or_make(_data_key(cfg), load)

    def data_key(self, cfg: DataConfig) -> str:
        """A registered dataset is known by its config; an ImageFolder by its contents, hashed once."""
        if not cfg.data_dir:
            return _data_key(cfg, DATASETS.version(cfg.dataset))

        def fingerprint() -> str:
            splits = self.dataset(cfg)
            return _data_key(cfg, data_fingerprint(splits.train), data_fingerprint(splits.test))

        return self._memo["data_key"].get_or_make(_data_key(cfg), fingerprint)

    def attack_config(self, scn: Scenario) -> AttackConfig:
        """The scenario's attack with default classes filled in (a checkpoint has no attack)."""
        acfg = replace(scn.attack, attack=NO_ATTACK) if scn.checkpoint else scn.attack
        return acfg.resolved(self.dataset(scn.data).train.num_classes)

    def poison_key(self, scn: Scenario) -> str:
        acfg = self.attack_config(scn)
        recipe = scn.train if ATTACKS.trait(acfg.attack, "needs_train_config") else None
        # an attack that trains (a surrogate on the clean set) changes where its training's batching did
        batching = batching_key(len(self.dataset(scn.data).train), scn.train.batch_size) if recipe else ()
        return self.store.key("poison", self.data_key(scn.data), acfg, recipe, ATTACKS.version(acfg.attack),
                              *batching)

    def poisoned(self, scn: Scenario) -> PoisonedScenario:
        """The poisoned training set (stored compactly: only the changed images)."""
        acfg = self.attack_config(scn)
        ATTACKS.parse_params(acfg.attack, acfg.params)  # refuse bad parameters before any work
        key = self.poison_key(scn)

        def make() -> PoisonedScenario:
            splits = self.dataset(scn.data)
            packed, cached = self.store.cached(key, lambda: pack(
                ATTACKS.get(acfg.attack)(splits, acfg, scn.train, self._stage("attack")), splits.train))
            if cached:
                self.progress("attack", 1.0, "poisoned set from cache")
            return unpack(packed, splits.train, key)

        return self._memo["poison"].get_or_make(key, make)

    # -- model ------------------------------------------------------------------------
    def new_model(self, scn: Scenario, seed: int | None = None) -> Classifier:
        """A freshly initialised model of the scenario's architecture (what training and EU start from).

        For a checkpoint: the loaded model's own architecture and normalisation, so EU
        retrains the analyst's architecture (with this tool's recipe, not theirs).
        """
        splits = self.dataset(scn.data)
        loaded = self.trained(scn).model if scn.checkpoint else None
        torch.manual_seed(scn.train.seed if seed is None else seed)
        if loaded is not None:
            return build_like(loaded)
        return build_model(scn.train.model_spec(), splits.train.image_shape, splits.train.num_classes,
                           splits.mean, splits.std)

    def model_key(self, scn: Scenario) -> str:
        """The key of the model under investigation; ``architecture_key`` hashes the code of an
        architecture file too, so an edited file is never served a model of the old one."""
        arch = architecture_key(scn.train.model_spec())
        if scn.checkpoint:
            if not os.path.isfile(scn.checkpoint):
                raise CheckpointError(f"checkpoint {scn.checkpoint} does not exist")
            st = os.stat(scn.checkpoint)  # hashed once per file version, not on every call
            digest = self._memo["file"].get_or_make(f"{scn.checkpoint}:{st.st_mtime_ns}:{st.st_size}",
                                                    lambda: file_hash(scn.checkpoint))
            return self.store.key("train", "checkpoint", digest, arch, self.data_key(scn.data))
        # The poison key, not just the attack config: an attack's new code or defaults retrains, never reuses.
        batching = batching_key(len(self.poisoned(scn).train), scn.train.batch_size)
        return self.store.key("train", self.poison_key(scn), scn.train, arch, *batching, *self.executor.world_key())

    def trained(self, scn: Scenario) -> TrainedModel:
        """Train (or load) the model under investigation and evaluate it."""
        key = self.model_key(scn)
        return self._memo["model"].get_or_make(key, lambda: self._train(scn, key))

    def _train(self, scn: Scenario, key: str) -> TrainedModel:
        splits = self.dataset(scn.data)
        poisoned = self.poisoned(scn)
        if scn.checkpoint:
            model = load_checkpoint(scn.checkpoint, scn.train.model_spec(), splits)
            entry, cached = {"seconds": 0.0}, False
        else:
            model = self.new_model(scn)

            def fit() -> dict:
                with self.executor.training():
                    stats = train_model(model, poisoned.train, scn.train, augment_flip=splits.augment_flip,
                                        progress=self._stage("train"), device=self.device)
                return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "seconds": stats.seconds,
                        "trained_on": training_environment(self.device, self.executor.world_size())}

            entry, cached = self.store.cached(key, fit, check=finite_state_dict(model.state_dict()))
            if cached:
                model.load_state_dict(entry["state_dict"])
                note = cached_model_note(entry.get("trained_on"), self.device, self.executor.world_size())
                self.progress("train", 1.0, note)
        model.to(self.device).eval()
        return TrainedModel(model, key, clean_accuracy(model, splits.test), poison_success_rate(model, poisoned),
                            float(entry["seconds"]), cached, entry.get("trained_on"))

    def predict(self, scn: Scenario, images: ImageSet | torch.Tensor | Sequence[np.ndarray],
                model: KeyedModel | None = None) -> np.ndarray:
        """Predicted classes of images (an ImageSet, a ``[N, C, H, W]`` tensor or ``[C, H, W]`` arrays)."""
        if isinstance(images, ImageSet):
            images = images.images
        elif not isinstance(images, torch.Tensor):
            if len(images) == 0:
                return np.zeros(0, dtype=np.int64)
            images = torch.stack([torch.as_tensor(np.asarray(x, dtype=np.float32)) for x in images])
        return predict((model or self.trained(scn)).model, images).numpy()

    # -- affected images -------------------------------------------------------------
    def affected_candidates(self, scn: Scenario) -> np.ndarray:
        """Indices into ``psr_set`` of images the model predicts as the attack target."""
        poisoned = self.poisoned(scn)
        if len(poisoned.psr_set) == 0 or poisoned.target_class is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.predict(scn, poisoned.psr_set) == poisoned.target_class)

    def affected_set(self, scn: Scenario, psr_indices: Sequence[int] | np.ndarray) -> ImageSet:
        poisoned = self.poisoned(scn)
        idx = np.asarray(psr_indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(poisoned.psr_set)):
            raise ConfigError(f"affected image index out of range 0..{len(poisoned.psr_set) - 1}")
        return poisoned.psr_set.subset(idx)

    def default_affected(self, scn: Scenario) -> np.ndarray:
        cands = self.affected_candidates(scn)
        if cands.size == 0:
            if self.attack_config(scn).attack == NO_ATTACK:  # the analyst says which images are wrong
                wrong = misclassified(self.trained(scn).model, self.dataset(scn.data).test).indices[:5]
                some = f" (the model gets test images {', '.join(map(str, wrong))} wrong)" if len(wrong) else ""
                raise ConfigError("with no attack there is no triggered test image: choose the test images to "
                                  f"explain (affected test index on the command line, the gallery in the app){some}")
            raise ConfigError("no test image shows the attack (none is predicted as the target class); "
                              "pick or upload an affected image")
        return cands[: scn.collapse.max_affected]

    def affected_test_images(self, scn: Scenario, model: KeyedModel | None = None) -> tuple[ImageSet, int]:
        """The scenario's ``affected_test_index`` images labelled with the model's prediction, and that class.

        The investigation explains one prediction (the collapse copies are relabelled to it),
        so images the model predicts as different classes are refused in one sentence.
        """
        keyed = model or self.trained(scn)
        splits = self.dataset(scn.data)
        chosen = affected_by_index(keyed.model, splits.test, list(scn.affected_test_index))
        predicted = chosen.labels.tolist()
        if len(set(predicted)) > 1:
            said = ", ".join(f"{i} as {splits.classes[c]!r}" for i, c in zip(scn.affected_test_index, predicted,
                                                                              strict=True))
            raise ConfigError(f"the affected test images are predicted as different classes ({said}); one "
                              "investigation explains one prediction, so give images predicted as the same class")
        return chosen, int(predicted[0])

    def affected_images(self, scn: Scenario, picks: Sequence[int] = (), uploads: Sequence[np.ndarray] = (),
                        from_test_set: bool = False, target_class: int | None = None,
                        limit: int | None = None) -> ImageSet | None:
        """The analyst's affected images, labelled as the target: gallery picks (indices into the
        attack's triggered set, or into the test set with ``from_test_set``), then uploaded
        ``[C, H, W]`` arrays; at most ``limit``. None when nothing is picked."""
        parts = []
        if len(picks):
            source = self.dataset(scn.data).test if from_test_set else self.poisoned(scn).psr_set
            parts.append(source.subset(list(picks)).images)
        parts.extend(torch.as_tensor(np.asarray(u, dtype=np.float32)).unsqueeze(0) for u in uploads)
        if not parts:
            return None
        images = torch.cat(parts)[:limit]
        target = target_class if target_class is not None else int(self.predict(scn, images[:1])[0])
        return as_target(ImageSet(images, torch.zeros(len(images), dtype=torch.long),
                                  self.dataset(scn.data).classes), target)

    # -- influence collapse ----------------------------------------------------------
    def engine(self, scn: Scenario, model: KeyedModel | None = None) -> InfluenceEngine:
        """kronfluence for a model and the poisoned set, keyed by the keys that made them (its keys' root)."""
        keyed = model or self.trained(scn)
        require_influence_trackable(keyed.model)  # a model EK-FAC cannot see: one sentence, not kronfluence's
        poisoned = self.poisoned(scn)
        content = f"influence-{stable_hash(keyed.key, poisoned.key)}"
        eng = self._memo["engine"].get_or_make(stable_hash(content, scn.influence), lambda: InfluenceEngine(
            keyed.model, poisoned.train, scn.influence, self.store.directory,
            score_cache=(self.store.get, self.store.set), key=content))
        eng.progress, eng.runner = self._stage("influence"), self.executor.runner  # this call's sink and engine
        return eng

    def _target(self, scn: Scenario, affected: ImageSet, target_class: int | None, keyed: KeyedModel) -> int:
        return int(target_class) if target_class is not None else int(self.predict(scn, affected.images[:1], keyed)[0])

    def collapse(self, scn: Scenario, affected: ImageSet, target_class: int | None = None,
                 model: KeyedModel | None = None) -> CollapseResult:
        """Score the affected images and their transformed, relabelled copies in one pass."""
        keyed = model or self.trained(scn)
        target = self._target(scn, affected, target_class, keyed)
        labelled = as_target(affected, target)
        queries = build_queries(labelled, target, scn.collapse)
        eng = self.engine(scn, keyed)
        t0 = time.perf_counter()
        eng.fit_factors()
        t1 = time.perf_counter()
        scores = eng.scores(queries.queries)
        t2 = time.perf_counter()
        predicted = self.predict(scn, queries.queries, keyed)
        return CollapseResult(scores, queries, predicted, target,
                              self.label_check(scn, keyed), self.heldout(scn, keyed),
                              affected=labelled, factor_seconds=t1 - t0, score_seconds=t2 - t1, key=eng.score_key)

    def label_check(self, scn: Scenario, model: KeyedModel | None = None) -> LabelCheck:
        """How the model labels transformed training images (``delta_label``), memoised per model."""
        keyed, poisoned, seed = model or self.trained(scn), self.poisoned(scn), scn.collapse.seed
        return self._memo["label_check"].get_or_make(stable_hash(keyed.key, poisoned.key, seed),
                                                     lambda: LabelCheck(keyed.model, poisoned.train, seed=seed))

    def heldout(self, scn: Scenario, model: KeyedModel | None = None) -> HeldOutRetrain:
        """``delta_heldout``'s retrains: EU's, so the investigation's EU of a set a round excluded is cached."""
        keyed = model or self.trained(scn)
        return HeldOutRetrain(lambda exclude: self.unlearn(scn, exclude, method=ORACLE_UNLEARNER, base=keyed).model,
                              self.poisoned(scn).train, self.dataset(scn.data).test)

    # -- detection --------------------------------------------------------------------
    def detect(self, scn: Scenario, affected: ImageSet, target_class: int | None = None,
               model: KeyedModel | None = None) -> Detection:
        name = scn.detect.detector
        params = DETECTORS.parse_params(name, scn.detect.params)
        keyed = model or self.trained(scn)
        target = self._target(scn, affected, target_class, keyed)
        poisoned = self.poisoned(scn)
        acfg = self.attack_config(scn)
        expected = round(acfg.poison_frac * len(poisoned.train)) if acfg.attack != NO_ATTACK else None
        engine = self.engine(scn, keyed) if DETECTORS.trait(name, "needs_influence") else None
        ctx = DetectionContext(keyed.model, poisoned.train, as_target(affected, target), target, scn.detect,
                               scn.collapse, engine, expected, self._stage("detect"), params,
                               heldout=self.heldout(scn, keyed))
        return DETECTORS.get(name)(ctx)

    # -- unlearning -------------------------------------------------------------------
    def unlearn_key(self, scn: Scenario, forget: np.ndarray | Sequence[int], method: str | None = None,
                    base_key: str | None = None) -> str:
        """Cache key of unlearning ``forget`` from ``base_key`` (default: the scenario's model), batched as the rest."""
        cfg = scn.unlearn_config(method)
        forget = np.unique(np.asarray(forget, dtype=np.int64))
        batching = batching_key(len(self.poisoned(scn).train) - len(forget), scn.train.batch_size)
        return self.store.key("unlearn", base_key or self.model_key(scn), forget.tolist(), cfg, scn.train,
                              UNLEARNERS.version(cfg.method), *batching, *self.executor.world_key(cfg.method))

    def unlearn(self, scn: Scenario, forget: np.ndarray | Sequence[int], method: str | None = None,
                base: KeyedModel | None = None) -> UnlearnOutcome:
        """Unlearn ``forget`` from the model under investigation (or ``base``), cached by its key."""
        cfg = scn.unlearn_config(method)
        params = UNLEARNERS.parse_params(cfg.method, cfg.params)  # refuse bad parameters before any work
        splits = self.dataset(scn.data)
        poisoned = self.poisoned(scn)
        base = base or self.trained(scn)
        forget = np.unique(np.asarray(forget, dtype=np.int64))
        key = self.unlearn_key(scn, forget, method, base.key)
        new = self.new_model(scn)

        def run() -> dict:
            ctx = UnlearnContext(base.model, poisoned.train, forget, lambda: self.new_model(scn), scn.train,
                                 splits.augment_flip, cfg, self._stage("unlearn"), self.device, params=params)
            with self.executor.training(cfg.method):
                result = UNLEARNERS.get(cfg.method)(ctx)
            return {"state_dict": {k: v.cpu() for k, v in result.model.state_dict().items()},
                    "seconds": result.seconds, "passes": result.passes, "info": result.info}

        entry, cached = self.store.cached(key, run, check=finite_state_dict(new.state_dict()))
        if cached:
            self.progress("unlearn", 1.0, "unlearned model from cache")
        new.load_state_dict(entry["state_dict"])
        new.to(self.device).eval()
        return UnlearnOutcome(new, key, cfg.method, clean_accuracy(new, splits.test),
                              poison_success_rate(new, poisoned), float(entry["seconds"]), float(entry["passes"]),
                              dict(entry["info"]), cached, self.gaussian_check(scn, new))

    def oracle(self, scn: Scenario) -> UnlearnOutcome | None:
        """EU without exactly the true poisons (cached): the best any detector could do.

        Its accuracy isolates retraining noise; its PSR is the floor a clean model
        shows anyway (natural victim→target confusions), e.g. 9% on the CIFAR subset.
        """
        poisoned = self.poisoned(scn)
        if len(poisoned.poison_indices) == 0:
            return None
        return self.unlearn(scn, poisoned.poison_indices, method=ORACLE_UNLEARNER)

    def gaussian_check(self, scn: Scenario, model: torch.nn.Module) -> dict | None:
        """The Gaussian-poisoning statistic on the noisy training images, when there are any."""
        from ..attacks.gaussian import gaussian_check

        return gaussian_check(model, self.poisoned(scn), self.dataset(scn.data).train)
