"""Launch ``train_model`` as a DistributedDataParallel job: torchrun (local engine) or Ray Train (ray engine).

A launcher is what ``training.launched_by`` hands every ``train_model`` call of training, EU
and the oracle. It writes the job as paths and configs (the freshly initialised weights, the
image set, the rows, the recipe), runs one replica per process (``replica``), polls rank 0's
progress file from the calling thread (the app's progress bar belongs to it) and loads the
committed weights into the caller's model. A job whose result is already committed (same
weights, data, rows, recipe, world size) is not run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from torch import nn

from ..config import TrainConfig, config_dict, stable_hash
from ..data.base import ImageSet
from ..errors import ConfigError, TrainingError
from ..training import Progress, TrainStats, no_progress
from .files import (
    ScaleOutError,
    committed,
    read_progress,
    save_image_set,
    save_model,
    scaleout_dir,
)

POLL_S = 0.5


class DDPLauncher:
    """The part every launcher shares: write the job, wait for it, load its result. ``world``: processes."""

    engine = ""

    def __init__(self, cache: str, world: int) -> None:
        self.cache, self.world = cache, world
        self._data: dict[int, tuple[ImageSet, str]] = {}

    def __call__(self, model: nn.Module, data: ImageSet, cfg: TrainConfig, *, augment_flip: bool = True,
                 progress: Progress = no_progress, epochs: int | None = None, lr: float | None = None,
                 rows: np.ndarray | None = None) -> TrainStats:
        import torch

        from ..influence import data_fingerprint, model_fingerprint

        if cfg.batch_size < 4 * self.world:
            raise ConfigError(f"{self.world} training workers need a batch size of at least {4 * self.world} "
                              f"(4 images per worker), got {cfg.batch_size}")
        held = self._data.get(id(data))
        if held is None or held[0] is not data:
            held = self._data[id(data)] = (data, data_fingerprint(data))
        epochs = cfg.epochs_for(len(data)) if epochs is None else epochs
        start = model_fingerprint(model)
        picked = None if rows is None else np.asarray(rows, dtype=np.int64)
        job_id = stable_hash(start, held[1], None if picked is None else stable_hash(picked.tolist()),
                             config_dict(cfg), augment_flip, epochs, lr, self.world)
        folder = scaleout_dir(self.cache, "train", job_id)
        out = os.path.join(folder, "result")
        t0 = time.perf_counter()
        if not committed(out):
            os.makedirs(folder, exist_ok=True)
            rows_path = ""
            if picked is not None:
                rows_path = os.path.join(folder, "rows.npy")
                np.save(rows_path, picked)
            job = {"model": save_model(self.cache, f"init-{start}", model),
                   "data": save_image_set(self.cache, held[1], data), "rows": rows_path,
                   "train": config_dict(cfg), "augment_flip": augment_flip, "epochs": epochs, "lr": lr,
                   "out": out, "progress": os.path.join(folder, "progress.json"), "threads": self.threads()}
            path = os.path.join(folder, "job.json")
            with open(path, "w") as fh:
                json.dump(job, fh)
            self.launch(path, job["progress"], progress)
            if not committed(out):
                raise TrainingError(f"the {self.world}-process training job ended without its weights ({folder})")
        model.load_state_dict(torch.load(os.path.join(out, "weights.pt"), map_location="cpu", weights_only=True))
        model.eval()
        with open(os.path.join(out, "stats.json")) as fh:
            stats = json.load(fh)
        progress(1.0, f"trained by {self.world} {self.engine} workers")
        return TrainStats(float(stats["final_loss"]), int(stats["epochs"]), time.perf_counter() - t0)

    def threads(self) -> int:
        return 1

    def launch(self, job: str, progress_path: str, progress: Progress) -> None:
        raise NotImplementedError

    @staticmethod
    def relay(progress_path: str, progress: Progress) -> None:
        seen = read_progress(progress_path)
        if seen is not None and seen.get("total"):
            progress(min(1.0, float(seen["done"]) / float(seen["total"])), str(seen.get("message", "")))


class TorchrunLauncher(DDPLauncher):
    """``torchrun --standalone --nproc-per-node N``: one machine, gloo on CPUs, NCCL on GPUs.

    A rank that dies restarts the whole job (``--max-restarts``): deterministic, so the same weights."""

    engine = "torchrun"
    MAX_RESTARTS = 2

    def launch(self, job: str, progress_path: str, progress: Progress) -> None:
        log = os.path.join(os.path.dirname(job), "torchrun.log")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={self.world}",
               f"--max-restarts={self.MAX_RESTARTS}", "-m", "deltainf_core.scaleout.replica", job]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            try:
                while proc.poll() is None:
                    time.sleep(POLL_S)
                    self.relay(progress_path, progress)
            except BaseException:
                proc.terminate()
                proc.wait()
                raise
        if proc.returncode != 0:
            raise TrainingError(f"the {self.world}-process torchrun job failed: {_last_error(log)} (log: {log})")


class RayTrainLauncher(DDPLauncher):
    """Ray Train's ``TorchTrainer`` with ``world`` workers (one GPU each where the cluster has GPUs).

    A lost worker restarts the group (``max_failures``); the job is deterministic, so the
    restarted run commits the same weights."""

    engine = "Ray Train"
    MAX_FAILURES = 2

    def __init__(self, cache: str, world: int, gpus: float = 0.0, cpus: int = 1) -> None:
        super().__init__(cache, world)
        self.gpus, self.cpus = gpus, cpus

    def threads(self) -> int:
        return self.cpus

    def launch(self, job: str, progress_path: str, progress: Progress) -> None:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        from .replica import ray_train_loop

        trainer = TorchTrainer(
            ray_train_loop, train_loop_config={"job": job},
            scaling_config=ScalingConfig(num_workers=self.world, use_gpu=self.gpus > 0,
                                         resources_per_worker={"CPU": self.cpus, **({"GPU": 1} if self.gpus else {})}),
            run_config=RunConfig(name=f"deltainf-{os.path.basename(os.path.dirname(job))}",
                                 storage_path=scaleout_dir(self.cache, "ray_train"),
                                 failure_config=FailureConfig(max_failures=self.MAX_FAILURES)))
        failure: list[BaseException] = []

        def fit() -> None:
            try:
                trainer.fit()
            except BaseException as err:  # noqa: BLE001 - handed to the calling thread below
                failure.append(err)

        worker = threading.Thread(target=fit, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(POLL_S)
            self.relay(progress_path, progress)
        if failure:
            raise ScaleOutError(f"the {self.world}-worker Ray Train job failed: {_last_line(failure[0])}")


def _last_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _last_error(log: str) -> str:
    """The last line of a failed job's log that names an error (a replica's exception)."""
    try:
        with open(log) as fh:
            lines = [line.strip() for line in fh if line.strip()]
    except OSError:
        return "no log"
    named = [line for line in lines if "Error" in line or "error" in line]
    return (named or lines or ["no output"])[-1][:300]
