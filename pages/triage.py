"""Step 4 · Triage: sort the flagged training images by their evidence, cut, approve or reject, export."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import streamlit as st

from deltainf_core import DETECTORS, DetectConfig, precision_recall
from deltainf_core.collapse import describe_checks
from deltainf_core.collapse.transforms import transform_short
from deltainf_core.figures import POISON, faded, framed, hex_to_rgb
from deltainf_core.investigations import approved_csv, approved_json, decisions_for, read_approved_list
from deltainf_core.investigations.triage import APPROVED, REJECTED, TRANSFORM_PREFIX, UNDECIDED, decide, page_of
from deltainf_core.report import evidence_text
from pages import ui
from pages.ui.evidence import render_flagged_evidence
from pages.ui.report import report_button
from pages.ui.triage_desk import Desk, bulk_controls, counted_only, desk, page_label_breaks, value_text
from pages.ui.triage_scatter import evidence_scatter

ss = st.session_state
PAGE_SIZES = (8, 24, 48, 96)  # tiles per page; 48 (six rows of eight) by default (Widgets.tri_page_size)
COLUMNS = 8
REJECTED_FRAME = (150, 150, 150)  # grey frame of a rejected tile (the image itself is washed out)
TILE_STATUS = {"approve": APPROVED, "reject": REJECTED}  # a tile's two buttons; neither pressed = undecided
TILE_LABEL = {v: k for k, v in TILE_STATUS.items()}
TILE_TEXT = {"approve": "✓", "reject": "✗"}  # what fits under a tile at 1,280 px (the help says the words)


def _tile(index: int, key: str) -> None:
    """A tile's decision control: approve, reject, or (pressed again) undecided."""
    s = ui.session()
    s.approved, s.rejected = decide(s.approved, s.rejected, [index], TILE_STATUS.get(ss[key], UNDECIDED))


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


def caption(dk: Desk, flags: ui.Flags, i: int, flagged: set[int], classes: tuple[str, ...],
            breaks: dict[int, float]) -> str:
    """A tile's evidence in words: the rule's statistic, the label-break rate, the sort key's value."""
    s = ui.session()
    table = dk.table
    row = int(np.flatnonzero(table.index == i)[0])
    name = flags.statistic_name or "score"
    if name == "votes":
        name = f"votes of {int(flags.info.get('n_copies', 0))}" if flags.info.get("n_copies") else "votes"
    parts = [f"#{i}", evidence_text(name, float(table.statistic[row]))]
    if i in breaks and np.isfinite(breaks[i]):
        parts.append(f"label lost {breaks[i]:.0%}")
    if dk.view.sort.startswith(TRANSFORM_PREFIX):
        parts.append(f"{transform_short(dk.view.sort[len(TRANSFORM_PREFIX):])} "
                     f"{value_text(table, dk.view.sort, i)}")
    held_out_call = {int(a): int(c) for a, c in (flags.info or {}).get("heldout_called", [])}
    if i in held_out_call:  # delta_heldout's evidence: what a model retrained without the image calls it
        parts.append(f"without it, a model calls it {ui.class_name(classes, held_out_call[i])}")
    if i in set((flags.info or {}).get("fallback_tail", [])):
        parts.append("below delta's cut, in its group's tail")
    if i not in flagged:
        parts.append("added" if i in s.added else "earlier round")
    parts.append(APPROVED if i in s.approved else REJECTED if i in s.rejected else UNDECIDED)
    return " · ".join(parts)


def grid(act: ui.Active, dk: Desk, flags: ui.Flags, truth: np.ndarray | None) -> np.ndarray:
    """The view's current page of tiles, each with its decision; returns the page's indices."""
    train = ui.pipeline().poisoned(act.scenario).train
    classes = ui.pipeline().dataset(act.scenario.data).classes
    poison = set(truth.tolist()) if (truth is not None and ss["tri_show_truth"]) else set()
    flagged = set(flags.flagged.tolist())
    if ss.get("tri_page_size") not in PAGE_SIZES:
        ss["tri_page_size"] = 48
    size = int(ss["tri_page_size"])
    on_page, page, n_pages = page_of(dk.order, int(ss["tri_page"]), size)
    ss["tri_page"] = page
    a, b, _ = st.columns([1, 1, 2])
    b.selectbox("Tiles per page", PAGE_SIZES, **ui.keep("tri_page_size"))
    if n_pages > 1:
        a.number_input(f"Page (of {n_pages}, in the order above)", min_value=1, max_value=n_pages, step=1,
                       **ui.keep("tri_page"))
    s = ui.session()
    cut = int(ss.get("tri_cut") or 0)
    first = (page - 1) * size
    if first < cut:
        st.caption(f"Tiles 1–{cut} of this order are above the cut (the slider above); "
                   f"{'the cut falls on this page' if cut < first + size else 'it falls on a later page'}.")
    breaks = page_label_breaks(act, flags, on_page)
    cols = st.columns(COLUMNS)
    for j, i in enumerate(int(x) for x in on_page):
        key = f"tri_dec_{i}"
        ss[key] = TILE_LABEL.get(APPROVED if i in s.approved else REJECTED if i in s.rejected else UNDECIDED)
        if i in s.rejected:
            # faded() hands back display bytes; framed() reads [0, 1] values (bytes as such would clip to white)
            tile = framed(faded(train.float_batch([i])[0]) / 255.0, REJECTED_FRAME)
        else:
            tile = framed(train.float_batch([i])[0], hex_to_rgb(POISON) if i in poison else None)
        rank = first + j + 1
        with cols[j % COLUMNS]:
            st.image(tile, width="stretch", caption=caption(dk, flags, i, flagged, classes, breaks)
                     + (" · ▲ the cut falls below this tile" if rank == cut else ""))
            st.segmented_control(f"Decision on #{i}", list(TILE_STATUS), key=key, on_change=_tile, args=(i, key),
                                 label_visibility="collapsed", format_func=TILE_TEXT.get,
                                 help=f"training image #{i}, label {int(train.labels[i])}: approve (✓) or reject "
                                      "(✗); press again to undo")
    return on_page


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
        st.caption(f"{len(listed.indices)} images listed: all will be approved ({len(added)} of them added to "
                   f"the flagged set) and the other {len(rejected)} candidates rejected.")
        if st.button("Apply", type="primary", key="tri_import_apply"):
            s = ui.session()
            s.added = (s.added - set(rejected)) | set(added)
            s.approved, s.rejected = {int(i) for i in listed.indices}, set(rejected)
            st.rerun()


def exports(act: ui.Active, approved: np.ndarray, flags: ui.Flags, truth: np.ndarray | None) -> None:
    pipe = ui.pipeline()
    train = pipe.poisoned(act.scenario).train
    table = approved_csv(approved, train.labels.numpy(), flags.statistic, truth)
    collapse_rule = DETECTORS.trait(flags.rule, "collapse_rule")
    payload = approved_json(approved, scenario_record(act), act.model_key, flags.rule, None,
                            list(ss["col_transforms"]) if collapse_rule else None, asdict(ui.rule_params(flags.rule)))
    a, b, c, _ = st.columns([1, 1, 1, 2])
    with c:
        report_button(act, "tri_report")
    a.download_button("Approved list (CSV)", table, file_name="approved.csv", mime="text/csv",
                      icon=":material/download:", key="tri_csv", on_click="ignore")
    b.download_button("Approved list (JSON)", payload, file_name="approved.json", mime="application/json",
                      icon=":material/download:", key="tri_json", on_click="ignore")


def scenario_record(act: ui.Active) -> dict:
    """The scenario as exported: the affected test images the app picked and the attack's classes
    as resolved (the widgets leave them to the defaults), not the empty fields of the settings."""
    pipe = ui.pipeline()
    scn = act.scenario.as_dict()
    if act.mode == "train":
        acfg = pipe.attack_config(act.scenario)
        scn["attack"] = {**scn["attack"], "victim_class": acfg.victim_class, "target_class": acfg.target_class}
    scn["affected_test_index"] = ui.affected_test_indices(act)
    return scn


def metrics(act: ui.Active, flags: ui.Flags, approved: np.ndarray, truth: np.ndarray | None) -> None:
    s = ui.session()
    cands = ui.candidates(flags)
    n_train = len(ui.pipeline().poisoned(act.scenario).train)
    rejected = int(np.isin(cands, list(s.rejected)).sum())
    m = st.columns(6 if truth is not None else 5)
    m[0].metric("Flagged", f"{len(flags.flagged):,}", help=f"{len(flags.flagged) / n_train:.1%} of the training set")
    m[1].metric("Approved", f"{len(approved):,}", help="only approved images are unlearned")
    m[2].metric("Rejected", f"{rejected:,}")
    m[3].metric("Undecided", f"{len(cands) - len(approved) - rejected:,}",
                help="nothing is approved until you say so: one tile at a time, a filter, a cut or a selection")
    if truth is not None:
        pf, rf = precision_recall(flags.flagged, truth)
        pa, ra = precision_recall(approved, truth) if len(approved) else (None, 0.0)
        m[4].metric("Precision", ui.pct(pa), help=f"of the approved images (the flagged set's: {ui.pct(pf)})")
        m[5].metric("Recall", ui.pct(ra), help=f"of the approved images (the flagged set's: {ui.pct(rf)})")
    else:
        m[4].metric("Precision", "no ground truth")


def render() -> None:
    act = ui.open_step("Triage")
    if act is None:
        return
    rule_controls(act)
    flags = ui.current_flags(act)
    if not flags.ready:
        st.info(flags.message[0].upper() + flags.message[1:] + ".")
        if DETECTORS.trait(flags.rule, "collapse_rule"):
            st.page_link("pages/influence_collapse.py", label="Go to Influence collapse",
                         icon=":material/arrow_forward:")
        return
    import_list(act, flags)
    truth = ui.ground_truth(act)
    cands = ui.candidates(flags)
    metrics(act, flags, ui.approved(act, flags), truth)
    if cands.size == 0:
        st.info("Nothing is flagged under this rule. Lower the threshold, enable more transformations, or add "
                "images from the scatter plot's selection.")
        return
    for said in describe_checks(flags.info).values():
        st.caption(said)
    classes = ui.pipeline().dataset(act.scenario.data).classes
    head, toggle = st.columns([3, 1], vertical_alignment="bottom")
    head.subheader("Sort, filter and decide")
    if truth is not None:
        toggle.toggle("Show known poisons", **ui.keep("tri_show_truth"), help="orange frame = a true poison")
    dk = desk(act, flags, classes)
    bulk_controls(dk)
    evidence_scatter(dk, flags, truth)
    on_page = grid(act, dk, flags, truth)
    res = ui.current_collapse(act)
    if res is not None:  # why each image was flagged: its collapse per transformation (what the rule used)
        render_flagged_evidence(res, on_page, ui.enabled_transforms(res), kept_only=counted_only(flags),
                                breaking=flags.info.get("breaking_transforms"))
    approved = ui.approved(act, flags)
    exports(act, approved, flags, truth)
    st.page_link("pages/unlearn.py", label=f"Next: unlearn the {len(approved)} approved images",
                 icon=":material/arrow_forward:")


render()
