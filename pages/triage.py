"""Step 4 · Triage: review the flagged training images, approve or reject them, export the list."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import streamlit as st

from deltainf_core import DETECTORS, CollapseResult, DetectConfig, precision_recall
from deltainf_core.collapse import describe_checks
from deltainf_core.collapse.label_consistency import attack_breaking_transforms
from deltainf_core.figures import POISON, faded, framed, hex_to_rgb
from deltainf_core.investigations import approved_csv, decisions_for, read_approved_list
from deltainf_core.report import evidence_text
from pages import ui
from pages.ui.evidence import render_flagged_evidence
from pages.ui.report import report_button

ss = st.session_state
PAGE_SIZE = 32
COLUMNS = 8
REJECTED = (150, 150, 150)  # grey frame of a rejected tile (the image itself is washed out)


def _set_all(indices: list[int], approve: bool) -> None:
    s = ui.session()
    s.rejected = s.rejected - set(indices) if approve else s.rejected | set(indices)


def _toggle(index: int, key: str) -> None:
    _set_all([index], bool(ss[key]))


def run_detector(act: ui.Active, detector: str) -> None:
    aff = ui.affected_images(act)
    if aff is None:
        st.error("Pick an affected image first: every detector here explains one.")
        return
    scn = replace(act.scenario, detect=DetectConfig(detector=detector, params=asdict(ui.rule_params(detector))),
                  collapse=ui.collapse_config(act, len(aff)))
    model = ui.rounds(act).model
    ok, det = ui.run_long(f"Running {detector}",
                          lambda pipe: pipe.detect(scn, aff, ui.affected_target(act), model))
    if ok:
        s = ui.session()
        s.detections = {**s.detections, detector: ui.Keyed(ui.affected_signature(act), det)}


def rule_controls(act: ui.Active) -> None:
    names = DETECTORS.names()
    if ss["tri_rule"] not in names:
        ss["tri_rule"] = names[0]
    a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
    a.selectbox("Flagging rule", names, **ui.keep("tri_rule"), format_func=lambda n: f"{n} · {DETECTORS.help(n)}")
    rule = ss["tri_rule"]
    ui.param_widgets(DETECTORS.params(rule), f"tri_{rule}", [b, c])
    if not DETECTORS.trait(rule, "collapse_rule") and b.button(f"Run {rule}", type="primary",
                                                                 icon=":material/play_arrow:", key="tri_run"):
        run_detector(act, rule)


def grid(act: ui.Active, cands: np.ndarray, flags: ui.Flags, truth: np.ndarray | None) -> None:
    pipe = ui.pipeline()
    train = pipe.poisoned(act.scenario).train
    poison = set(truth.tolist()) if (truth is not None and ss["tri_show_truth"]) else set()
    flagged = set(flags.flagged.tolist())
    n_pages = max(1, -(-len(cands) // PAGE_SIZE))
    ss["tri_page"] = min(max(1, int(ss["tri_page"])), n_pages)
    top = st.columns([1, 1, 1, 1, 2], vertical_alignment="bottom")
    page = int(ss["tri_page"])
    on_page = [int(i) for i in cands[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]]
    top[0].button("Approve all", on_click=_set_all, args=(cands.tolist(), True), key="tri_all_yes",
                  icon=":material/done_all:")
    top[1].button("Reject all", on_click=_set_all, args=(cands.tolist(), False), key="tri_all_no",
                  icon=":material/remove_done:")
    top[2].button("Approve page", on_click=_set_all, args=(on_page, True), key="tri_page_yes")
    top[3].button("Reject page", on_click=_set_all, args=(on_page, False), key="tri_page_no")
    if n_pages > 1:
        top[4].number_input(f"Page (of {n_pages}, strongest evidence first)", min_value=1, max_value=n_pages,
                            step=1, **ui.keep("tri_page"))
    s = ui.session()
    cols = st.columns(COLUMNS)
    name = flags.statistic_name or "score"
    if name == "votes":
        name = f"votes of {int(flags.info.get('n_copies', 0))}" if flags.info.get("n_copies") else "votes"
    res = ui.current_collapse(act)
    lost = label_breaks(res, flags, on_page)
    # delta_heldout's evidence: what a model retrained without the image calls it
    held_out_call = {int(i): int(c) for i, c in (flags.info or {}).get("heldout_called", [])}
    below_cut = set((flags.info or {}).get("fallback_tail", []))  # its fallback's tail: below delta's own cut
    for j, i in enumerate(on_page):
        key = f"tri_ok_{i}"
        ss[key] = i not in s.rejected
        origin = "" if i in flagged else (" · added" if i in s.added else " · earlier round")
        rejected = i in s.rejected
        if rejected:
            # faded() hands back display bytes; framed() reads [0, 1] values (bytes as such would clip to white)
            tile = framed(faded(train.float_batch([i])[0]) / 255.0, REJECTED)
        else:
            tile = framed(train.float_batch([i])[0], hex_to_rgb(POISON) if i in poison else None)
        with cols[j % COLUMNS]:
            st.image(tile, width="stretch",
                     caption=f"#{i} · {evidence_text(name, float(flags.statistic[i]))}{origin}"
                             + (f" · label lost {lost[i]:.0%}" if i in lost else "")
                             + (f" · without it, a model calls it {train.classes[held_out_call[i]]}"
                                if i in held_out_call else "")
                             + (" · below delta's cut, in its group's tail" if i in below_cut else "")
                             + (" · rejected" if rejected else ""))
            st.checkbox("approve", key=key, on_change=_toggle, args=(i, key),
                        help=f"training image #{i}, label {int(train.labels[i])}; untick to reject it")
    if res is not None:  # why each image was flagged: its collapse per transformation (what the rule used)
        render_flagged_evidence(res, flags.flagged, ui.enabled_transforms(res))


def label_breaks(res: CollapseResult | None, flags: ui.Flags, indices: list[int]) -> dict[int, float]:
    """Each shown image's label-break rate under the transformations that broke the attack: the share
    of its copies the model no longer calls its own label. Shown under every collapse rule (forward
    passes for one page of tiles), since a dirty-label poison loses its label and a clean image of the
    target class keeps it; ``delta_label`` flags by it (BENCHMARKS.md, "Flagging rule")."""
    if res is None or res.label_check is None or res.predicted is None or not indices \
            or not DETECTORS.trait(flags.rule, "collapse_rule"):
        return {}
    breaking = flags.info.get("breaking_transforms")
    if breaking is None:
        breaking = attack_breaking_transforms(res, ui.enabled_transforms(res))
    if not breaking:
        return {}
    rates = res.label_check.break_rates(indices, breaking).mean(axis=1)
    return dict(zip(indices, rates.tolist(), strict=True))


def import_list(act: ui.Active, flags: ui.Flags) -> None:
    """Approve exactly the images of an exported list (CSV or JSON from this page): the rest are rejected."""
    with st.popover("Import an approved list", icon=":material/upload_file:"):
        file = st.file_uploader("approved.csv or approved.json", type=["csv", "json"], key="tri_import_file")
        if file is None:
            return
        n_train = len(ui.pipeline().poisoned(act.scenario).train)
        ok, listed = ui.attempt("Reading the approved list", read_approved_list, file.getvalue(), n_train,
                                file.name, act.model_key,
                                ui.pipeline().poisoned(act.scenario).train.labels.numpy())
        if not ok:
            return
        for note in listed.notes:
            st.info(note, icon=":material/info:")
        added, rejected = decisions_for(ui.candidates(flags), listed.indices)
        st.caption(f"{len(listed.indices)} images listed: {len(added)} will be added to the flagged set, "
                   f"{len(rejected)} flagged images rejected.")
        if st.button("Apply", type="primary", key="tri_import_apply"):
            s = ui.session()
            s.added = (s.added - set(rejected)) | set(added)
            s.rejected = set(rejected)
            st.rerun()


def exports(act: ui.Active, approved: np.ndarray, flags: ui.Flags, truth: np.ndarray | None) -> None:
    train = ui.pipeline().poisoned(act.scenario).train
    table = approved_csv(approved, train.labels.numpy(), flags.statistic, truth)
    collapse_rule = DETECTORS.trait(flags.rule, "collapse_rule")
    payload = {"scenario": act.scenario.as_dict(), "model_key": act.model_key, "rule": flags.rule,
               "params": asdict(ui.rule_params(flags.rule)),
               "transforms": list(ss["col_transforms"]) if collapse_rule else None,
               "approved": approved.tolist(), "n_approved": int(approved.size)}
    a, b, c, _ = st.columns([1, 1, 1, 2])
    with c:
        report_button(act, "tri_report")
    a.download_button("Approved list (CSV)", table, file_name="approved.csv", mime="text/csv",
                      icon=":material/download:", key="tri_csv")
    b.download_button("Approved list (JSON)", json.dumps(payload, indent=2), file_name="approved.json",
                      mime="application/json", icon=":material/download:", key="tri_json")


def render() -> None:
    act = ui.open_step("Triage")
    if act is None:
        return
    rule_controls(act)
    flags = ui.current_flags(act)
    if flags.ready:
        import_list(act, flags)
    if not flags.ready:
        st.info(flags.message[0].upper() + flags.message[1:] + ".")
        if DETECTORS.trait(flags.rule, "collapse_rule"):
            st.page_link("pages/influence_collapse.py", label="Go to Influence collapse",
                         icon=":material/arrow_forward:")
        return
    truth = ui.ground_truth(act)
    cands = ui.candidates(flags)
    approved = ui.approved(act, flags)
    n_train = len(ui.pipeline().poisoned(act.scenario).train)
    m = st.columns(5)
    m[0].metric("Flagged", f"{len(flags.flagged):,}", help=f"{len(flags.flagged) / n_train:.1%} of the training set")
    m[1].metric("Approved", f"{len(approved):,}")
    if truth is not None:
        pf, rf = precision_recall(flags.flagged, truth)
        pa, ra = precision_recall(approved, truth)
        m[2].metric("Precision (approved)", ui.pct(pa), help=f"flagged set: {ui.pct(pf)}")
        m[3].metric("Recall (approved)", ui.pct(ra), help=f"flagged set: {ui.pct(rf)}")
        m[4].toggle("Known poisons", **ui.keep("tri_show_truth"), help="orange frame = a true poison")
    else:
        m[2].metric("Precision", "no ground truth")
    if cands.size == 0:
        st.info("Nothing is flagged under this rule. Lower the threshold, enable more transformations, or add "
                "images from the scatter plot's selection.")
        return
    for said in describe_checks(flags.info).values():
        st.caption(said)
    grid(act, cands, flags, truth)
    exports(act, approved, flags, truth)
    st.page_link("pages/unlearn.py", label=f"Next: unlearn the {len(approved)} approved images",
                 icon=":material/arrow_forward:")


render()
