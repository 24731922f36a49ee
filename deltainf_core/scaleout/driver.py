"""The driver side of the ray engine: send an engine's missing units to a back-end, merge what they commit.

``UnitDriver`` is the ``influence.UnitRunner`` of every engine but the local one. For a factor
fit it runs three phases (the covariance partitions, the eigendecomposition, the lambda
partitions); after each it links the committed files into the engine's factor folder in
partition order, lets kronfluence's ``aggregate_*`` add the partitions (the same sums, in the
same order, as the local loop) and records each step in the folder's manifest exactly as the
local loop does, so either engine resumes the other's folder. A step the manifest or the units
folder already holds is never sent again. Score chunks commit to the store themselves.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..config import config_dict, stable_hash
from ..influence import LAMBDA_COST
from ..integrity import StepManifest
from .files import ScaleOutError, committed, link, read_progress, save_image_set, save_model, scaleout_dir
from .plan import split_step
from .units import UnitJob, attempts


@dataclass
class UnitStatus:
    """Where a batch of units stands: what the app's engine widget and the progress line show."""

    label: str
    total: int
    done: int = 0
    running: int = 0
    retried: list[str] = field(default_factory=list)
    fraction: float = 0.0
    eta_s: float | None = None

    def text(self) -> str:
        parts = [f"{self.label} {self.done}/{self.total} units"]
        if self.running:
            parts.append(f"{self.running} running")
        if self.retried:
            parts.append(f"{len(self.retried)} retried after a lost worker ({', '.join(self.retried)})")
        if self.eta_s is not None:
            parts.append(f"ETA {self.eta_s:.0f}s")
        return ", ".join(parts)


StatusSink = Callable[[UnitStatus], None]


class Board:
    """Follows a batch of units through their attempt folders; reports ``progress(fraction, text)``.

    Fraction counts the images each attempt reports having read, so the bar moves inside
    long units; a unit with a second attempt folder was retried (its worker was lost).
    """

    def __init__(self, jobs: list[UnitJob], label: str, progress: Callable[[float, str], None],
                 on_status: StatusSink | None = None, every: float = 0.5) -> None:
        self.jobs, self.progress, self.on_status, self.every = jobs, progress, on_status, every
        self.weights = [max(j.images, 0.0) * (LAMBDA_COST if j.step.startswith("lambda") else 1.0) for j in jobs]
        self.status = UnitStatus(label, len(jobs))
        self.finished: set[int] = set()
        self._index = {job.work: i for i, job in enumerate(jobs)}
        self.start = time.perf_counter()
        self.last = -math.inf

    def finish(self, job: UnitJob, attempt: int) -> None:
        """``job`` committed, at its ``attempt``-th try (0: an earlier try had committed it)."""
        i = self._index[job.work]
        self.finished.add(i)
        if attempt > 1:
            self._retried(i)
        self.poll(force=True)

    def _retried(self, i: int) -> None:
        if self.jobs[i].name not in self.status.retried:
            self.status.retried.append(self.jobs[i].name)

    def poll(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done_w, running = 0.0, 0
        for i, job in enumerate(self.jobs):
            if i in self.finished:
                done_w += self.weights[i]
                continue
            tries = attempts(job.work)
            if len(tries) > 1:
                self._retried(i)
            seen = read_progress(os.path.join(tries[-1], "progress.json")) if tries else None
            if seen is not None:  # a unit that has read all its images is still saving: never quite done
                running += 1
                done_w += self.weights[i] * min(0.99, float(seen.get("done", 0.0)) / max(job.images, 1.0))
        total_w = sum(self.weights)
        frac = done_w / total_w if total_w > 0 else len(self.finished) / max(1, len(self.jobs))
        st = self.status
        st.done, st.running, st.fraction = len(self.finished), running, min(1.0, frac)
        elapsed = now - self.start
        st.eta_s = elapsed * (1 - st.fraction) / st.fraction if 0 < st.fraction < 1 else None
        self.progress(st.fraction, st.text())
        if self.on_status is not None:
            self.on_status(st)


class Backend(Protocol):
    """Runs unit jobs somewhere (Ray tasks); each commits its own artefact. Raises ``ScaleOutError``."""

    def run(self, jobs: list[UnitJob], board: Board) -> None: ...


class UnitDriver:
    """``influence.UnitRunner`` over a ``Backend``: materialise inputs, run missing units, merge in order.

    threads: torch threads per unit (what the back-end reserves). on_status: the app's widget.
    """

    def __init__(self, backend: Backend, threads: int = 1, on_status: StatusSink | None = None) -> None:
        self.backend, self.threads, self.on_status = backend, threads, on_status
        self._data_keys: dict[int, tuple[object, str]] = {}
        self._saved: dict[tuple[str, str], str] = {}

    # -- inputs ---------------------------------------------------------------------------
    def _data_key(self, data) -> str:
        from ..influence import data_fingerprint

        held = self._data_keys.get(id(data))
        if held is None or held[0] is not data:  # hashed once per image set held by this driver
            held = (data, data_fingerprint(data))
            self._data_keys[id(data)] = held
        return held[1]

    def _saved_once(self, kind: str, key: str, save: Callable[[], str]) -> str:
        """A model's or image set's folder, written (or verified) once per key by this driver."""
        if (kind, key) not in self._saved or not os.path.isdir(self._saved[kind, key]):
            self._saved[kind, key] = save()
        return self._saved[kind, key]

    def _job(self, engine, step: str, **kw: object) -> UnitJob:
        from .. import influence

        cache, data = engine.root, self._data_key(engine.train)
        return UnitJob(cache=cache, step=step, content=engine.content, influence=config_dict(engine.cfg),
                       model=self._saved_once("model", engine.content,
                                              lambda: save_model(cache, engine.content, engine.model)),
                       train=self._saved_once("data", data, lambda: save_image_set(cache, data, engine.train)),
                       factors=engine.factor_dir(), chunk=influence.CHUNK, threads=self.threads, **kw)

    # -- factors --------------------------------------------------------------------------
    def fit_factors(self, engine) -> None:
        plan = engine.factor_plan()
        folder = engine.factor_dir()
        os.makedirs(folder, exist_ok=True)
        parts = StepManifest(folder)
        units = scaleout_dir(engine.root, "units", engine.factors_name)
        work = scaleout_dir(engine.root, "work", engine.factors_name)
        steps = plan.steps()
        phases = [[s for s in steps if s.startswith("covariance")], ["eigen"],
                  [s for s in steps if s.startswith("lambda")]]
        todo = {s: self._job(engine, s, commit=os.path.join(units, s), work=os.path.join(work, s),
                             images=plan.images(s))
                for s in steps if not parts.has(s) and not committed(os.path.join(units, s))}
        board = Board(list(todo.values()), f"fitting {engine.cfg.strategy} factors on {len(engine.train)} images:",
                      engine.progress, self.on_status)  # one bar for the three phases, as the local engine's
        for phase in phases:
            jobs = [todo[s] for s in phase if s in todo]
            if jobs:
                self.backend.run(jobs, board)
            self._merge(engine, parts, phase, units, plan)
        parts.finish()
        shutil.rmtree(units, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    def _merge(self, engine, parts: StepManifest, phase: list[str], units: str, plan) -> None:
        """Link each committed unit into the factor folder in partition order; aggregate with the last."""
        folder = engine.factor_dir()
        for step in phase:
            if parts.has(step):
                continue
            unit = os.path.join(units, step)
            if not committed(unit):
                raise ScaleOutError(f"unit {step} finished without a complete commit in {unit}")
            for name in sorted(os.listdir(unit)):
                if name != "DONE" and not os.path.exists(os.path.join(folder, name)):
                    link(os.path.join(unit, name), os.path.join(folder, name))
            kind, p = split_step(step)
            count = plan.cov_parts if kind == "covariance" else plan.lam_parts
            if kind != "eigen" and count > 1 and p == count - 1:  # where the local loop's last call aggregates
                an = engine.analyzer()
                aggregate = an.aggregate_covariance_matrices if kind == "covariance" else an.aggregate_lambda_matrices
                aggregate(factors_name=engine.factors_name)
            parts.record(step)

    # -- scores ---------------------------------------------------------------------------
    def score_chunks(self, engine, queries, chunks: list[tuple[str, int, int]]) -> None:
        from ..influence import data_fingerprint

        qkey = f"q-{data_fingerprint(queries)}"
        qpath = self._saved_once("data", qkey, lambda: save_image_set(engine.root, qkey, queries))
        jobs = [self._job(engine, "scores", queries=qpath, score_key=key, start=a, stop=b, images=float(b - a),
                          work=scaleout_dir(engine.root, "work", f"scores-{stable_hash(key)}"))
                for key, a, b in chunks]
        label = f"scoring {len(queries)} queries against {len(engine.train)} images:"
        try:
            self.backend.run(jobs, Board(jobs, label, engine.progress, self.on_status))
        finally:
            for job in jobs:
                shutil.rmtree(job.work, ignore_errors=True)
