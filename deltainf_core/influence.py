"""EK-FAC influence scores with kronfluence: factors once per model, one score pass.

Why the details matter (SPEC §4-5):
- the training loss is computed in float64: in float32 the ``p − 1`` gradient of a
  poison the model fits almost perfectly rounds to 0 and the poison vanishes;
- kronfluence reuses results *by name* and ignores pixel contents, so every factor
  and score name carries a hash of model + data + arguments;
- ``prepare_model`` rewrites the model in place, so it always gets a copy;
- factors are fitted in partitions of ``CHUNK`` images and scores computed in chunks
  of ``CHUNK`` training images: the units a killed run resumes from, and what moves
  the progress bar (kronfluence has no callback; the dataset reports each batch).
- every file kronfluence leaves is checksummed when it is complete; a file without
  a matching checksum is never used (deleted and recomputed), and one process at a
  time fits a factor set or scores a chunk (file locks), so runs can share a cache.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import logging
import math
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from kronfluence.analyzer import Analyzer, prepare_model
from kronfluence.arguments import ScoreArguments
from kronfluence.task import Task
from kronfluence.utils.dataset import DataLoaderKwargs
from torch import nn

from .config import InfluenceConfig, config_dict, stable_hash
from .data.base import ImageSet
from .errors import CacheError, InfluenceError
from .integrity import StepManifest, finite_array, verify_folder
from .memory import release_freed_memory, trimming
from .scaleout.plan import LAMBDA_SEED, FactorPlan, UnitRunner, split_step
from .store import STAGE_VERSIONS, hold, key_lock
from .training import Meter, Progress, no_progress, pick_device

# kronfluence 1.0.1 calls a deprecated CUDA GradScaler constructor on every pass.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"kronfluence\.")

log = logging.getLogger("deltainf")

TASK_VERSION = "task-v1-float64"
"""``ClassificationTask``'s loss and measurement: part of every factor and score name."""

CHUNK = 8192
"""Images per factor-fitting partition and per score chunk (resumable units, progress)."""
TRAIN_CHUNK = CHUNK

SCORE_ONLY_FIELDS = ("damping", "query_batch_size", "query_memory_mb", "query_gradient_rank")
"""InfluenceConfig fields that change scores but not factors (every other field keys the factors)."""

LAMBDA_COST = 3.0
"""Progress weight of one image in the eigenvalue-correction pass relative to the covariance pass."""

AMP_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ScoreCache = tuple[Callable[[str], object], Callable[[str, object], None]]


class ClassificationTask(Task):
    """Summed float64 cross-entropy for training; −margin of the query's label as measurement."""

    def compute_train_loss(self, batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module,
                           sample: bool = False) -> torch.Tensor:
        x, y = batch
        logits = model(x).double()
        if sample:
            with torch.no_grad():
                y = torch.multinomial(torch.softmax(logits.detach(), dim=-1), 1).flatten()
        return F.cross_entropy(logits, y, reduction="sum")

    def compute_measurement(self, batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> torch.Tensor:
        x, y = batch
        logits = model(x).double()
        rows = torch.arange(len(y), device=logits.device)
        correct = logits[rows, y]
        others = logits.clone()
        others[rows, y] = -torch.inf
        margin = correct - others.logsumexp(dim=-1)
        return -margin.sum()


def model_fingerprint(model: nn.Module) -> str:
    """Hash of a model's weights and buffers (names included)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(data: ImageSet) -> str:
    """Hash of an image set's stored pixels (uint8 or float) and labels."""
    h = hashlib.sha256()
    h.update(str(data.pixels.dtype).encode())
    h.update(data.pixels.contiguous().numpy().data)  # the buffer itself: ``tobytes`` would copy the whole set
    h.update(data.labels.contiguous().numpy().data)
    return h.hexdigest()[:16]


class InfluenceEngine:
    """kronfluence for one (model, training set): fit factors once, then score query sets.

    key: the content key of (model, training set) when the caller already has one (the
        keys of the stages that made them); otherwise both are hashed here.
    score_cache: a (get, set) pair (e.g. ``Store.get``/``Store.set``) that memoises score
        chunks, so the app's second visit is instant and a killed run resumes at its chunk.
    runner: runs the factor partitions and score chunks as units elsewhere (``scaleout``, the ray
        engine); None: in this process, one after the other (the local engine, the reference).
    """

    def __init__(self, model: nn.Module, train: ImageSet, cfg: InfluenceConfig, workdir: str,
                 progress: Progress = no_progress, score_cache: ScoreCache | None = None,
                 key: str | None = None, runner: UnitRunner | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.train = train
        self.device = pick_device()
        self.progress = progress
        self.task = ClassificationTask()
        base = copy.deepcopy(model).float().eval()
        content = key if key is not None else stable_hash(model_fingerprint(base), data_fingerprint(train))
        cfg_dict = config_dict(cfg)
        factor_cfg = {k: v for k, v in cfg_dict.items() if k not in SCORE_ONLY_FIELDS}
        self.key = stable_hash(content, factor_cfg, TASK_VERSION, STAGE_VERSIONS["factors"])
        self.score_key = stable_hash(self.key, cfg_dict, STAGE_VERSIONS["scores"])
        self.root = workdir
        self.workdir = os.path.join(workdir, "kronfluence")
        self.score_cache = score_cache
        self.runner = runner
        self.model, self.content = model, content  # the caller's model, unprepared: what another process rebuilds
        self._shapes = [_gradient_shape(m) for m in base.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        self._prepared = prepare_model(base.to(self.device), self.task)
        self._analyzer: Analyzer | None = None
        self._factors_ok = False
        self.factor_seconds = 0.0
        self.score_seconds = 0.0
        self.passes = 0
        """Passes over the training set that the last ``scores`` call made (0: all cached)."""
        self.meter: Meter | None = None
        """The last pass's progress meter (``meter.times``: when the bar moved)."""
        self.progress_every = 0.5
        """Seconds between progress reports during fitting and scoring."""
        self._reported: set[str] = set()

    @property
    def factors_name(self) -> str:
        return f"{self.cfg.strategy}_{self.key}"

    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            logging.getLogger("kronfluence").setLevel(logging.WARNING)
            self._analyzer = Analyzer(
                analysis_name=f"a_{self.key}", model=self._prepared, task=self.task,
                cpu=self.device.type == "cpu", disable_tqdm=True, output_dir=self.workdir,
                disable_model_save=True,
            )
            self._analyzer.set_dataloader_kwargs(DataLoaderKwargs(pin_memory=self.device.type == "cuda"))
        return self._analyzer

    def _lock(self, name: str, what: str) -> contextlib.AbstractContextManager[None]:
        try:
            lock = key_lock(self.root, name)
        except OSError as err:
            raise CacheError(f"the cache at {self.root} cannot be written ({err.strerror}) and does not "
                             f"hold the {what}; pass --cache-dir a writable folder") from None
        return hold(lock, what)

    # -- factors -----------------------------------------------------------------------
    def factor_dir(self) -> str:
        return os.path.join(self.workdir, f"a_{self.key}", f"factors_{self.factors_name}")

    def factors_ready(self) -> bool:
        """True when a complete factor set exists and every file matches its checksum."""
        if not self._factors_ok:
            self._factors_ok = self._factor_problem() is None
        return self._factors_ok

    def _factor_problem(self) -> str | None:
        if not os.path.exists(os.path.join(self.factor_dir(), "DONE")):
            return "absent"
        return verify_folder(self.factor_dir())

    def fit_factors(self) -> None:
        """Fit EK-FAC factors unless a complete, verified set exists; resumes at the partition reached."""
        if self.factors_ready():
            return
        with self._lock(f"factors:{self.factors_name}", f"influence factors {self.factors_name}"):
            problem = self._factor_problem()  # another run may have fitted (or damaged) them meanwhile
            if problem is None:
                self._factors_ok = True
                return
            if problem != "absent":
                log.warning("cached influence factors %s were corrupt (%s); refitting", self.factors_name, problem)
                shutil.rmtree(self.factor_dir(), ignore_errors=True)
            t0 = time.perf_counter()
            try:
                with _frozen_gc():
                    self._fit() if self.runner is None else self.runner.fit_factors(self)
            except (RuntimeError, ValueError) as err:
                raise InfluenceError(f"fitting influence factors failed: {err}") from err
            self.factor_seconds = time.perf_counter() - t0
            self._factors_ok = True
            self.progress(1.0, f"factors ready ({self.factor_seconds:.1f}s)")

    def factor_plan(self, chunk: int | None = None) -> FactorPlan:
        """How the fit splits into its cached units (the same for every engine; a worker is told ``chunk``)."""
        return FactorPlan.of(self.cfg, len(self.train), chunk or CHUNK, AMP_TORCH_DTYPES.get(self.cfg.amp_dtype or ""))

    def fit_unit(self, plan: FactorPlan, step: str, data: torch.utils.data.Dataset) -> None:
        """The one kronfluence call that computes ``step`` (``covariance3``, ``eigen``, ``lambda0``) into this
        engine's factor folder: the local loop and a ray worker both run it, so their files are equal."""
        common = {"factors_name": self.factors_name, "factor_args": plan.args, "overwrite_output_dir": False}
        if step == "eigen":
            self.analyzer().perform_eigendecomposition(**common)
            return
        kind, p = split_step(step)
        an = self.analyzer()
        fit, parts = ((an.fit_covariance_matrices, plan.cov_parts) if kind == "covariance"
                      else (an.fit_lambda_matrices, plan.lam_parts))
        with _seeded(self.device, p if kind == "covariance" else LAMBDA_SEED + p):
            fit(dataset=data, per_device_batch_size=plan.batch, target_data_partitions=[p] if parts > 1 else None,
                **common)

    def _fit(self) -> None:
        plan = self.factor_plan()
        d = self.factor_dir()
        os.makedirs(d, exist_ok=True)
        parts = StepManifest(d)
        meter = self.meter = Meter(self.progress, plan.cov_n + LAMBDA_COST * plan.lam_n,
                                   f"fitting {self.cfg.strategy} factors on {len(self.train)} images:",
                                   self.progress_every)
        data = self.train.dataset(plan.order, on_batch=trimming(meter.add))
        for step in plan.steps():
            meter.weight = LAMBDA_COST if step.startswith("lambda") else 1.0
            if parts.has(step):
                meter.skip(plan.images(step))
                continue
            self.fit_unit(plan, step, data)
            parts.record(step)
        parts.finish()
        release_freed_memory()

    # -- scores ------------------------------------------------------------------------
    def queries_per_pass(self, n_queries: int) -> int:
        """How many queries' preconditioned gradients fit ``query_memory_mb`` (one pass scores them all)."""
        rank = self.cfg.query_gradient_rank
        per_query = 4 * sum(i * o if rank is None or rank >= min(i, o) else rank * (i + o) for i, o in self._shapes)
        return max(1, min(n_queries, self.cfg.query_memory_mb * 2**20 // max(per_query, 1)))

    def scores(self, queries: ImageSet) -> np.ndarray:
        """Pairwise scores ``[n_query, n_train]`` float32 of every query against every training image."""
        if len(queries) == 0:
            raise InfluenceError("no queries to score")
        if queries.image_shape != self.train.image_shape:
            raise InfluenceError(
                f"query images are {queries.image_shape} but the model was trained on {self.train.image_shape}"
            )
        qkey = stable_hash(self.score_key, data_fingerprint(queries))
        n = len(self.train)
        chunks = [(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]
        keys = [f"scores:v{STAGE_VERSIONS['scores']}:{qkey}:{a}-{b}" for a, b in chunks]
        parts = [self._cached_chunk(k, (len(queries), b - a)) for k, (a, b) in zip(keys, chunks, strict=True)]
        t0 = time.perf_counter()
        self.passes = 0
        todo = [i for i, p in enumerate(parts) if p is None]
        if todo and self.runner is not None:  # units elsewhere, each committing its chunk to the cache
            self.fit_factors()
            self.passes = len(todo) * math.ceil(len(queries) / self.queries_per_pass(len(queries)))
            self.runner.score_chunks(self, queries, [(keys[i], *chunks[i]) for i in todo])
            parts = [p if p is not None else self._cached_chunk(k, (len(queries), b - a))
                     for p, k, (a, b) in zip(parts, keys, chunks, strict=True)]
            if any(p is None for p in parts):
                raise InfluenceError("a score unit finished without its chunk in the cache")
        elif todo:
            self.fit_factors()
            meter = self.meter = Meter(self.progress, sum(chunks[i][1] - chunks[i][0] for i in todo),
                                       f"scoring {len(queries)} queries against {n} images:", self.progress_every)
            for i in todo:
                a, b = chunks[i]
                with self._lock(keys[i], f"scores {keys[i]}"):
                    parts[i] = self._cached_chunk(keys[i], (len(queries), b - a))  # another run's?
                    if parts[i] is None:
                        parts[i] = self._score_chunk(queries, keys[i], a, b, meter)
                        if self.score_cache:
                            self.score_cache[1](keys[i], parts[i])
                    else:
                        meter.skip(b - a)
        self.score_seconds = time.perf_counter() - t0
        self.progress(1.0, f"scored {len(queries)} queries ({self.score_seconds:.1f}s)")
        return np.concatenate(parts, axis=1, dtype=np.float32)  # one copy, not two

    def _cached_chunk(self, key: str, shape: tuple[int, int]) -> np.ndarray | None:
        value = self.score_cache[0](key) if self.score_cache else None
        if value is None:
            return None
        reason = finite_array(shape)(value)
        if reason is not None:
            if key not in self._reported:
                self._reported.add(key)
                log.warning("cached scores %s were corrupt (%s); recomputing", key, reason)
            return None
        return np.asarray(value)

    def _score_chunk(self, queries: ImageSet, key: str, start: int, stop: int, meter: Meter) -> np.ndarray:
        self.passes += math.ceil(len(queries) / self.queries_per_pass(len(queries)))
        return self.score_chunk(queries, key, start, stop, meter.add)

    def score_chunk(self, queries: ImageSet, key: str, start: int, stop: int,
                    on_batch: Callable[[int], None]) -> np.ndarray:
        """Scores of every query against training images ``start:stop`` (the local loop and a ray worker)."""
        tag = stable_hash(key, length=12)
        analysis = os.path.join(self.workdir, f"a_{self.key}")
        for stale in _glob_dirs(analysis, f"scores_s_{tag}_"):  # left by a killed run (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        name = f"s_{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        per_pass = self.queries_per_pass(len(queries))
        qbs = min(self.cfg.query_batch_size, per_pass)
        args = ScoreArguments(
            damping_factor=self.cfg.damping, amp_dtype=AMP_TORCH_DTYPES.get(self.cfg.amp_dtype or ""),
            query_gradient_accumulation_steps=math.ceil(per_pass / qbs),
            query_gradient_low_rank=self.cfg.query_gradient_rank,
        )
        try:
            analyzer = self.analyzer()
            with _frozen_gc():
                analyzer.compute_pairwise_scores(
                    scores_name=name, factors_name=self.factors_name,
                    query_dataset=queries.dataset(),
                    train_dataset=self.train.dataset(on_batch=trimming(on_batch)),
                    train_indices=list(range(start, stop)),
                    per_device_query_batch_size=qbs,
                    per_device_train_batch_size=min(self.cfg.train_batch_size, stop - start),
                    score_args=args, overwrite_output_dir=True,
                )
            out = analyzer.load_pairwise_scores(name)["all_modules"].float().cpu().numpy()
        except (RuntimeError, ValueError) as err:
            raise InfluenceError(f"computing influence scores failed: {err}") from err
        finally:
            shutil.rmtree(os.path.join(analysis, f"scores_{name}"), ignore_errors=True)
            release_freed_memory()
        if not np.isfinite(out).all():
            raise InfluenceError("influence scores contain NaN/inf (the model may have diverged)")
        return out


@contextlib.contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """The true Fisher samples labels from the model (``sample=True``): seed every partition so
    factors never depend on the process's random state and a resumed fit equals a whole one."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _frozen_gc() -> Iterator[None]:
    """Hide the objects alive now from Python's cyclic collector while kronfluence runs.

    kronfluence calls ``gc.collect()`` before and after every pass and partition; with
    torch, sklearn and Streamlit loaded each call walks millions of objects (0.3–2.5 s
    measured here). Frozen objects are still freed by reference counting.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _gradient_shape(m: nn.Module) -> tuple[int, int]:
    """(input, output) size of a module's per-sample gradient as kronfluence stores it."""
    w = m.weight  # type: ignore[union-attr]
    extra = 0 if getattr(m, "bias", None) is None else 1
    return int(w[0].numel()) + extra, int(w.shape[0])


def _glob_dirs(folder: str, prefix: str) -> list[str]:
    try:
        return [os.path.join(folder, d) for d in os.listdir(folder) if d.startswith(prefix)]
    except OSError:
        return []
