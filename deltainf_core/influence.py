"""EK-FAC influence scores with kronfluence: factors once per model, one score pass.

Why the details matter (SPEC §4-5):
- the training loss is computed in float64: in float32 the ``p − 1`` gradient of a
  poison the model fits almost perfectly rounds to 0 and the poison vanishes;
- kronfluence reuses results *by name* and ignores pixel contents, so every factor
  and score name carries a hash of model + data + arguments;
- ``prepare_model`` rewrites the model in place, so it always gets a copy.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from kronfluence.analyzer import Analyzer, prepare_model
from kronfluence.arguments import FactorArguments, ScoreArguments
from kronfluence.task import Task
from torch import nn

from .config import InfluenceConfig, stable_hash
from .data.base import ImageSet
from .errors import InfluenceError
from .training import Progress, no_progress, pick_device

# kronfluence 1.0.1 calls a deprecated CUDA GradScaler constructor on every pass.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"kronfluence\.")

TRAIN_CHUNK = 8192
"""Score the training set in chunks of this many images: progress and resumability."""


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
    h = hashlib.sha256()
    h.update(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.numpy().tobytes())
    return h.hexdigest()[:16]


class InfluenceEngine:
    """kronfluence for one (model, training set): fit factors once, then score query sets.

    ``scores(queries)`` returns ``[n_query, n_train]`` float32 and is memoised on disk
    by the caller's store through ``score_cache`` (a get/set pair), so the app's
    second visit is instant and a killed run resumes at the chunk it reached.
    """

    def __init__(self, model: nn.Module, train: ImageSet, cfg: InfluenceConfig, workdir: str,
                 progress: Progress = no_progress,
                 score_cache: tuple[Callable[[str], object], Callable[[str, object], None]] | None = None,
                 key: str | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.train = train
        self.device = pick_device()
        self.progress = progress
        self.task = ClassificationTask()
        base = copy.deepcopy(model).float().eval()
        # A caller that knows the keys of the stages that made model and data passes them (no re-hashing).
        self.key = key or stable_hash(model_fingerprint(base), data_fingerprint(train), cfg, "task-v1-float64")
        self.workdir = os.path.join(workdir, "kronfluence")
        self.score_cache = score_cache
        self._prepared = prepare_model(base.to(self.device), self.task)
        self._analyzer: Analyzer | None = None
        self.factor_seconds = 0.0
        self.score_seconds = 0.0

    @property
    def factors_name(self) -> str:
        return f"{self.cfg.strategy}_{self.key}"

    def _dataset(self, data: ImageSet) -> torch.utils.data.TensorDataset:
        return data.dataset()

    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            logging.getLogger("kronfluence").setLevel(logging.WARNING)
            self._analyzer = Analyzer(
                analysis_name=f"a_{self.key}", model=self._prepared, task=self.task,
                cpu=self.device.type == "cpu", disable_tqdm=True, output_dir=self.workdir,
                disable_model_save=True,
            )
        return self._analyzer

    def _factor_dir(self) -> str:
        return os.path.join(self.workdir, f"a_{self.key}", f"factors_{self.factors_name}")

    def fit_factors(self) -> None:
        """Fit EK-FAC factors unless a completed set exists (a marker file proves completion)."""
        done = os.path.join(self._factor_dir(), "DONE")
        if os.path.exists(done):
            return
        t0 = time.perf_counter()
        self.progress(0.0, f"fitting {self.cfg.strategy} factors on {len(self.train)} images")
        n = len(self.train)
        # covariance_max_examples takes the *first* N examples: shuffle before capping.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        data = self.train.subset(order.numpy()) if self.cfg.covariance_max_examples else self.train
        args = FactorArguments(strategy=self.cfg.strategy,
                               covariance_max_examples=self.cfg.covariance_max_examples,
                               lambda_max_examples=self.cfg.covariance_max_examples)
        try:
            self.analyzer().fit_all_factors(
                factors_name=self.factors_name, dataset=self._dataset(data),
                per_device_batch_size=min(self.cfg.train_batch_size, n), factor_args=args,
                overwrite_output_dir=True,
            )
        except (RuntimeError, ValueError) as err:
            raise InfluenceError(f"fitting influence factors failed: {err}") from err
        with open(done, "w") as fh:
            fh.write("ok\n")
        self.factor_seconds = time.perf_counter() - t0
        self.progress(1.0, f"factors ready ({self.factor_seconds:.1f}s)")

    def scores(self, queries: ImageSet) -> np.ndarray:
        """Pairwise scores of every query against every training image, one pass per chunk."""
        if len(queries) == 0:
            raise InfluenceError("no queries to score")
        if queries.image_shape != self.train.image_shape:
            raise InfluenceError(
                f"query images are {queries.image_shape} but the model was trained on {self.train.image_shape}"
            )
        qkey = stable_hash(self.key, data_fingerprint(queries))
        self.fit_factors()
        t0 = time.perf_counter()
        n = len(self.train)
        chunks = [(s, min(n, s + TRAIN_CHUNK)) for s in range(0, n, TRAIN_CHUNK)]
        parts = []
        for i, (start, stop) in enumerate(chunks):
            ckey = f"scores:{qkey}:{start}-{stop}"
            cached = self.score_cache[0](ckey) if self.score_cache else None
            if cached is None:
                self.progress(i / len(chunks), f"scoring {len(queries)} queries x images {start}-{stop}")
                cached = self._score_chunk(queries, qkey, start, stop)
                if self.score_cache:
                    self.score_cache[1](ckey, cached)
            parts.append(np.asarray(cached))
        self.score_seconds = time.perf_counter() - t0
        self.progress(1.0, f"scored {len(queries)} queries ({self.score_seconds:.1f}s)")
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _score_chunk(self, queries: ImageSet, qkey: str, start: int, stop: int) -> np.ndarray:
        name = f"s_{qkey}_{start}"
        args = ScoreArguments(damping_factor=self.cfg.damping)
        try:
            analyzer = self.analyzer()
            analyzer.compute_pairwise_scores(
                scores_name=name, factors_name=self.factors_name,
                query_dataset=self._dataset(queries), train_dataset=self._dataset(self.train),
                train_indices=list(range(start, stop)),
                per_device_query_batch_size=min(self.cfg.query_batch_size, len(queries)),
                per_device_train_batch_size=min(self.cfg.train_batch_size, stop - start),
                score_args=args, overwrite_output_dir=True,
            )
            out = analyzer.load_pairwise_scores(name)["all_modules"].float().cpu().numpy()
        except (RuntimeError, ValueError) as err:
            raise InfluenceError(f"computing influence scores failed: {err}") from err
        finally:
            shutil.rmtree(os.path.join(self.workdir, f"a_{self.key}", f"scores_{name}"), ignore_errors=True)
        if not np.isfinite(out).all():
            raise InfluenceError("influence scores contain NaN/inf (the model may have diverged)")
        return out
