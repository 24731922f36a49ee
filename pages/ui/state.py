"""The app's session state, typed.

Two kinds of state live in a Streamlit session:

- ``Widgets``: the value of every widget the app owns, under the widget's key (Streamlit
  keeps a widget's value in ``st.session_state[key]``). The dataclass declares each key
  once with its default; ``widgets()`` reads them back as one typed object.
- ``Session``: what the analyst has done — the model under investigation, the picked
  affected images, the collapse result, triage decisions, the detect/unlearn rounds —
  one typed object under ``st.session_state["session"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import streamlit as st

from deltainf_core import (
    AttackConfig,
    CollapseConfig,
    CollapseResult,
    DataConfig,
    DetectConfig,
    Detection,
    InfluenceConfig,
    Rounds,
    Scenario,
    TrainConfig,
    UnlearnConfig,
    UnlearnOutcome,
)

SESSION = "session"


@dataclass
class Widgets:
    """Every widget key the app owns and its default (values mirror the CLI's defaults, so both
    share the cache). Method-parameter widgets add keys ``<prefix>_<method>_<field>`` with the
    parameters dataclass's defaults (``display.param_widgets``)."""

    scn_mode: str = "train"
    scn_dataset: str = DataConfig.dataset
    scn_data_dir: str = ""
    scn_model: str = TrainConfig.model
    scn_attack: str = AttackConfig.attack
    scn_poison_frac: float = AttackConfig.poison_frac
    scn_victim: int | None = None
    scn_target: int | None = None
    scn_seed: int = 0
    scn_attack_params: str = ""
    scn_max_train: int = 0
    scn_max_test: int = 0
    scn_epochs: int = 0
    scn_copies: int = CollapseConfig.n_copies
    scn_copies_extra: int = CollapseConfig.n_copies_extra
    scn_max_affected: int = CollapseConfig.max_affected
    scn_strategy: str = InfluenceConfig.strategy
    scn_transforms: list[str] | None = None
    scn_rounds: int = Scenario.max_rounds
    aff_page: int = 1
    aff_target: int | None = None
    col_transforms: list[str] | None = None
    tri_rule: str = DetectConfig.detector
    tri_page: int = 1
    tri_page_size: int = 48
    tri_show_truth: bool = True
    tri_sort: str = "statistic"
    tri_status: str = "all"
    tri_min_stat: float = 0.0
    tri_lbr: list[float] | None = None
    tri_labels: list[int] | None = None
    tri_cut: int = 0
    unl_method: str = UnlearnConfig.method
    unl_epochs: int = 0
    cmp_dataset: str = DataConfig.dataset
    cmp_max_train: int = 0
    cmp_attacks: list[str] | None = None
    cmp_detectors: list[str] | None = None
    cmp_unlearners: list[str] | None = None
    cmp_brew_targets: int = 3


@dataclass
class Active:
    """The investigation in progress: what was trained/loaded and how to refer to it."""

    scenario: Scenario
    mode: str
    model_key: str
    checkpoint_name: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Upload:
    """An uploaded affected image, converted to the model's input (``[C, H, W]`` in [0, 1])."""

    sha: str
    name: str
    image: np.ndarray
    notes: list[str]


@dataclass
class Keyed:
    """A result and the signature of the inputs it was computed from."""

    sig: str
    value: Any


@dataclass
class Unlearned:
    outcome: UnlearnOutcome
    forget: list[int]
    method: str
    sig: str


@dataclass
class Session:
    """What the analyst has done so far in this browser session.

    picked: gallery picks (indices into the attack's triggered test set, or into the test
        set when there is no attack), in the order they were picked; None = not chosen yet.
    approved / rejected / added: triage decisions on training indices (a candidate in
        neither ``approved`` nor ``rejected`` is undecided and is not unlearned); an
        investigation saved before approvals were stored reopens with ``approve_undecided``,
        and its candidates are approved once, as it showed them.
    detections: detector name -> ``Keyed`` detection (detectors that are not collapse rules).
    rounds: the detect/unlearn rounds (``deltainf_core.Rounds``), from the core.
    memo: per-name ``Keyed`` results that are expensive to recompute on every rerun.
    oracle: ``Keyed`` {"clean_accuracy", "poison_success_rate"} of the retrain without the poisons.
    collapse_cached: (factors, scores) were served from the cache when the collapse was computed.
    notice / pick_notice: a sentence for the Affected image page's top (a reopen retrained the
        model) / for beside its picker (a sixth pick was refused).
    runs: every unlearning run of this investigation (``investigations.UnlearnRun``), oldest first.
    inv_id / saved / saved_stamp: the investigation on disk this session is bound to, the
        record as last written or read (to save only changes) and its ``updated`` stamp.
    hold: a reopen failed half-way; the record is not overwritten until a model is activated.
    restoring: the id being reopened until its rebuild completes (a rerun can cut it short).
    """

    active: Active | None = None
    picked: list[int] | None = None
    uploads: list[Upload] = field(default_factory=list)
    collapse: Keyed | None = None
    approved: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    added: set[int] = field(default_factory=set)
    approve_undecided: bool = False
    detections: dict[str, Keyed] = field(default_factory=dict)
    unlearned: Unlearned | None = None
    oracle: Keyed | None = None
    rounds: Rounds | None = None
    notice: str | None = None
    pick_notice: str | None = None
    memo: dict[str, Keyed] = field(default_factory=dict)
    collapse_cached: tuple[bool, bool] | None = None
    runs: list = field(default_factory=list)
    inv_id: str | None = None
    saved: dict | None = None
    saved_stamp: str | None = None
    hold: bool = False
    restoring: str | None = None

    @property
    def collapse_result(self) -> CollapseResult | None:
        return None if self.collapse is None else self.collapse.value

    def detection(self, name: str, sig: str) -> Detection | None:
        entry = self.detections.get(name)
        return entry.value if entry is not None and entry.sig == sig else None


def init_state() -> None:
    """Fill every widget default and the session object once per browser session.

    Widgets with these keys are created with ``persist_state="session"`` (``keep``) so a
    value survives while its page is not shown.
    """
    ss = st.session_state
    for f in fields(Widgets):
        if f.name not in ss:
            value = getattr(Widgets(), f.name)
            ss[f.name] = list(value) if isinstance(value, list) else value
    if SESSION not in ss:
        ss[SESSION] = Session()


def through_app() -> None:
    """Make sure this page runs inside ``app.py`` (each page calls this first).

    Streamlit decides on a fresh server's first run that a ``pages/`` folder means a v1
    multipage app, and then runs the page named in the URL (a reload of ``/triage?…`` right
    after a restart) on its own: no ``app.py``, so no page list, no layout and no binding to
    the saved investigation. Switch that off, as ``app.py``'s ``st.navigation`` does for good,
    and run again — now through ``app.py``.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory or SESSION not in st.session_state:
        PagesManager.uses_pages_directory = False
        st.rerun()


def session() -> Session:
    through_app()
    return st.session_state[SESSION]


def widgets() -> Widgets:
    """The current widget values, typed."""
    ss = st.session_state
    return Widgets(**{f.name: ss[f.name] for f in fields(Widgets) if f.name in ss})


def keep(key: str) -> dict[str, str]:
    """Widget kwargs for a key whose value must survive page switches (``**keep("scn_seed")``)."""
    return {"key": key, "persist_state": "session"}


def reset_downstream(level: str) -> None:
    """Forget results that depend on an earlier step ('model' > 'affected' > 'collapse')."""
    s = session()
    if level == "model":
        s.picked, s.uploads, s.oracle, s.runs = None, [], None, []
        st.session_state["aff_target"] = None
        st.session_state["aff_page"] = 1
    if level in ("model", "affected"):
        s.collapse, s.collapse_cached = None, None
    s.approved, s.rejected, s.added, s.detections, s.unlearned = set(), set(), set(), {}, None
    s.approve_undecided = False
    st.session_state["tri_page"] = 1
    st.session_state["tri_cut"] = 0
