"""The stakeholder report of the session's investigation (``deltainf_core.report``), as a download."""

from __future__ import annotations

import re

import numpy as np
import streamlit as st

from deltainf_core import precision_recall
from deltainf_core.collapse.evidence import rule_cut
from deltainf_core.pipeline.results import scenario_summary
from deltainf_core.report import ReportData, ReportImage, build_report, copy_images, flagged_images
from deltainf_core.unlearning.verdict import unlearning_verdict

from .investigation import (
    affected_images,
    affected_test_indices,
    approved,
    candidates,
    collapse_view,
    current_collapse,
    current_flags,
    enabled_transforms,
    ground_truth,
    has_attack_gallery,
    trained,
)
from .jobs import attempt, log, pipeline
from .state import Active, session

LIMIT = 96
"""Flagged images shown in the report's grid (strongest first)."""


def report_data(act: Active) -> ReportData:
    """What the session shows, in the report's terms: the same numbers as the pages."""
    s, pipe = session(), pipeline()
    scn = act.scenario
    tm = trained(act)
    poisoned = pipe.poisoned(scn)
    truth = ground_truth(act)
    summary = {**scenario_summary(pipe, scn), "config": scn.as_dict()}
    flags = current_flags(act)
    summary["detector"] = flags.rule
    results: dict = {"scenario": summary, "poisoned": {
        "clean_accuracy": tm.clean_accuracy, "poison_success_rate": tm.poison_success_rate,
        "n_train": len(poisoned.train), "n_poisons": len(poisoned.poison_indices) if truth is not None else None}}
    keep = approved(act, flags) if flags.ready else np.zeros(0, dtype=np.int64)
    detection = {"method": flags.rule, "flagged": flags.flagged.tolist(), "n_flagged": int(flags.flagged.size)}
    if truth is not None and flags.ready:
        detection["precision"], detection["recall"] = precision_recall(flags.flagged, truth)
    results["detection"] = detection
    data = ReportData(results, name=_name(), poisons=truth, flagged=flags.flagged if flags.ready else None)
    aff = affected_images(act)
    if aff is not None:
        captions = _affected_captions(act)
        data.affected = [ReportImage(img, captions[k] if k < len(captions) else f"affected #{k + 1}")
                         for k, img in enumerate(aff.images)]
        tests = affected_test_indices(act)
        results["affected_test_indices"] = tests
        if tests:
            results["affected_test_index"] = tests[0]
    result = current_collapse(act)
    data.one_channel = poisoned.train.image_shape[0] == 1
    if result is not None:
        transforms = enabled_transforms(result)
        data.copies = copy_images(result.queries, transforms, limit=LIMIT // 2)
        if transforms:
            view = collapse_view(result, transforms)
            data.panels, data.statistic, data.statistic_name = view.panels, view.result.statistic, view.statistic_name
            data.rule = view.rule
            data.threshold = rule_cut(view.result.statistic, view.result.flagged)
    cands = candidates(flags) if flags.ready else keep
    if cands.size:
        order = np.argsort(-np.nan_to_num(flags.statistic[cands], nan=-np.inf, posinf=1e12), kind="stable")
        name = flags.statistic_name or "score"
        data.flagged_images = flagged_images(poisoned.train, cands[order], flags.statistic, name, truth,
                                             sorted(s.rejected), LIMIT)
    data.n_flagged_total, data.n_approved = int(cands.size), int(keep.size)
    data.n_rejected = len(set(cands.tolist()) & s.rejected)
    data.n_undecided = int(cands.size) - data.n_approved - data.n_rejected
    un = s.unlearned
    if un is not None:
        o = un.outcome
        oracle = s.oracle.value if s.oracle is not None and s.oracle.sig == act.model_key else {}
        words = unlearning_verdict(o.method, o.info, o.poison_success_rate, tm.poison_success_rate,
                                   oracle.get("poison_success_rate"), o.clean_accuracy - tm.clean_accuracy)
        results["unlearned"] = {"method": o.method, "clean_accuracy": o.clean_accuracy,
                                "poison_success_rate": o.poison_success_rate, "removed": words["removed"],
                                "verdict": words["text"], "oracle_clean_accuracy": oracle.get("clean_accuracy"),
                                "oracle_poison_success_rate": oracle.get("poison_success_rate")}
        summary["unlearn"] = o.method
    return data


def _affected_captions(act: Active) -> list[str]:
    s = session()
    source = pipeline().poisoned(act.scenario).psr_source_indices if has_attack_gallery(act) else None
    picked = [f"test #{int(source[i]) if source is not None else int(i)}" for i in s.picked or []]
    return picked + [u.name for u in s.uploads]


def _name() -> str:
    from .persist import store

    inv_id = session().inv_id
    if inv_id is None:
        return ""
    ok, rec = attempt("Reading the investigation", store().load, inv_id)
    return rec.name if ok else ""


def report_button(act: Active, key: str) -> None:
    """A download button for the report. What it shows is gathered now (the session is only
    readable during the script run); the figures are drawn when the button is clicked, and the
    click does not rerun the page (a rerun would redo the page's work beside the drawing)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", _name() or "investigation").strip("-") or "investigation"
    ok, data = attempt("Gathering the report", report_data, act)
    if not ok:
        return

    def build() -> str:
        try:
            return build_report(data)
        except Exception:  # noqa: BLE001 - runs outside the script run: log it, hand over a page that says so
            log.exception("building the report")
            return "<!DOCTYPE html><title>Report</title><p>The report could not be built; see the server log.</p>"

    st.download_button("Report (HTML)", data=build, file_name=f"deltainf-report-{name}.html", mime="text/html",
                       icon=":material/summarize:", key=key, on_click="ignore",
                       help="one self-contained page for stakeholders: figures embedded, opens offline")
