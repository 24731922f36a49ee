"""One unit of influence work, as a worker runs it: its own analyzer in its own folder, an atomic commit.

The units are the ones the cache already keys: a covariance partition, the eigendecomposition,
a lambda partition (factor units, committed as a folder of kronfluence's files under
``<cache>/scaleout/units/<factors name>/<step>``, which the driver links into the factor folder in
partition order) and a score chunk (committed to the store under its key, as the local engine does).

Why a folder per attempt: kronfluence writes ``*_arguments.json`` check-then-write, so workers
sharing one folder race; and an attempt that a killed worker left half-done must never be read.
Each attempt's ``progress.json`` says how far it got, so a driver can show a retried unit.
Running a unit twice is harmless: a committed unit returns at once, and its content is the same.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

import torch

from ..config import InfluenceConfig
from ..memory import trimming
from .files import ProgressFile, ScaleOutError, committed, link, load_image_set, load_model, staged

ATTEMPT_PREFIX = "attempt-"
SKIPPED = ("PARTS", "DONE")


@dataclass(frozen=True)
class UnitJob:
    """What one unit's task receives: paths and content keys, nothing heavy.

    cache: the store's folder. step: ``covariance3``, ``eigen``, ``lambda0`` or ``scores``.
    content: the engine's content key (model + training set). influence: the ``InfluenceConfig``.
    model/train/queries: folders written by ``files.save_model``/``save_image_set``.
    factors: the driver's factor folder, read for inputs. commit: where a factor unit commits.
    work: this unit's working folder (an attempt folder per try). chunk: images per partition.
    images: the images the unit reads (its progress file counts them).
    """

    cache: str
    step: str
    content: str
    influence: dict
    model: str
    train: str
    factors: str
    work: str
    chunk: int
    threads: int = 1
    commit: str = ""
    queries: str = ""
    score_key: str = ""
    start: int = 0
    stop: int = 0
    images: float = 0.0
    label: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        """How the progress line names the unit."""
        return self.label or (f"scores {self.start}-{self.stop}" if self.step == "scores" else self.step)


def attempts(work: str) -> list[str]:
    """This unit's attempt folders, oldest first (a retried unit has more than one)."""
    try:
        names = [n for n in os.listdir(work) if n.startswith(ATTEMPT_PREFIX)]
    except OSError:
        return []
    return [os.path.join(work, n) for n in sorted(names, key=lambda n: int(n.split("-")[1]))]


def _new_attempt(work: str) -> tuple[str, int]:
    os.makedirs(work, exist_ok=True)
    k = len(attempts(work)) + 1
    while True:
        folder = os.path.join(work, f"{ATTEMPT_PREFIX}{k}-{os.getpid()}")
        try:
            os.makedirs(folder)
            return folder, k
        except FileExistsError:
            k += 1


def run_unit(job: UnitJob) -> tuple[str, int]:
    """Compute ``job`` in a fresh attempt folder and commit it; returns (step, attempt number).

    A unit already committed (an earlier attempt finished just before its worker was lost)
    returns at once with attempt 0.
    """
    if job.step != "scores" and committed(job.commit):
        return job.step, 0
    torch.set_num_threads(job.threads)
    folder, k = _new_attempt(job.work)
    board = ProgressFile(os.path.join(folder, "progress.json"), job.images, attempt=k, unit=job.name)
    try:
        engine, train = _engine(job, folder)
        if job.step == "scores":
            _score(job, engine, board)
        else:
            _factor(job, engine, train, board)
        board.set(1.0, "committed")
    finally:
        for name in os.listdir(folder):  # keep only the progress file: the driver reads it
            if name != "progress.json":
                path = os.path.join(folder, name)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return job.step, k


def _engine(job: UnitJob, folder: str):
    from ..influence import InfluenceEngine

    train = load_image_set(job.train)
    engine = InfluenceEngine(load_model(job.model), train, InfluenceConfig(**job.influence), folder, key=job.content)
    return engine, train


def _inputs(factors: str, into: str) -> set[str]:
    """Link the driver's finished factor files (never partitions: a worker must not aggregate) into ``into``."""
    os.makedirs(into, exist_ok=True)
    names = {n for n in os.listdir(factors) if n not in SKIPPED and "_partition" not in n
             and not n.endswith(".tmp") and os.path.isfile(os.path.join(factors, n))}
    for n in names:
        link(os.path.join(factors, n), os.path.join(into, n))
    return names


def _factor(job: UnitJob, engine, train, board: ProgressFile) -> None:
    plan = engine.factor_plan(job.chunk)
    out = engine.factor_dir()
    inputs = _inputs(job.factors, out) if not job.step.startswith("covariance") else set()
    os.makedirs(out, exist_ok=True)
    engine.fit_unit(plan, job.step, train.dataset(plan.order, on_batch=trimming(board.add)))
    made = sorted(n for n in os.listdir(out) if n not in inputs and os.path.isfile(os.path.join(out, n)))
    if not made:
        raise ScaleOutError(f"unit {job.step} made no files")
    with staged(job.commit) as tmp:
        for n in made:
            os.replace(os.path.join(out, n), os.path.join(tmp, n))


def _score(job: UnitJob, engine, board: ProgressFile) -> None:
    from ..store import Store, hold, key_lock

    store = Store(job.cache)
    try:
        with hold(key_lock(job.cache, job.score_key), f"scores {job.score_key}"):
            if store.get(job.score_key) is not None:  # another run's (the driver checks its shape)
                return
            _inputs(job.factors, engine.factor_dir())
            queries = load_image_set(job.queries)
            out = engine.score_chunk(queries, job.score_key, job.start, job.stop, trimming(board.add))
            store.set(job.score_key, out)
    finally:
        store.close()
