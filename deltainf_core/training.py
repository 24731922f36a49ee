"""Train and evaluate classifiers: SGD + Nesterov, one-cycle LR, crop/flip augmentation.

Deterministic for a given seed: one ``torch.Generator`` drives initialisation, batch
order and augmentation, so a retrain (EU) and a cache miss give the same model (on CUDA
with cuDNN held to deterministic kernels, see ``deterministic_cuda``).
Images become float a batch at a time (uint8 sets stay uint8 in memory). On CUDA a
set that fits stays on the GPU for the whole run, otherwise batches travel from
pinned memory without blocking; ``precision="bf16"`` trains under autocast.
The same loop runs as one replica of a DistributedDataParallel job (``Replica``: every
replica draws the whole batch and its augmentation, then trains on its slice); with one
process it is exactly the single-process loop.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data.base import ImageSet, to_float
from .errors import ConfigError, TrainingError
from .memory import release_freed_memory

Progress = Callable[[float, str], None]
"""Progress callback: (fraction done in [0, 1], short message)."""


def no_progress(frac: float, msg: str) -> None:
    return None


class Meter:
    """Turns counts of work done into ``progress(fraction, "… ETA")`` calls, at most every ``every`` s.

    ``times`` keeps when the bar moved (to measure how often it does).
    """

    def __init__(self, progress: Progress, total: float, label: str, every: float = 0.5) -> None:
        self.progress, self.total, self.label, self.every = progress, max(total, 1e-9), label, every
        self.done = 0.0
        self.start = self.last = time.perf_counter()
        self.times: list[float] = []
        self.weight = 1.0

    def add(self, n: float) -> None:
        self.done += n * self.weight
        now = time.perf_counter()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self.times.append(now)
            frac = min(1.0, self.done / self.total)
            eta = (now - self.start) * (1 - frac) / frac if frac > 0 else float("nan")
            self.progress(frac, f"{self.label} {frac:.0%}, ETA {eta:.0f}s")

    def skip(self, n: float) -> None:
        """Work an earlier (killed) run already did: shrink the total, not the clock."""
        self.total = max(self.total - n * self.weight, 1e-9)


PRECISIONS = {"float32": None, "bf16": torch.bfloat16}

GPU_RESIDENT_BYTES = 2 * 2**30
"""Training sets up to this size are copied to the GPU once instead of batch by batch."""


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for ``precision`` ("float32": none) on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class BatchSource:
    """Float batches of an image set on ``device``: the set on the GPU when it fits, else
    uint8 rows sent from pinned memory without blocking (CUDA); plain indexing on CPU."""

    def __init__(self, data: ImageSet, device: torch.device) -> None:
        self.data, self.device = data, device
        cuda = device.type == "cuda"
        self.resident = cuda and data.nbytes <= GPU_RESIDENT_BYTES
        self.pixels = data.pixels.to(device) if self.resident else data.pixels
        self.labels = data.labels.to(device) if self.resident else data.labels
        self.pin = cuda and not self.resident

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resident:
            i = idx.to(self.device)
            return to_float(self.pixels[i]), self.labels[i]
        x, y = self.pixels[idx], self.labels[idx]
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return to_float(x.to(self.device, non_blocking=self.pin)), y.to(self.device, non_blocking=self.pin)


def pick_device() -> torch.device:
    """CUDA when present, else CPU (the CI machines have no GPU)."""
    if torch.cuda.is_available():
        deterministic_cuda()
        return torch.device("cuda")
    return torch.device("cpu")


def deterministic_cuda() -> None:
    """Hold cuDNN and cuBLAS to kernels that add in a fixed order.

    By default cuDNN autotunes its convolution kernels, and some of them accumulate
    with atomics: the same config trained twice on one GPU gave different models and
    flagged sets, which a cache keyed by the config cannot allow (a cache miss must
    reproduce what it replaces). The pooling layers' atomics never collide here (their
    windows do not overlap), so these switches are enough for the built-in models.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def training_environment(device: torch.device | str, world_size: int = 1) -> dict:
    """What decides trained weights besides the config: the device and, on the CPU, torch's
    intra-op thread count (one thread and two gave different CIFAR models from one config,
    BENCHMARKS.md), and the processes of a DistributedDataParallel job (only when more than
    one), so an artefact records where it was trained."""
    device = torch.device(device)
    job = {"world_size": world_size} if world_size > 1 else {}
    if device.type == "cuda":
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(device), **job}
    return {"device": device.type, "threads": torch.get_num_threads(), **job}


def cached_model_note(trained_on: dict | None, device: torch.device | str, world_size: int = 1) -> str:
    """The progress line for a model read from the cache: where it was trained, if not as here."""
    here = training_environment(device, world_size)
    if trained_on is None or trained_on == here:
        return "model from cache"
    said = ", ".join(f"{k} {v}" for k, v in trained_on.items())
    now = ", ".join(f"{k} {v}" for k, v in here.items())
    return f"model from cache, trained with {said} (here: {now}; a retrain here can differ slightly)"


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def augment_batch(x: torch.Tensor, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop (pad by 1/8 of the side, reflect) and optional horizontal flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        out = torch.where(mask.view(n, 1, 1, 1), out.flip(-1), out)
    return out


SMALLEST_BATCH_SHARE = 0.25
"""A last mini-batch under this share of ``batch_size`` is not trained on alone."""

EPOCH_BATCHES_VERSION = 2
"""Version of ``epoch_batches``' rule (1: consecutive slices, whatever the last one held)."""


def epoch_batches(order: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """One epoch's mini-batches of the shuffled indices ``order``.

    Consecutive slices of ``batch_size``, unless the last would hold fewer than
    ``SMALLEST_BATCH_SHARE`` of them: then the same number of batches, of equal sizes.
    A batch of a handful of images normalises BatchNorm by their statistics alone, moves
    the running statistics the trained model keeps, and takes a full step on their
    gradient: a CIFAR-subset retrain on 1,670 images (last batch 6) ended at 35 %
    accuracy from three seeds, and at 62 % with equal batches (BENCHMARKS.md). Sets whose
    last batch is large enough keep their batches, so their trained models do not change.
    """
    if equal_batches(len(order), batch_size):
        return torch.tensor_split(order, math.ceil(len(order) / batch_size))
    return torch.split(order, batch_size)


def equal_batches(n: int, batch_size: int) -> bool:
    """Whether an epoch of ``n`` images is split into equal batches (its last slice would be too small)."""
    steps = math.ceil(n / batch_size)
    return steps > 1 and n - (steps - 1) * batch_size < SMALLEST_BATCH_SHARE * batch_size


def batching_key(n: int, batch_size: int) -> tuple[str, ...]:
    """What a cache key of a training on ``n`` images adds for its batching: nothing where the batches are
    the consecutive slices every earlier version trained on (those cached models stay valid, and so do
    the figures measured with them), a marker where ``epoch_batches`` changed them."""
    return ("equal-batches",) if equal_batches(n, batch_size) else ()


@dataclass
class TrainStats:
    final_loss: float
    epochs: int
    seconds: float


@dataclass(frozen=True)
class Replica:
    """This process's place in a DistributedDataParallel job: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Replica:
        """The job torch.distributed was started for (torchrun, Ray Train), or a lone process."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def part(self, n: int) -> torch.Tensor:
        """Which of a batch's ``n`` rows this replica trains on (contiguous, sizes within one)."""
        return torch.tensor_split(torch.arange(n), self.world)[self.rank]


Launcher = Callable[..., TrainStats]
"""Runs ``train_model``'s arguments as a DistributedDataParallel job and loads the result into the model."""
_LAUNCHER: contextvars.ContextVar[Launcher | None] = contextvars.ContextVar("deltainf_launcher", default=None)


@contextlib.contextmanager
def launched_by(launcher: Launcher | None) -> Iterator[None]:
    """Every ``train_model`` call inside (training, EU's retrains, the oracle) goes to ``launcher``;
    None: this process trains, as always."""
    token = _LAUNCHER.set(launcher)
    try:
        yield
    finally:
        _LAUNCHER.reset(token)


def _replica_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, replica: Replica, device: torch.device,
                  precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to back-propagate, the whole batch's mean loss) for this replica's slice of a batch.

    The slice's summed loss is scaled so that DistributedDataParallel's average of the replicas'
    gradients is the gradient of the whole batch's mean, whatever the slices' sizes."""
    import torch.distributed as dist

    part = replica.part(len(y)).to(y.device)
    with autocast(device, precision):
        loss = F.cross_entropy(net(x[part]).float(), y[part], reduction="sum") * (replica.world / len(y))
    seen = loss.detach().clone()
    dist.all_reduce(seen)  # every replica sees the same value, so a NaN stops all of them
    return loss, seen / replica.world


def train_model(
    model: nn.Module,
    data: ImageSet,
    cfg: TrainConfig,
    *,
    augment_flip: bool = True,
    progress: Progress = no_progress,
    device: torch.device | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    rows: np.ndarray | None = None,
    replica: Replica | None = None,
) -> TrainStats:
    """Train ``model`` in place on ``data`` (only its ``rows``, when given); raises ``TrainingError``
    on a NaN/inf loss. ``rows`` trains exactly as on ``data.subset(rows)`` without copying it
    (EU's retain set is nearly the whole training set). ``replica``: this process is one of a
    DistributedDataParallel job; otherwise a launcher set by ``launched_by`` runs the job."""
    launcher = _LAUNCHER.get()
    if replica is None and launcher is not None:
        return launcher(model, data, cfg, augment_flip=augment_flip, progress=progress, epochs=epochs, lr=lr,
                        rows=rows)
    world = replica.world if replica is not None else 1
    picked = None if rows is None else torch.as_tensor(np.asarray(rows, dtype=np.int64))
    if (len(data) if picked is None else len(picked)) == 0:
        raise TrainingError("cannot train on an empty training set")
    device = device or pick_device()
    precision = cfg.precision
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    epochs = cfg.epochs_for(len(data)) if epochs is None else epochs
    peak = cfg.lr if lr is None else lr
    model.to(device).train()
    net = model if world == 1 else _data_parallel(model, device)
    opt = torch.optim.SGD(
        model.parameters(), lr=peak, momentum=cfg.momentum, nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    n = len(data) if picked is None else len(picked)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = max(1, epochs * steps_per_epoch)
    # a quarter of the steps warm up; more on a run of under 6 steps (OneCycleLR divides by zero)
    warm = max(0.25, min(0.75, 1.5 / total))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total, pct_start=warm)
    source = BatchSource(data, device)
    start = time.perf_counter()
    loss_val = float("nan")
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b, idx in enumerate(epoch_batches(order, cfg.batch_size)):
            x, y = source.batch(idx if picked is None else picked[idx])
            if cfg.augment:
                x = augment_batch(x, augment_flip, gen)
            if world == 1:
                with autocast(device, precision):
                    loss = F.cross_entropy(model(x).float(), y)
                seen = loss
            else:
                loss, seen = _replica_loss(net, x, y, replica, device, precision)  # type: ignore[arg-type]
            if not torch.isfinite(seen):
                raise TrainingError(
                    f"training loss became {seen.item()} at epoch {epoch + 1}; lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_val = seen.item()
            if (b % 8 == 0 or b == steps_per_epoch - 1) and (replica is None or replica.rank == 0):
                progress(step / total, f"epoch {epoch + 1}/{epochs} loss {loss_val:.3f}")
    model.eval()
    release_freed_memory()  # glibc keeps the steps' freed activations (≈100-200 MB) otherwise
    return TrainStats(loss_val, epochs, time.perf_counter() - start)


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (gloo on CPUs, NCCL on GPUs: the job's process group)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


Images = torch.Tensor | ImageSet
"""Float or uint8 pixels ``[N, C, H, W]``, or an image set: converted a batch at a time."""


@torch.no_grad()
def predict(model: nn.Module, images: Images, batch_size: int = 512) -> torch.Tensor:
    """Predicted class per image (CPU int64)."""
    return predict_logits(model, images, batch_size).argmax(1)


@torch.no_grad()
def predict_logits(model: nn.Module, images: Images, batch_size: int = 512) -> torch.Tensor:
    pixels = images.pixels if isinstance(images, ImageSet) else images
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs = [model(to_float(pixels[i : i + batch_size].to(device))).float().cpu()
            for i in range(0, len(pixels), batch_size)]
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0)
    return torch.cat(outs)


def accuracy(model: nn.Module, data: ImageSet) -> float:
    if len(data) == 0:
        return float("nan")
    return float((predict(model, data) == data.labels).float().mean())
