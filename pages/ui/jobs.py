"""Running the core from the app: one shared pipeline, progress bars, one-sentence errors.

- one ``Pipeline`` per cache directory for the whole server (``st.cache_resource``); its
  memos are bounded, and each long job gets its own view with its own progress bar
  (``Pipeline.with_progress``), so sessions never swap each other's sinks;
- a ``DeltaInfError`` becomes its own sentence in ``st.error``, anything else one
  sentence plus a server-side log entry — never a traceback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from deltainf_core import DeltaInfError, Pipeline, Store
from deltainf_core.store import default_cache_dir

log = logging.getLogger("deltainf.app")
T = TypeVar("T")

STAGE_LABELS = {"data": "Loading data", "attack": "Poisoning", "train": "Training", "influence": "Influence",
                "detect": "Detecting", "unlearn": "Unlearning", "compare": "Comparing"}


def cache_dir() -> str:
    return default_cache_dir()


@st.cache_resource(show_spinner=False)
def _shared(directory: str) -> tuple[Pipeline, threading.Lock]:
    return Pipeline(Store(directory)), threading.Lock()


def pipeline() -> Pipeline:
    """The server's pipeline (quiet); long jobs run on a view of it with a progress bar."""
    return _shared(cache_dir())[0]


def _fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


OUTER = "compare"
"""A stage that runs whole investigations inside it: its message stays on the bar while they run."""


class ProgressBar:
    """The core's ``(stage, fraction, message)`` callback drawn as ``st.progress`` with ETA.

    The influence engine reports factor fitting and scoring through a ``Meter`` (fraction
    and its own ETA every half second), so the bar moves during the longest steps; a step
    served from the cache says so. Inside a comparison the bar follows the cells ("cell i
    of N") and the running step is named after it. Calls from another thread are ignored:
    Streamlit elements belong to the session (and thread) that made them.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.bar = st.progress(0.0, text=f"{title}…")
        self.thread = threading.get_ident()
        self.start = time.perf_counter()
        self.stage: str | None = None
        self.stage_start = self.start
        self.last = 0.0
        self.outer: tuple[float, str] | None = None
        self.shown: list[tuple[float, str]] = []
        """Every (fraction, text) drawn, in order (what a test of a slow stage reads back)."""

    def __call__(self, stage: str, frac: float, msg: str) -> None:
        if threading.get_ident() != self.thread:
            return
        now = time.perf_counter()
        if stage != self.stage:
            self.stage, self.stage_start = stage, now
        frac = float(min(max(frac, 0.0), 1.0))
        if stage == OUTER:
            self.outer = (frac, msg)
        if now - self.last < 0.1 and 0.0 < frac < 1.0:
            return
        self.last = now
        text = progress_text(self.title, STAGE_LABELS.get(stage, stage), frac, msg, now - self.start,
                             now - self.stage_start, None if stage == OUTER else self.outer)
        shown = self.outer[0] if self.outer is not None and stage != OUTER else frac
        self.shown.append((shown, text))
        self.bar.progress(shown, text=text)

    def close(self) -> None:
        self.bar.empty()


def progress_text(title: str, label: str, frac: float, msg: str, elapsed: float, in_step: float,
                  outer: tuple[float, str] | None = None) -> str:
    """The bar's text: what runs, how long it has run, and the time left when known.

    A message that carries its own estimate ("ETA", "left", the engine's meter) is shown
    as is; otherwise the step's own rate gives one once it has run a second.
    """
    head = f"{title}: {msg}" if label.lower() in title.lower() else f"{title} · {label}: {msg}"
    if outer is not None:
        head = f"{title}: {outer[1]} · {label}: {msg}"
    parts = [head, f"{_fmt_seconds(elapsed)} elapsed"]
    own_estimate = "ETA" in msg or " left" in msg or (outer is not None and " left" in outer[1])
    if not own_estimate and 0.03 < frac < 1.0 and in_step > 1.0:
        parts.append(f"about {_fmt_seconds(in_step * (1.0 - frac) / frac)} left in this step")
    return " · ".join(parts)


def show_error(action: str, err: BaseException) -> None:
    """One sentence for the analyst; the traceback only goes to the server log."""
    if isinstance(err, DeltaInfError):
        log.warning("%s: %s", action, err)
        st.error(str(err))
        return
    log.exception("%s failed", action)
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    st.error(f"{action} failed unexpectedly ({type(err).__name__}{': ' + first if first else ''}); "
             "the details are in the server log.")


def attempt(action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[bool, T | None]:
    """Run ``fn``; on failure show one ``st.error`` sentence and return ``(False, None)``."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - shown as one sentence; st.stop/st.rerun are BaseExceptions
        show_error(action, err)
        return False, None


def run_long(action: str, fn: Callable[[Pipeline], T]) -> tuple[bool, T | None]:
    """``fn(pipeline)`` with a progress bar, one long job at a time across sessions."""
    lock = _shared(cache_dir())[1]
    if not lock.acquire(blocking=False):
        waiting = st.info("Another session is running a long step; this one starts when it finishes.")
        lock.acquire()
        waiting.empty()
    try:
        # The spinner's clock ticks in the browser even while a step reports nothing
        # (kronfluence has no callback); the bar shows fraction, message and ETA.
        with st.spinner(f"{action}…", show_time=True):
            bar = ProgressBar(action)
            try:
                return attempt(action, fn, pipeline().with_progress(bar))
            finally:
                bar.close()
    finally:
        lock.release()
