"""Driving the app with Streamlit's AppTest: a tiny built-in scenario and small helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from streamlit.testing.v1 import AppTest

from deltainf_core import (
    AttackConfig,
    CollapseConfig,
    DataConfig,
    InfluenceConfig,
    Scenario,
    TrainConfig,
    UnlearnConfig,
)

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")

TINY = {
    "scn_max_train": 400, "scn_max_test": 200, "scn_epochs": 12, "scn_poison_frac": 0.05,
    "scn_attack_params": '{"size": 5}',
    "scn_copies": 8, "scn_copies_extra": 4, "scn_max_affected": 2, "scn_strategy": "diagonal",
}
"""The app's advanced knobs for a scenario that trains and scores in seconds."""


@contextlib.contextmanager
def app_py_runs_every_time() -> Iterator[None]:
    """Run app.py on every AppTest run, as the server does after its first run.

    AppTest forgets before each run that ``st.navigation`` switched off the v1 reading of
    the ``pages/`` folder, and would then run a sub-page without ``app.py`` (no binding to
    the saved investigation, no sidebar). The server keeps the switch for its lifetime.
    Every test gets this (``tests/conftest.py``), and so does ``bench/app_latency.py``.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init
    try:
        yield
    finally:
        PagesManager.__init__ = original


def tiny_scenario() -> Scenario:
    """The Scenario the app must build from TINY (constructed independently of the app)."""
    return Scenario(
        data=DataConfig(max_train=400, max_test=200),
        attack=AttackConfig(attack="badnet", poison_frac=0.05, params={"size": 5}, seed=0),
        train=TrainConfig(epochs=12, seed=0),
        influence=InfluenceConfig(strategy="diagonal"),
        collapse=CollapseConfig(n_copies=8, n_copies_extra=4, max_affected=2, seed=0),
        unlearn=UnlearnConfig(seed=0),
    )


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100.0 * x:.1f}%"


def new_app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in {**TINY, **state}.items():
        at.session_state[key] = value
    return at.run()


def ok(at: AppTest) -> AppTest:
    """No uncaught exception (a traceback) on the page."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return found[0]


def goto(at: AppTest, page: str) -> AppTest:
    return ok(at.switch_page(f"pages/{page}.py").run())


def state(at: AppTest):
    """The app's typed session state (``pages.ui.state.Session``)."""
    return at.session_state["session"]
