"""The session's investigation on disk: saved as it changes, reopened from the URL.

Every run of ``app.py`` calls ``bind()`` before the page and ``save()`` after it:

- ``bind`` reads ``?investigation=<id>``; a session not yet showing that record (a reload,
  a second tab, a restarted server, a link) restores it — settings, model, affected
  images, collapse, decisions, unlearning runs — from the record plus the artefact cache
  (models and scores are found again by their keys, so reopening costs seconds). A record
  another session changed since this one last saw it is reread the same way. A page link
  drops the query string (and may be clicked while a reopen still runs, which cuts it
  short): then the session's own id names the record, and an unfinished reopen resumes.
- ``save`` turns the session into an ``Investigation`` and writes it only when it
  differs from what was last written or read; the first model trained or loaded creates
  the record. The id goes back into the URL on every run (page links drop it).

A session only ever holds one id, and records are separate files, so two browser
sessions on different investigations never see each other's state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, replace

import numpy as np
import streamlit as st

from deltainf_core import DETECTORS, Rounds, Scenario
from deltainf_core.investigations import (
    AffectedImage,
    Investigation,
    InvestigationError,
    InvestigationStore,
    UnlearnRun,
)
from deltainf_core.uploads import load_affected_image

from .investigation import (
    MAX_AFFECTED,
    affected_images,
    affected_target,
    collapse_config,
    collapse_signature,
    has_attack_gallery,
    rule_params,
)
from .jobs import attempt, cache_dir, run_long
from .state import SESSION, Active, Keyed, Session, Unlearned, Upload, Widgets, init_state, session

PARAM = "investigation"
"""The URL query parameter that names the investigation."""
log = logging.getLogger("deltainf.app")


@st.cache_resource(show_spinner=False)
def _store(directory: str) -> InvestigationStore:
    import os

    return InvestigationStore(os.path.join(directory, "investigations"))


def store() -> InvestigationStore:
    return _store(cache_dir())


# -- settings (widget values) -------------------------------------------------------------------
def setting_keys() -> list[str]:
    """Every widget key whose value a record keeps: ``Widgets`` and the rules' parameter widgets."""
    keys = [f.name for f in dataclasses.fields(Widgets)]
    for name in DETECTORS.names():
        keys += [f"tri_{name}_{f.name}" for f in dataclasses.fields(DETECTORS.params(name))]
    return keys


def _jsonable(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value)


def settings() -> dict:
    ss = st.session_state
    return {k: (list(ss[k]) if isinstance(ss[k], tuple) else ss[k]) for k in setting_keys()
            if k in ss and _jsonable(ss[k])}


# -- session -> record ------------------------------------------------------------------------------
def snapshot(s: Session, inv_id: str, name: str) -> Investigation:
    """The record of what this session shows (without timestamps' meaning: ``save`` stamps them)."""
    ss = st.session_state
    rec = Investigation(id=inv_id, name=name, settings=settings(), transforms=list(ss.get("col_transforms") or []))
    rule = ss.get("tri_rule")
    if rule in DETECTORS:
        rec.rule = {"detector": rule, "params": asdict(rule_params(rule))}
    act = s.active
    if act is None:
        return rec
    rec.mode, rec.scenario, rec.checkpoint_name = act.mode, act.scenario.as_dict(), act.checkpoint_name
    rec.model_key, rec.model = act.model_key, dict(act.extra)
    source = "triggered" if has_attack_gallery(act) else "test"
    rec.affected = [AffectedImage(source, index=int(i)) for i in s.picked or []]
    rec.affected += [AffectedImage("upload", sha256=u.sha, name=u.name) for u in s.uploads]
    rec.affected_target = None if source == "triggered" else affected_target(act)
    if s.collapse is not None:
        n = min(MAX_AFFECTED, len(s.picked or []) + len(s.uploads))
        rec.collapse = json.loads(json.dumps(asdict(collapse_config(act, n))))
    rec.added, rec.rejected = sorted(int(i) for i in s.added), sorted(int(i) for i in s.rejected)
    rec.approved = None if s.approve_undecided else sorted(int(i) for i in s.approved)
    if s.rounds is not None:
        rec.round, rec.prior = int(s.rounds.n), [int(i) for i in s.rounds.removed.tolist()]
    rec.unlearning = list(s.runs)
    if s.oracle is not None and s.oracle.sig == act.model_key:
        rec.oracle = dict(s.oracle.value)
    return rec


def _comparable(rec: Investigation) -> dict:
    d = rec.to_json()
    for k in ("created", "updated", "name"):
        d.pop(k, None)
    return json.loads(json.dumps(d, default=str))


def save() -> None:
    """Write the session's investigation if it changed (creating it once there is a model)."""
    s = session()
    if (s.inv_id is None and s.active is None) or s.hold or s.restoring:
        return  # never overwrite a record with a half-restored session
    try:
        st_store = store()
        if s.inv_id is None:
            s.inv_id = st_store.create(None, scenario=s.active.scenario.as_dict())
        elif not st_store.exists(s.inv_id):
            return  # deleted meanwhile (from another tab): nothing to write into
        current = st_store.load(s.inv_id)
        rec = snapshot(s, s.inv_id, current.name)
        if _comparable(rec) != s.saved:
            rec.created = current.created
            rec = st_store.save(rec)
            s.saved, s.saved_stamp = _comparable(rec), rec.updated
        st.query_params[PARAM] = s.inv_id
    except InvestigationError as err:
        st.toast(f"The investigation could not be saved: {err}", icon=":material/error:")
    except OSError as err:
        log.exception("saving investigation %s", s.inv_id)
        st.toast(f"The investigation could not be saved ({err.strerror or err}).", icon=":material/error:")


# -- record -> session ------------------------------------------------------------------------------
def bind() -> None:
    """Make the session show the investigation named in the URL (restoring it when needed)."""
    s = session()
    # A page link drops the query string, and the browser sends that click while a reopen may
    # still run (it cuts the reopen short): without the id in the URL, the session's own id —
    # the one being reopened first — says which record to show, and an unfinished reopen resumes.
    wanted = st.query_params.get(PARAM) or s.restoring or s.inv_id
    if not wanted:
        return
    if st.query_params.get(PARAM) != wanted:
        st.query_params[PARAM] = wanted
    st_store = store()
    try:
        rec = st_store.load(wanted)
    except InvestigationError as err:
        st.warning(f"Investigation {wanted!r} cannot be opened: {err}. Starting a new one.")
        del st.query_params[PARAM]
        if s.inv_id == wanted:
            start_new()
        return
    if s.inv_id == wanted and s.saved_stamp == rec.updated and s.restoring != wanted:
        return
    restore(rec)  # also when a restore of this session was cut short by a rerun


def start_new() -> None:
    """A fresh session (default settings, nothing trained), not bound to any record."""
    ss = st.session_state
    for key in setting_keys():
        ss.pop(key, None)
    ss[SESSION] = Session()
    init_state()
    if PARAM in st.query_params:
        del st.query_params[PARAM]


def restore(rec: Investigation) -> None:
    """Rebuild the session from a record; heavy results come back from the artefact cache."""
    log.info("reopening %s (%s)", rec.id, rec.status)
    ss = st.session_state
    start_new()
    s = session()
    s.inv_id, s.saved, s.saved_stamp = rec.id, _comparable(rec), rec.updated
    s.restoring = rec.id  # cleared once the session is whole (a rerun may cut the rebuild short)
    st.query_params[PARAM] = rec.id
    known = set(setting_keys())
    for key, value in rec.settings.items():
        if key in known:
            ss[key] = value
    if rec.transforms:
        ss["col_transforms"] = list(rec.transforms)
    s.runs = list(rec.unlearning)
    ok = True
    if rec.scenario and rec.model_key:
        ok, scn = attempt("Reading the saved scenario", Scenario.from_dict, rec.scenario)
        if ok:
            ok, _ = run_long(f"Reopening {rec.name}", lambda pipe: _rebuild(pipe, rec, scn))
    s.restoring = None
    if not ok:
        log.warning("reopening %s failed; the record is held until a model is activated", rec.id)
        # Never overwrite a record with a half-restored session: it is saved again only once a
        # model is trained or loaded here (``activate``).
        s.hold = True
        st.info("The saved settings are back, but this investigation is not saved again until a model is "
                "trained or loaded on the Scenario page.")


def _rebuild(pipe, rec: Investigation, scn: Scenario) -> None:
    s = session()
    tm = pipe.trained(scn)
    extra = rec.model or {"clean_accuracy": tm.clean_accuracy, "poison_success_rate": tm.poison_success_rate}
    act = Active(scn, rec.mode, tm.key, rec.checkpoint_name, dict(extra))
    s.active = act
    rounds = s.rounds = Rounds(tm, scn.max_rounds)
    s.added, s.rejected = set(rec.added), set(rec.rejected)
    s.approved, s.approve_undecided = set(rec.approved or []), rec.approved is None
    if rec.oracle is not None:
        s.oracle = Keyed(act.model_key, dict(rec.oracle))
    if tm.key != rec.model_key:
        s.notice = ("this model was retrained with the saved settings (the cached one was gone or from an older "
                    "version), so its numbers may differ from the ones saved")
    if rec.affected_target is not None:
        st.session_state["aff_target"] = int(rec.affected_target)
    s.picked = [int(a.index) for a in rec.affected if a.source != "upload" and a.index is not None] or None
    shape = pipe.dataset(scn.data).train.image_shape
    for a in rec.affected:
        if a.source == "upload" and a.sha256:
            up = load_affected_image(store().upload_bytes(rec.id, a.sha256), shape, a.name or "upload")
            s.uploads.append(Upload(a.sha256, a.name or a.sha256[:12], up.image.numpy(), list(up.notes)))
    runs = list(rec.unlearning)
    for n in range(1, rec.round):  # earlier rounds: look with the model the round before unlearned
        done = [r for r in runs if r.round == n]
        if not done:
            break
        rounds.advance(np.asarray(done[-1].forget, dtype=np.int64), _unlearn(pipe, scn, done[-1]))
    if rec.collapse is not None and affected_images(act) is not None:
        cscn = replace(scn, collapse=Scenario.from_dict({**rec.scenario, "collapse": rec.collapse}).collapse)
        aff = affected_images(act)
        result = pipe.collapse(cscn, aff, target_class=affected_target(act), model=rounds.model)
        s.collapse = Keyed(collapse_signature(act, collapse_config(act, len(aff))), result)
        s.collapse_cached = (True, True)
    now = [r for r in runs if r.round == rounds.n]
    if now:
        last = now[-1]
        log.info("reopening %s: unlearning run (%s, %d images)", rec.id, last.method, len(last.forget))
        s.unlearned = Unlearned(_unlearn(pipe, scn, last), list(last.forget), last.method, act.model_key)
    log.info("reopened %s (round %d, %d runs, unlearned %s)", rec.id, rounds.n, len(runs),
                s.unlearned is not None)


def _unlearn(pipe, scn: Scenario, run: UnlearnRun):
    cfg = replace(scn.unlearn, **{k: v for k, v in run.config.items()
                                  if k in {f.name for f in dataclasses.fields(scn.unlearn)}})
    return pipe.unlearn(replace(scn, unlearn=cfg), run.forget)


def record_run(outcome, forget: list[int], config: dict) -> None:
    """Remember an unlearning run (the Unlearn page calls this after each one)."""
    s = session()
    n = s.rounds.n if s.rounds is not None else 1
    run = UnlearnRun(json.loads(json.dumps(config)), [int(i) for i in forget], float(outcome.clean_accuracy),
                     None if outcome.poison_success_rate is None else float(outcome.poison_success_rate), n,
                     float(outcome.seconds), json.loads(json.dumps(outcome.gaussian, default=float)))
    s.runs = [*s.runs, run]


def upload_saved(data: bytes, name: str) -> None:
    """Keep an uploaded affected image's bytes beside the record (so a reopen can decode it again)."""
    s = session()
    if s.inv_id is None:
        save()
    if s.inv_id is not None:
        attempt("Saving the uploaded image", store().put_upload, s.inv_id, data, name)
