"""The engine choice (local or Ray, the cluster's address, training workers) and the units' progress.

One call wires it into a page: ``engine_panel(pipeline())``. The widgets read their labels' help
from ``ComputeConfig`` (the same text as ``--engine``, ``--ray-address``, ``--train-workers``), so
the app and the CLI cannot drift. Choosing ``ray`` joins the cluster: an address that
does not answer is one ``st.error`` naming it, and the pipeline keeps the engine it had. A choice
is applied by its button, not on every edit.

While a job runs on Ray, the core's progress line already says "3/9 units, 2 running, 1 retried
after a lost worker (lambda1), ETA 40s" (the driver reports through the stage's progress sink,
which ``jobs.ProgressBar`` draws); ``UnitProgress`` draws the same status as its own bar
beside the engine choice.
"""

from __future__ import annotations

import threading
from dataclasses import fields

import streamlit as st

from deltainf_core import DeltaInfError, Pipeline
from deltainf_core.config import ENGINES, ComputeConfig
from deltainf_core.scaleout.driver import UnitStatus


def _help(name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(ComputeConfig) if f.name == name)


class UnitProgress:
    """A ``UnitStatus`` sink drawn as a progress bar; calls from another session's thread are ignored."""

    def __init__(self) -> None:
        self.box = st.empty()
        self.thread = threading.get_ident()
        self.shown: list[str] = []

    def __call__(self, status: UnitStatus) -> None:
        if threading.get_ident() != self.thread:
            return
        text = status.text()
        self.shown.append(text)
        self.box.progress(min(1.0, max(0.0, status.fraction)), text=text)


def engine_settings(pipe: Pipeline, key: str = "engine") -> ComputeConfig:
    """The engine widgets; "Use this engine" applies a changed choice to ``pipe`` (Ray is joined then).
    Returns what runs."""
    from deltainf_core.scaleout.executor import executor_for

    now = pipe.executor.compute
    engine = st.radio("Engine", ENGINES, index=ENGINES.index(now.engine), horizontal=True, help=_help("engine"),
                      key=f"{key}.engine")
    address = st.text_input("Ray address (ray engine)", value=now.ray_address or "", placeholder="a local cluster",
                            help=_help("ray_address"), key=f"{key}.address")
    workers = st.number_input("Training workers", min_value=1, max_value=256, value=now.train_workers,
                              help=_help("train_workers"), key=f"{key}.workers")
    wanted = ComputeConfig(engine, (address.strip() or None) if engine == "ray" else None, now.unit_cpus,
                           int(workers))
    # applied on a click, not on every edit: choosing ray with no address yet would start a local cluster
    if st.button("Use this engine", disabled=wanted == now, key=f"{key}.apply"):
        with st.spinner("joining the Ray cluster…" if engine == "ray" else "switching engine…"):
            try:
                pipe.executor = executor_for(wanted, pipe.store.directory)
            except DeltaInfError as err:
                st.error(str(err))
    return pipe.executor.compute


def engine_panel(pipe: Pipeline, key: str = "engine") -> ComputeConfig:
    """Engine settings in an expander, and (on Ray) this session's unit progress under them."""
    with st.expander("Compute engine", expanded=False):
        compute = engine_settings(pipe, key)
    runner = pipe.executor.runner
    if runner is not None and hasattr(runner, "on_status"):
        runner.on_status = UnitProgress()
    return compute
