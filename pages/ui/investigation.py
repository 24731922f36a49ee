"""The investigation the pages share, derived from the session: scenario, affected images,
collapse result and the flagged set. A page can be opened directly and still shows the
same numbers as the others; every number comes from a core call.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

import numpy as np
import streamlit as st

from deltainf_core import (
    ATTACKS,
    DETECTORS,
    NO_ATTACK,
    RULES,
    AttackConfig,
    CollapseConfig,
    CollapseResult,
    DataConfig,
    ImageSet,
    InfluenceConfig,
    Rounds,
    RuleResult,
    Scenario,
    TrainConfig,
    TrainedModel,
    UnlearnConfig,
    collapse_panels,
)
from deltainf_core.collapse import CollapsePanels
from deltainf_core.collapse.statistics import copies_counted as _copies_counted
from deltainf_core.config import stable_hash
from deltainf_core.errors import ConfigError
from deltainf_core.investigations.triage import approved_among

from .display import params_from_widgets
from .jobs import pipeline
from .state import Active, Keyed, Widgets, session, through_app, widgets

FOLDER = "__folder__"
"""Pseudo dataset name: an ImageFolder root typed by the user."""
MAX_AFFECTED = 5
"""Up to this many affected images are scored in one pass (SPEC §4, finding 4)."""
DISPLAY_RULE = "delta"
"""The rule whose statistic the collapse scatter shows while Triage uses a detector that is not a rule."""


# -- scenario -------------------------------------------------------------------------------
def parse_attack_params(text: str, attack: str) -> dict:
    """The attack-parameters box as a dict, checked against the attack's parameters."""
    text = (text or "").strip()
    value: object = {}
    if text:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise ConfigError('attack parameters must be a JSON object, for example {"pattern": "dark4"}')
    ATTACKS.parse_params(attack, value)
    return value


def data_config(w: Widgets) -> DataConfig:
    folder = w.scn_dataset == FOLDER
    data_dir = (w.scn_data_dir or "").strip()
    if folder and not data_dir:
        raise ConfigError("type the path of an ImageFolder root (with train/ and test/ inside)")
    return DataConfig(dataset=DataConfig.dataset if folder else w.scn_dataset,
                      data_dir=os.path.expanduser(data_dir) if folder else None,
                      max_train=int(w.scn_max_train) or None, max_test=int(w.scn_max_test) or None)


def scenario_from_widgets(w: Widgets | None = None, checkpoint: str | None = None) -> Scenario:
    """The Scenario the widgets describe (same construction as the CLI's, so caches are shared)."""
    w = w or widgets()
    seed = int(w.scn_seed)
    if checkpoint:
        attack = AttackConfig(attack=NO_ATTACK)
    else:
        attack = AttackConfig(attack=w.scn_attack, poison_frac=float(w.scn_poison_frac),
                              victim_class=None if w.scn_victim is None else int(w.scn_victim),
                              target_class=None if w.scn_target is None else int(w.scn_target),
                              params=parse_attack_params(w.scn_attack_params, w.scn_attack), seed=seed)
    scn = Scenario(data=data_config(w), attack=attack, train=TrainConfig(model=w.scn_model,
                                                                          epochs=int(w.scn_epochs) or None, seed=seed),
                   influence=InfluenceConfig(strategy=w.scn_strategy),
                   collapse=CollapseConfig(n_copies=int(w.scn_copies), n_copies_extra=int(w.scn_copies_extra),
                                           max_affected=int(w.scn_max_affected), seed=seed,
                                           **({"transforms": tuple(w.scn_transforms)} if w.scn_transforms else {})),
                   unlearn=UnlearnConfig(seed=seed), checkpoint=checkpoint, max_rounds=int(w.scn_rounds))
    scn.validate()
    return scn


def active() -> Active | None:
    return session().active


def activate(scn: Scenario, mode: str, tm: TrainedModel, checkpoint_name: str | None = None) -> None:
    """Make a trained (or loaded) model the one under investigation; later steps start over."""
    from .state import reset_downstream

    poisoned = pipeline().poisoned(scn)
    s = session()
    s.active = Active(scn, mode, tm.key, checkpoint_name, {
        "clean_accuracy": tm.clean_accuracy, "poison_success_rate": tm.poison_success_rate,
        "n_train": len(poisoned.train), "n_poisons": len(poisoned.poison_indices)})
    s.rounds = Rounds(tm, scn.max_rounds)
    s.hold = False  # a fresh model: the session is whole again and is saved
    reset_downstream("model")


def open_step(title: str) -> Active | None:
    """The start of every step after the Scenario page: through ``app.py``, the title, the investigation."""
    through_app()
    st.title(title)
    return require_active()


def require_active() -> Active | None:
    act = active()
    if act is None:
        st.info("Start on the **Scenario** page: train a model (one click with the defaults) or load one.")
        st.page_link("pages/scenario.py", label="Go to Scenario", icon=":material/arrow_forward:")
    return act


def trained(act: Active) -> TrainedModel:
    """The model under investigation (an in-process memo after the first call)."""
    return pipeline().trained(act.scenario)


def rounds(act: Active) -> Rounds:
    s = session()
    if s.rounds is None:
        s.rounds = Rounds(trained(act), act.scenario.max_rounds)
    return s.rounds


def ground_truth(act: Active) -> np.ndarray | None:
    """Known poison indices, or None (loaded model, clean scenario)."""
    if act.mode != "train":
        return None
    idx = pipeline().poisoned(act.scenario).poison_indices
    return np.asarray(idx, dtype=np.int64) if len(idx) else None


def memo(name: str, sig: str, compute):
    """Keep one result per name in the session (e.g. predictions over the test set for this model)."""
    entry = session().memo.get(name)
    if entry is None or entry.sig != sig:
        entry = session().memo[name] = Keyed(sig, compute())
    return entry.value


# -- affected images ------------------------------------------------------------------------
def has_attack_gallery(act: Active) -> bool:
    poisoned = pipeline().poisoned(act.scenario)
    return act.mode == "train" and poisoned.target_class is not None and len(poisoned.psr_set) > 0


def affected_candidates(act: Active) -> np.ndarray:
    """Indices into the attack's triggered test set that the model predicts as the target."""
    return memo("candidates", act.model_key, lambda: pipeline().affected_candidates(act.scenario))


def test_predictions(act: Active) -> np.ndarray:
    """The model's predicted class for every test image."""
    return memo("test_pred", act.model_key,
                lambda: pipeline().predict(act.scenario, pipeline().dataset(act.scenario.data).test))


def affected_target(act: Active) -> int | None:
    """The class the affected images are wrongly predicted as."""
    if has_attack_gallery(act):
        return int(pipeline().poisoned(act.scenario).target_class)
    target = st.session_state.get("aff_target")
    return None if target is None else int(target)


def affected_images(act: Active) -> ImageSet | None:
    """Picked gallery images, then accepted uploads, labelled as the target (None: nothing picked)."""
    s = session()
    return pipeline().affected_images(act.scenario, s.picked or [], [u.image for u in s.uploads],
                                      from_test_set=not has_attack_gallery(act), target_class=affected_target(act),
                                      limit=MAX_AFFECTED)


def affected_test_indices(act: Active) -> list[int]:
    """The test-set index of every picked affected image (gallery picks; uploads have none)."""
    picks = [int(i) for i in session().picked or []]
    if not has_attack_gallery(act):
        return picks
    source = pipeline().poisoned(act.scenario).psr_source_indices
    return [int(source[i]) for i in picks]


def affected_signature(act: Active) -> str:
    s = session()
    return stable_hash(act.model_key, list(s.picked or []), [u.sha for u in s.uploads], affected_target(act))


# -- influence collapse -----------------------------------------------------------------------
def collapse_config(act: Active, n_affected: int) -> CollapseConfig:
    w = widgets()
    return replace(act.scenario.collapse, n_copies=int(w.scn_copies), n_copies_extra=int(w.scn_copies_extra),
                   max_affected=max(int(act.scenario.collapse.max_affected), n_affected))


def collapse_signature(act: Active, cfg: CollapseConfig) -> str:
    return stable_hash(affected_signature(act), cfg, act.scenario.influence, rounds(act).model.key)


def current_collapse(act: Active) -> CollapseResult | None:
    """The collapse result for the current affected images, copy settings and round, if computed."""
    s = session()
    aff = affected_images(act)
    if s.collapse is None or aff is None or s.collapse.sig != collapse_signature(act, collapse_config(act, len(aff))):
        return None
    return s.collapse.value


def enabled_transforms(result: CollapseResult) -> list[str]:
    """The toggled-on transformations in the copies' own order (re-enabling one never moves its panel)."""
    chosen = set(st.session_state.get("col_transforms") or [])
    return [t for t in result.queries.transforms_present() if t in chosen]


# -- flagged set ------------------------------------------------------------------------------
@dataclass
class Flags:
    """The current flagged set and the per-image statistic it is ranked by."""

    rule: str
    flagged: np.ndarray
    statistic: np.ndarray
    statistic_name: str
    ready: bool = True
    message: str = ""
    info: dict = field(default_factory=dict)


def rule_params(rule: str):
    """The Triage page's parameters of a detector or rule (its defaults until changed)."""
    return params_from_widgets(DETECTORS.params(rule), f"tri_{rule}")


def rule_result(result: CollapseResult, rule: str, transforms: list[str]) -> RuleResult:
    """A collapse rule on the scores the app already has, with the Triage page's parameters."""
    return RULES.get(rule)(result, rule_params(rule), transforms)


def current_flags(act: Active) -> Flags:
    """Flagged training indices under the Triage page's rule (memoised per settings)."""
    s = session()
    rule = st.session_state["tri_rule"]
    sig = stable_hash(rule, rule_params(rule), list(st.session_state.get("col_transforms") or []),
                      s.collapse.sig if s.collapse else None, affected_signature(act),
                      [(k, id(v.value)) for k, v in sorted(s.detections.items())])
    return memo("flags", sig, lambda: _compute_flags(act, rule))


def _compute_flags(act: Active, rule: str) -> Flags:
    n_train = len(pipeline().poisoned(act.scenario).train)
    empty, zeros = np.zeros(0, dtype=np.int64), np.zeros(n_train)
    if DETECTORS.trait(rule, "collapse_rule"):
        result = current_collapse(act)
        if result is None:
            return Flags(rule, empty, zeros, "", False,
                         "compute the influence collapse first (Influence collapse page)")
        transforms = enabled_transforms(result)
        if not transforms:
            return Flags(rule, empty, zeros, "", False, "select at least one transformation")
        out = rule_result(result, rule, transforms)
        return Flags(rule, out.flagged, out.statistic, RULES.trait(rule, "statistic"), info=out.info)
    det = session().detection(rule, affected_signature(act))
    if det is None:
        return Flags(rule, empty, zeros, "", False, f"run the {rule} detector")
    return Flags(rule, np.asarray(det.flagged, dtype=np.int64), np.asarray(det.scores, dtype=float), "score",
                 info=det.info)


@dataclass
class CollapseView:
    """What the collapse scatter draws: per-transformation panels and a rule's statistic."""

    panels: CollapsePanels
    rule: str
    params: object
    result: RuleResult
    statistic_name: str


def display_rule() -> str:
    """The Triage rule, or the default rule when Triage uses a detector that is not a collapse rule."""
    rule = st.session_state["tri_rule"]
    return rule if DETECTORS.trait(rule, "collapse_rule") else DISPLAY_RULE


def counts_broken_only(rule: str) -> bool:
    """Whether ``rule`` counts only the copies that broke the attack (its ``broken_only``)."""
    return bool(getattr(rule_params(rule), "broken_only", False))


def copies_counted(result: CollapseResult) -> dict[str, tuple[int, int]]:
    """Per transformation present, (copies the displayed rule counts, copies scored): the one count
    the toggles, the panels, Triage and the report show (``collapse.statistics.copies_counted``)."""
    return _copies_counted(result.stats, result.queries.transforms_present(), counts_broken_only(display_rule()))


def collapse_view(result: CollapseResult, transforms: list[str]) -> CollapseView:
    """The Triage rule's statistic (or the default rule's, when Triage uses a baseline detector),
    over the same copies the rule counts."""
    rule = display_rule()
    out = rule_result(result, rule, transforms)
    return CollapseView(collapse_panels(result.stats, transforms, counts_broken_only(rule)), rule, rule_params(rule),
                        out, RULES.trait(rule, "statistic"))


def candidates(flags: Flags) -> np.ndarray:
    """Flagged ∪ manually added ∪ earlier rounds' removed set, strongest evidence first."""
    s = session()
    removed = s.rounds.removed.tolist() if s.rounds is not None else []
    extra = np.asarray(sorted(s.added | set(removed)), dtype=np.int64)
    idx = np.union1d(flags.flagged, extra).astype(np.int64)
    if idx.size == 0:
        return idx
    ev = np.nan_to_num(flags.statistic[idx], nan=-np.inf, posinf=1e12, neginf=-1e12)
    return idx[np.argsort(-ev, kind="stable")]


def approved(act: Active, flags: Flags | None = None) -> np.ndarray:
    """The candidates the analyst approved: what Unlearn removes (undecided images are not)."""
    flags = flags or current_flags(act)
    s = session()
    cands = candidates(flags)
    if s.approve_undecided and flags.ready:
        # An investigation saved before approvals were stored approved every candidate it had not
        # rejected: write that down once, so it shows what it showed and decisions stay explicit.
        s.approved, s.approve_undecided = set(cands.tolist()) - s.rejected, False
    return approved_among(cands, s.approved)
