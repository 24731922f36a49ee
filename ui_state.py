"""UI-only helpers shared by ``app.py`` and the pages (never imported by the core).

- session-state defaults and the "keep alive" that lets choices survive page switches;
- one ``Pipeline`` per cache directory for the whole server (``st.cache_resource``),
  so its in-process memos (datasets, models, influence engines) are shared;
- a progress-bar adapter with elapsed time and ETA for the core's progress callback;
- the error wrapper: a ``DeltaInfError`` becomes its own sentence in ``st.error``,
  anything else one sentence plus a server-side log entry — never a traceback;
- the derived state every page needs (scenario, affected images, flagged set), so a
  page can be opened directly and still shows the same numbers as the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import streamlit as st
import torch

from deltainf_core import (
    ALL_TRANSFORMS,
    AttackConfig,
    CollapseConfig,
    CollapseResult,
    DataConfig,
    DeltaInfError,
    DetectConfig,
    ImageSet,
    InfluenceConfig,
    Pipeline,
    Scenario,
    Store,
    TrainConfig,
    TrainedModel,
    UnlearnConfig,
    collapse_votes,
    delta_scores,
    precision_recall,
    predict,
)
from deltainf_core.config import field_help, stable_hash
from deltainf_core.detectors.delta import default_rule
from deltainf_core.errors import ConfigError
from deltainf_core.figures import CollapseStats, collapse_stats
from deltainf_core.store import default_cache_dir

log = logging.getLogger("deltainf.app")

FOLDER = "__folder__"
"""Pseudo dataset name: an ImageFolder root typed by the user."""
MAX_AFFECTED = 5
"""Up to this many affected images are scored in one pass (SPEC §4, finding 4)."""

HELP = {**field_help(DataConfig), **field_help(AttackConfig), **field_help(TrainConfig),
        **field_help(CollapseConfig), **field_help(InfluenceConfig)}

DEFAULTS: dict[str, Any] = {
    # scenario page (values mirror the CLI's defaults, so both share the cache)
    "scn_mode": "train",
    "scn_dataset": DataConfig.dataset,
    "scn_data_dir": "",
    "scn_model": TrainConfig.model,
    "scn_attack": AttackConfig.name,
    "scn_poison_frac": AttackConfig.poison_frac,
    "scn_victim": None,
    "scn_target": None,
    "scn_seed": 0,
    "scn_attack_params": "",
    "scn_max_train": 0,
    "scn_max_test": 0,
    "scn_epochs": 0,
    "scn_copies": CollapseConfig.n_copies,
    "scn_copies_extra": CollapseConfig.n_copies_extra,
    "scn_max_affected": CollapseConfig.max_affected,
    "scn_strategy": InfluenceConfig.strategy,
    # affected-image page
    "aff_page": 1,
    "aff_target": None,
    # influence-collapse page
    "col_transforms": list(ALL_TRANSFORMS),
    # triage page
    "tri_rule": "delta",
    "tri_effect_size": DetectConfig.effect_size,
    "tri_broken_only": DetectConfig.broken_only,
    "tri_split": DetectConfig.split,
    "tri_th": 0.0,
    "tri_n_tolerate": 1,
    "tri_page": 1,
    "tri_show_truth": True,
    # unlearn page
    "unl_method": UnlearnConfig.method,
    "unl_epochs": 0,
}
"""Every widget key the app owns, with its default; kept alive across page switches."""

STAGE_LABELS = {"data": "Loading data", "attack": "Poisoning", "train": "Training", "influence": "Influence",
                "detect": "Detecting", "unlearn": "Unlearning"}


# -- session state --------------------------------------------------------------------------
def init_state() -> None:
    """Fill the defaults of every widget key once per session.

    Widgets with these keys are created with ``persist_state="session"`` so a value
    survives while its page is not shown (re-assigning keys no longer does that).
    """
    ss = st.session_state
    for key, value in DEFAULTS.items():
        if key not in ss:
            ss[key] = list(value) if isinstance(value, list) else value
    ss.setdefault("active", None)
    ss.setdefault("aff_selected", None)
    ss.setdefault("aff_uploads", [])
    ss.setdefault("collapse", None)
    ss.setdefault("tri_rejected", set())
    ss.setdefault("tri_added", set())
    ss.setdefault("tri_detections", {})
    ss.setdefault("unlearned", None)
    ss.setdefault("oracle", {})
    ss.setdefault("round", {"n": 1, "model": None, "prior": []})


def keep(key: str) -> dict[str, str]:
    """Widget kwargs for a key whose value must survive page switches (``**ui.keep("scn_seed")``)."""
    return {"key": key, "persist_state": "session"}


def reset_downstream(level: str) -> None:
    """Forget results that depend on an earlier step ('model' > 'affected' > 'collapse')."""
    ss = st.session_state
    if level == "model":
        ss["aff_selected"] = None
        ss["aff_uploads"] = []
        ss["aff_target"] = None
        ss["aff_page"] = 1
        ss["oracle"] = {}
        ss["round"] = {"n": 1, "model": None, "prior": []}
    if level in ("model", "affected"):
        ss["collapse"] = None
    ss["tri_rejected"] = set()
    ss["tri_added"] = set()
    ss["tri_detections"] = {}
    ss["tri_page"] = 1
    ss["unlearned"] = None


# -- the shared pipeline ----------------------------------------------------------------------
def cache_dir() -> str:
    return default_cache_dir()


@st.cache_resource(show_spinner=False)
def _shared(directory: str) -> tuple[Pipeline, threading.Lock]:
    return Pipeline(Store(directory)), threading.Lock()


def pipeline() -> Pipeline:
    return _shared(cache_dir())[0]


def _job_lock() -> threading.Lock:
    return _shared(cache_dir())[1]


# -- progress and errors -------------------------------------------------------------------
def _fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


class ProgressBar:
    """The core's ``(stage, fraction, message)`` callback drawn as ``st.progress`` with ETA.

    Calls from another thread (another browser session using the shared pipeline)
    are ignored: Streamlit elements belong to the session that made them.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.bar = st.progress(0.0, text=f"{title}…")
        self.thread = threading.get_ident()
        self.start = time.perf_counter()
        self.stage: str | None = None
        self.stage_start = self.start
        self.last = 0.0

    def __call__(self, stage: str, frac: float, msg: str) -> None:
        if threading.get_ident() != self.thread:
            return
        now = time.perf_counter()
        if stage != self.stage:
            self.stage, self.stage_start = stage, now
        frac = float(min(max(frac, 0.0), 1.0))
        if now - self.last < 0.1 and 0.0 < frac < 1.0:
            return
        self.last = now
        spent = now - self.stage_start
        label = STAGE_LABELS.get(stage, stage)
        head = f"{self.title}: {msg}" if label.lower() in self.title.lower() else f"{self.title} · {label}: {msg}"
        parts = [head, f"{_fmt_seconds(now - self.start)} elapsed"]
        if 0.03 < frac < 1.0 and spent > 1.0:
            parts.append(f"about {_fmt_seconds(spent * (1.0 - frac) / frac)} left in this step")
        self.bar.progress(frac, text=" · ".join(parts))

    def close(self) -> None:
        self.bar.empty()


def show_error(action: str, err: BaseException) -> None:
    """One sentence for the analyst; the traceback only goes to the server log."""
    if isinstance(err, DeltaInfError):
        st.error(str(err))
        return
    log.exception("%s failed", action)
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    st.error(f"{action} failed unexpectedly ({type(err).__name__}{': ' + first if first else ''}); "
             "the details are in the server log.")


def attempt(action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run ``fn``; on failure show one ``st.error`` sentence and return ``(False, None)``."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - shown as one sentence; st.stop/st.rerun are BaseExceptions
        show_error(action, err)
        return False, None


def run_long(action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """``attempt`` with a progress bar wired into the shared pipeline (one long job at a time)."""
    pipe = pipeline()
    lock = _job_lock()
    waiting = None
    if not lock.acquire(blocking=False):
        waiting = st.info("Another session is running a long step; this one starts when it finishes.")
        lock.acquire()
        waiting.empty()
    previous = pipe.progress
    try:
        # The spinner's clock ticks in the browser even while a step reports nothing
        # (kronfluence has no callback); the bar shows fraction, message and ETA.
        with st.spinner(f"{action}…", show_time=True):
            bar = ProgressBar(action)
            pipe.with_progress(bar)
            try:
                return attempt(action, fn, *args, **kwargs)
            finally:
                bar.close()
    finally:
        pipe.with_progress(previous)
        lock.release()


# -- scenario -------------------------------------------------------------------------------
@dataclass
class Active:
    """The investigation in progress: what was trained/loaded and how to refer to it."""

    scenario: Scenario
    mode: str
    model_key: str
    checkpoint_name: str | None = None
    extra: dict = field(default_factory=dict)


def parse_params(text: str) -> dict:
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError('attack parameters must be a JSON object, for example {"pattern": "dark4"}')
    return value


def data_config(ss: Any = None) -> DataConfig:
    ss = st.session_state if ss is None else ss
    folder = ss["scn_dataset"] == FOLDER
    data_dir = (ss["scn_data_dir"] or "").strip()
    if folder and not data_dir:
        raise ConfigError("type the path of an ImageFolder root (with train/ and test/ inside)")
    return DataConfig(dataset=DataConfig.dataset if folder else ss["scn_dataset"],
                      data_dir=os.path.expanduser(data_dir) if folder else None,
                      max_train=int(ss["scn_max_train"]) or None, max_test=int(ss["scn_max_test"]) or None)


def scenario_from_state(ss: Any = None, checkpoint: str | None = None) -> Scenario:
    """The Scenario the widgets describe (same construction as the CLI's, so caches are shared)."""
    ss = st.session_state if ss is None else ss
    seed = int(ss["scn_seed"])
    victim = None if ss["scn_victim"] is None else int(ss["scn_victim"])
    target = None if ss["scn_target"] is None else int(ss["scn_target"])
    if checkpoint:
        attack = AttackConfig(name="none")
    else:
        attack = AttackConfig(name=ss["scn_attack"], poison_frac=float(ss["scn_poison_frac"]),
                              victim_class=victim, target_class=target,
                              params=parse_params(ss["scn_attack_params"]), seed=seed)
    train = TrainConfig(model=ss["scn_model"], epochs=int(ss["scn_epochs"]) or None, seed=seed)
    collapse = CollapseConfig(n_copies=int(ss["scn_copies"]), n_copies_extra=int(ss["scn_copies_extra"]),
                              max_affected=int(ss["scn_max_affected"]), seed=seed)
    scn = Scenario(data=data_config(ss), attack=attack, train=train,
                   influence=InfluenceConfig(strategy=ss["scn_strategy"]), collapse=collapse,
                   unlearn=UnlearnConfig(seed=seed), checkpoint=checkpoint)
    train.validate()
    collapse.validate()
    return scn


def active() -> Active | None:
    return st.session_state.get("active")


def trained(act: Active) -> TrainedModel:
    """The model under investigation (an in-process memo after the first call)."""
    return pipeline().trained(act.scenario)


def ground_truth(act: Active) -> np.ndarray | None:
    """Known poison indices, or None (loaded model, clean scenario)."""
    if act.mode != "train":
        return None
    idx = pipeline().poisoned(act.scenario).poison_indices
    return np.asarray(idx, dtype=np.int64) if len(idx) else None


def require_active() -> Active | None:
    act = active()
    if act is None:
        st.info("Start on the **Scenario** page: train a model (one click with the defaults) or load one.")
        st.page_link("pages/scenario.py", label="Go to Scenario", icon=":material/arrow_forward:")
    return act


# -- affected images ------------------------------------------------------------------------
def has_attack_gallery(act: Active) -> bool:
    poisoned = pipeline().poisoned(act.scenario)
    return act.mode == "train" and poisoned.target_class is not None and len(poisoned.psr_set) > 0


def memo(name: str, key: str, compute: Callable[[], Any]) -> Any:
    """Keep one result per name in the session (e.g. predictions over the test set for this model)."""
    entry = st.session_state.get(f"_memo_{name}")
    if entry is None or entry[0] != key:
        entry = (key, compute())
        st.session_state[f"_memo_{name}"] = entry
    return entry[1]


def affected_candidates(act: Active) -> np.ndarray:
    """Indices into the attack's triggered test set that the model predicts as the target (memoised)."""
    return memo("candidates", act.model_key, lambda: pipeline().affected_candidates(act.scenario))


def test_predictions(act: Active) -> np.ndarray:
    """The model's predicted class for every test image (memoised per model)."""
    test = pipeline().dataset(act.scenario.data).test
    return memo("test_pred", act.model_key, lambda: predict(trained(act).model, test.images).numpy())


def predict_images(act: Active, images: list[np.ndarray]) -> list[int]:
    """The model's predictions for a few ``[C, H, W]`` arrays (uploads)."""
    if not images:
        return []
    batch = torch.stack([torch.as_tensor(np.asarray(x, dtype=np.float32)) for x in images])
    return [int(p) for p in predict(trained(act).model, batch)]


def affected_target(act: Active) -> int | None:
    """The class the affected images are wrongly predicted as."""
    poisoned = pipeline().poisoned(act.scenario)
    if has_attack_gallery(act):
        return int(poisoned.target_class)
    target = st.session_state.get("aff_target")
    return None if target is None else int(target)


def affected_images(act: Active) -> ImageSet | None:
    """Selected gallery images followed by accepted uploads (None when nothing is picked)."""
    pipe = pipeline()
    scn = act.scenario
    selected = list(st.session_state.get("aff_selected") or [])
    uploads = list(st.session_state.get("aff_uploads") or [])
    parts = []
    if selected:
        if has_attack_gallery(act):
            parts.append(pipe.affected_set(scn, selected).images)
        else:
            parts.append(pipe.dataset(scn.data).test.images[torch.as_tensor(selected)])
    parts.extend(torch.as_tensor(u["image"]).unsqueeze(0) for u in uploads)
    if not parts:
        return None
    images = torch.cat(parts)[:MAX_AFFECTED]
    classes = pipe.dataset(scn.data).classes
    target = affected_target(act)
    if target is None:
        target = int(predict(trained(act).model, images[:1])[0])
    return ImageSet(images, torch.full((len(images),), target), classes)


def affected_signature(act: Active) -> str:
    uploads = [u["sha"] for u in st.session_state.get("aff_uploads") or []]
    return stable_hash(act.model_key, list(st.session_state.get("aff_selected") or []), uploads,
                       affected_target(act))


# -- influence collapse -----------------------------------------------------------------------
def collapse_config(act: Active, n_affected: int) -> CollapseConfig:
    ss = st.session_state
    return replace(act.scenario.collapse, n_copies=int(ss["scn_copies"]),
                   n_copies_extra=int(ss["scn_copies_extra"]),
                   max_affected=max(int(act.scenario.collapse.max_affected), n_affected))


def collapse_signature(act: Active, cfg: CollapseConfig) -> str:
    rnd = st.session_state["round"]
    return stable_hash(affected_signature(act), cfg, act.scenario.influence, rnd["n"])


def current_collapse(act: Active) -> CollapseResult | None:
    """The collapse result for the current affected images and copy settings, if computed."""
    entry = st.session_state.get("collapse")
    aff = affected_images(act)
    if entry is None or aff is None:
        return None
    if entry["sig"] != collapse_signature(act, collapse_config(act, len(aff))):
        return None
    return entry["result"]


def current_stats(act: Active) -> CollapseStats | None:
    """Per-transformation sums of the current collapse, computed once per result (instant toggles)."""
    if current_collapse(act) is None:
        return None
    entry = st.session_state["collapse"]
    if entry.get("stats") is None:
        entry["stats"] = collapse_stats(entry["result"].scores, entry["result"].queries)
    return entry["stats"]


def enabled_transforms(result: CollapseResult) -> list[str]:
    present = [t for t in dict.fromkeys(result.queries.transform.tolist()) if t]
    chosen = [t for t in st.session_state.get("col_transforms") or [] if t in present]
    return chosen


# -- triage -------------------------------------------------------------------------------------
@dataclass
class Flags:
    """The current flagged set and the evidence used to rank it."""

    rule: str
    flagged: np.ndarray
    evidence: np.ndarray
    evidence_name: str
    ready: bool = True
    message: str = ""


def current_flags(act: Active) -> Flags:
    """Flagged training indices under the triage page's current rule, memoised per rule settings.

    The Δ rules use the core's own functions on the cached scores (the numbers the
    core's ``delta`` detector would give); other detectors need an explicit run.
    """
    ss = st.session_state
    entry = ss.get("collapse")
    key = stable_hash(ss["tri_rule"], float(ss["tri_effect_size"]), bool(ss["tri_broken_only"]),
                      bool(ss["tri_split"]), float(ss["tri_th"]), int(ss["tri_n_tolerate"]),
                      list(ss.get("col_transforms") or []), entry["sig"] if entry else None,
                      affected_signature(act),
                      [(k, id(v["detection"])) for k, v in sorted(ss["tri_detections"].items())])
    memo = ss.setdefault("_flags_memo", {})
    if key not in memo:
        memo.clear()
        memo[key] = _compute_flags(act)
    return memo[key]


def triage_detect_config() -> DetectConfig:
    """The Triage page's settings of the default Δ rule."""
    ss = st.session_state
    return DetectConfig(effect_size=float(ss["tri_effect_size"]), broken_only=bool(ss["tri_broken_only"]),
                        split=bool(ss["tri_split"]))


def default_rule_text() -> str:
    """The default Δ rule's current settings in words."""
    cfg = triage_detect_config()
    parts = ["broken copies" if cfg.broken_only else "all copies", f"d ≥ {cfg.effect_size:g}"]
    if cfg.split:
        parts.append("strongest group")
    return ", ".join(parts)


def _compute_flags(act: Active) -> Flags:
    ss = st.session_state
    rule = ss["tri_rule"]
    n_train = len(pipeline().poisoned(act.scenario).train)
    empty = np.zeros(0, dtype=np.int64)
    if rule in ("delta", "delta_published"):
        result = current_collapse(act)
        if result is None:
            return Flags(rule, empty, np.zeros(n_train), "", False,
                         "compute the influence collapse first (Influence collapse page)")
        transforms = enabled_transforms(result)
        if not transforms:
            return Flags(rule, empty, np.zeros(n_train), "", False, "select at least one transformation")
        if rule == "delta":
            flagged, d, _ = default_rule(result.scores, result.queries, result.predicted, result.target_class,
                                         triage_detect_config(), transforms)
            return Flags(rule, flagged, d, "d")
        delta, _ = delta_scores(result.scores, result.queries, transforms)
        votes = collapse_votes(delta, float(ss["tri_th"]))
        flagged = np.flatnonzero(votes >= delta.shape[0] - int(ss["tri_n_tolerate"]))
        return Flags(rule, flagged, votes.astype(float), f"votes of {delta.shape[0]}")
    det = ss["tri_detections"].get(rule)
    if det is None or det["sig"] != affected_signature(act):
        return Flags(rule, empty, np.zeros(n_train), "", False, f"run the {rule} detector")
    return Flags(rule, np.asarray(det["detection"].flagged, dtype=np.int64),
                 np.asarray(det["detection"].scores, dtype=float), "score")


def candidates(act: Active, flags: Flags) -> np.ndarray:
    """Flagged ∪ manually added ∪ previous rounds' approved set, strongest evidence first."""
    ss = st.session_state
    extra = np.asarray(sorted(ss["tri_added"] | set(ss["round"]["prior"])), dtype=np.int64)
    idx = np.union1d(flags.flagged, extra).astype(np.int64)
    if idx.size == 0:
        return idx
    ev = np.nan_to_num(flags.evidence[idx], nan=-np.inf, posinf=1e12, neginf=-1e12)
    return idx[np.argsort(-ev, kind="stable")]


def approved(act: Active, flags: Flags | None = None) -> np.ndarray:
    flags = flags or current_flags(act)
    rejected = st.session_state["tri_rejected"]
    return np.asarray(sorted(set(candidates(act, flags).tolist()) - rejected), dtype=np.int64)


def precision_recall_text(flagged: np.ndarray, truth: np.ndarray | None) -> tuple[str, str]:
    p, r = precision_recall(flagged, truth)
    return pct(p), pct(r)


# -- formatting ---------------------------------------------------------------------------------
def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100.0 * x:.{digits}f}%"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def class_name(classes: tuple[str, ...], c: int | None) -> str:
    if c is None:
        return "?"
    name = classes[c] if 0 <= c < len(classes) else str(c)
    return name if name == str(c) else f"{c} ({name})"


def sidebar_summary() -> None:
    """A compact summary of the investigation in the sidebar (read-only, never computes)."""
    ss = st.session_state
    act = active()
    st.markdown("#### Investigation")
    if act is None:
        st.caption("No model yet: train or load one on the Scenario page.")
        return
    scn = act.scenario
    lines = []
    if act.mode == "train":
        src = os.path.basename(scn.data.data_dir) if scn.data.data_dir else scn.data.dataset
        lines.append(f"**{src}** · {scn.train.model} · {scn.attack.name} "
                     f"{'' if scn.attack.name == 'none' else f'{scn.attack.poison_frac:.1%}'}")
    else:
        src = os.path.basename(scn.data.data_dir) if scn.data.data_dir else scn.data.dataset
        lines.append(f"**{act.checkpoint_name or 'uploaded model'}** on {src} · {scn.train.model}")
    if "clean_accuracy" in act.extra:
        psr = act.extra.get("poison_success_rate")
        lines.append(f"accuracy {pct(act.extra['clean_accuracy'])}" + ("" if psr is None else f" · PSR {pct(psr)}"))
    n_aff = len(ss.get("aff_selected") or []) + len(ss.get("aff_uploads") or [])
    lines.append(f"affected images: {min(n_aff, MAX_AFFECTED)}")
    if ss.get("collapse") is not None:
        lines.append(f"collapse: {ss['collapse']['result'].scores.shape[0]} queries scored")
    if ss["round"]["n"] > 1:
        lines.append(f"round {ss['round']['n']}")
    un = ss.get("unlearned")
    if un is not None:
        o = un["outcome"]
        psr = "" if o.poison_success_rate is None else f", PSR {pct(o.poison_success_rate)}"
        lines.append(f"unlearned ({o.method}, {len(un['forget'])} images): accuracy {pct(o.clean_accuracy)}{psr}")
    st.markdown("  \n".join(lines))
