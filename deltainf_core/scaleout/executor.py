"""The executor: where an investigation's work runs, with two back-ends.

- ``local`` (the default and the reference): every unit in this process, exactly as before
  (``runner`` None); training in this process, or as a torchrun job with ``train_workers`` > 1.
- ``ray``: the factor partitions, the eigendecomposition and the score chunks as Ray tasks
  (``driver.UnitDriver`` over ``ray_engine.RayBackend``); training as a Ray Train job with
  ``train_workers`` > 1.

Neither the engine nor the address enters a cache key: both engines make the same artefacts and
share a cache. The training world size does (only when more than one: DistributedDataParallel
is other arithmetic), and only for the trainings that run distributed: the model's, and EU's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..config import ComputeConfig
from ..influence import UnitRunner
from ..training import Launcher, launched_by

DISTRIBUTED_UNLEARNERS = ("eu",)
"""Unlearners whose retrains run as the training job (EU, and so the oracle); the others fine-tune in-process."""


class Executor:
    """Where work runs: ``runner`` for the influence units (None: here), ``launcher`` for training."""

    def __init__(self, compute: ComputeConfig | None = None, runner: UnitRunner | None = None,
                 launcher: Launcher | None = None) -> None:
        self.compute = compute or ComputeConfig()
        self.runner = runner
        self.launcher = launcher

    @property
    def name(self) -> str:
        return self.compute.engine

    def world_size(self, method: str | None = None) -> int:
        """Processes that train the model (``method`` None) or run unlearner ``method``."""
        return self.compute.train_workers if method is None or method in DISTRIBUTED_UNLEARNERS else 1

    def world_key(self, method: str | None = None) -> tuple:
        """What a training's cache key adds: nothing for one process (today's keys), the size for a job."""
        n = self.world_size(method)
        return ("world-size", n) if n > 1 else ()

    @contextlib.contextmanager
    def training(self, method: str | None = None) -> Iterator[None]:
        """Inside: ``train_model`` runs as this executor's DistributedDataParallel job, when it has one."""
        with launched_by(self.launcher if self.world_size(method) > 1 else None):
            yield


LOCAL = Executor()
"""Today's behaviour: everything in this process."""


def executor_for(compute: ComputeConfig, cache: str) -> Executor:
    """The executor ``compute`` describes; the ray engine connects now, so a bad address fails before any work."""
    compute.validate()
    if compute.engine == "local":
        if compute.train_workers == 1:
            return Executor(compute)
        from .launchers import TorchrunLauncher

        return Executor(compute, launcher=TorchrunLauncher(cache, compute.train_workers))
    from .driver import UnitDriver
    from .launchers import RayTrainLauncher
    from .ray_engine import connect

    backend = connect(compute, cache)
    launcher = RayTrainLauncher(cache, compute.train_workers, backend.gpus, compute.unit_cpus) \
        if compute.train_workers > 1 else None
    return Executor(compute, UnitDriver(backend, compute.unit_cpus), launcher)
