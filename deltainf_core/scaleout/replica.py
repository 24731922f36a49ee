"""One replica of a DistributedDataParallel training job: ``training.train_model`` with its ``Replica``.

torchrun runs ``python -m deltainf_core.scaleout.replica JOB.json`` once per rank; Ray Train's
``TorchTrainer`` calls ``run_replica(JOB.json)`` in each worker. The job file holds paths and
configs only (``launchers``): the initial weights, the image set, the rows to train on, the
recipe. Every replica starts from the same weights and draws the same batches and augmentations;
rank 0 commits the trained weights atomically, so a job killed part-way leaves nothing to read.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig, config_from_dict
from ..training import Replica, no_progress, train_model
from .files import ProgressFile, load_image_set, load_model, staged


def replica_device() -> torch.device:
    """This rank's GPU (``LOCAL_RANK`` among the visible ones), else the CPU."""
    if torch.cuda.is_available():
        from ..training import deterministic_cuda

        deterministic_cuda()
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def run_replica(job_path: str) -> None:
    """Train this rank's replica of the job in ``job_path``; rank 0 commits the result."""
    with open(job_path) as fh:
        job = json.load(fh)
    device = replica_device()
    started_here = not dist.is_initialized()
    if started_here:  # torchrun: the environment names the job; Ray Train started the group already
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        replica = Replica.current()
        if job.get("threads"):
            torch.set_num_threads(int(job["threads"]))
        model = load_model(job["model"])
        data = load_image_set(job["data"])
        rows = np.load(job["rows"]) if job.get("rows") else None
        board = ProgressFile(job["progress"], 1.0, rank=replica.rank) if replica.rank == 0 else None
        stats = train_model(model, data, config_from_dict(TrainConfig, job["train"]),
                            augment_flip=job["augment_flip"], device=device, epochs=job["epochs"], lr=job["lr"],
                            rows=rows, replica=replica, progress=board.set if board else no_progress)
        if replica.rank == 0:
            with staged(job["out"]) as tmp:
                torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                           os.path.join(tmp, "weights.pt"))
                with open(os.path.join(tmp, "stats.json"), "w") as fh:
                    json.dump({"final_loss": stats.final_loss, "epochs": stats.epochs, "seconds": stats.seconds,
                               "world_size": replica.world}, fh)
        dist.barrier()
    finally:
        if started_here:
            dist.destroy_process_group()


def ray_train_loop(config: dict) -> None:
    """Ray Train's ``train_loop_per_worker``."""
    run_replica(config["job"])


if __name__ == "__main__":
    run_replica(sys.argv[1])
