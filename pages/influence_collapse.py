"""Step 3 · Influence collapse: score the affected images and their transformed copies, explore Δ."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from deltainf_core import TRANSFORMS, precision_recall
from deltainf_core.collapse.evidence import rule_cut
from deltainf_core.collapse.transforms import transform_short, transform_title
from deltainf_core.figures import (
    POISON,
    collapse_figure,
    copies_text,
    framed,
    hex_to_rgb,
    hidden_panel_notes,
    selected_training_indices,
    statistic_title,
    to_display,
)
from deltainf_core.investigations.triage import APPROVED, REJECTED, decide
from pages import ui

ss = st.session_state
MAX_SHOWN = 40


def compute(act: ui.Active, aff, cfg):
    """The collapse job, noting whether factors and scores came from the cache (for the caption)."""
    scn = replace(act.scenario, collapse=cfg)
    model = ui.rounds(act).model

    def job(pipe):
        engine = pipe.engine(scn, model)
        factors_cached = engine.factors_ready()
        result = pipe.collapse(scn, aff, target_class=ui.affected_target(act), model=model)
        ui.session().collapse_cached = (factors_cached, engine.passes == 0)
        return result

    return job


def controls(act: ui.Active, aff) -> None:
    cfg = ui.collapse_config(act, len(aff))
    have = ui.current_collapse(act) is not None
    a, b, c = st.columns([1, 1, 1.2], vertical_alignment="bottom")
    a.number_input("Copies of the first image", min_value=1, max_value=500, step=5, **ui.keep("scn_copies"),
                   help=ui.HELP["collapse"]["n_copies"])
    b.number_input("Copies of each further image", min_value=1, max_value=500, step=5, **ui.keep("scn_copies_extra"),
                   help=ui.HELP["collapse"]["n_copies_extra"], disabled=len(aff) < 2)
    label = "Recompute" if have else "Compute influence collapse"
    n_queries = len(aff) + cfg.n_copies + cfg.n_copies_extra * (len(aff) - 1)
    if c.button(label, type="secondary" if have else "primary", icon=":material/calculate:", key="col_compute",
                help=f"{n_queries} queries scored against every training image in one pass"):
        cfg = ui.collapse_config(act, len(aff))
        ok, result = ui.run_long("Influence collapse", compute(act, aff, cfg))
        if ok:
            cached = ui.session().collapse_cached
            ui.session().collapse = ui.Keyed(ui.collapse_signature(act, cfg), result)
            ui.reset_downstream("collapse")
            ui.session().collapse_cached = cached
            st.rerun()  # redraw the whole page (button label, sidebar) around the new result


def selection_panel(act: ui.Active, idx: np.ndarray, evidence: np.ndarray, name: str) -> None:
    pipe = ui.pipeline()
    train = pipe.poisoned(act.scenario).train
    truth = ui.ground_truth(act)
    poison = set(truth.tolist()) if truth is not None else set()
    st.markdown(f"**{len(idx)} training image{'s' if len(idx) != 1 else ''} selected**"
                + (f" ({len(poison & set(idx.tolist()))} known poisons)" if truth is not None else ""))
    shown = idx[np.argsort(-np.nan_to_num(evidence[idx], nan=-np.inf))][:MAX_SHOWN]
    st.image([framed(train.float_batch([i])[0], hex_to_rgb(POISON) if i in poison else None) for i in shown], width=76,
             caption=[f"#{i} · label {int(train.labels[i])} · {name} {evidence[i]:.2f}" for i in shown])
    if len(idx) > MAX_SHOWN:
        st.caption(f"showing the {MAX_SHOWN} with the largest {name}")
    s = ui.session()
    chosen = {int(i) for i in idx}
    a, b, c = st.columns(3)
    if a.button("Add these to the triage list", icon=":material/playlist_add:", key="col_add",
                help="undecided until you approve or reject them on the Triage page"):
        s.added = s.added | chosen
        st.toast(f"{len(idx)} images added to the triage list")
    if b.button(f"Approve these {len(idx)}", icon=":material/check:", key="col_approve",
                help="added to the triage list where the rule did not flag them, and approved"):
        s.added = s.added | (chosen - set(ui.current_flags(act).flagged.tolist()))
        s.approved, s.rejected = decide(s.approved, s.rejected, chosen, APPROVED)
        st.toast(f"{len(idx)} images approved")
    if c.button(f"Reject these {len(idx)}", icon=":material/close:", key="col_reject",
                help="rejected where they are on the triage list; images not on it stay off it"):
        s.approved, s.rejected = decide(s.approved, s.rejected, chosen, REJECTED)
        st.toast(f"{len(idx)} images rejected")


@st.fragment
def explore(act: ui.Active, result) -> None:
    """Transformation toggles and the scatter; interactions rerun only this part of the page."""
    present = result.queries.transforms_present()
    if ss.get("col_transforms") is None or any(t not in present for t in ss["col_transforms"]):
        ss["col_transforms"] = [t for t in (ss.get("col_transforms") or present) if t in present]
    counts = ui.copies_counted(result)  # the same numbers as the panels' titles
    st.pills("Transformations", present, selection_mode="multi", **ui.keep("col_transforms"),
             format_func=lambda t: copies_text(t, *counts[t]),
             help="toggle which transformed copies count: the rule and the plots update instantly, no rescoring. "
                  "With broken copies only, a copy counts when the model no longer calls it the target.")
    transforms = ui.enabled_transforms(result)
    if not transforms:
        st.warning("Select at least one transformation.")
        return
    truth = ui.ground_truth(act)
    flags = ui.current_flags(act)
    view = ui.collapse_view(result, transforms)
    line = f"**{len(flags.flagged)}** training images flagged by {flags.rule}"
    if truth is not None:
        p, r = precision_recall(flags.flagged, truth)
        line += f" · precision {ui.pct(p)} · recall {ui.pct(r)} ({len(truth)} true poisons)"
    st.markdown(line + " — change the rule on the Triage page.")
    cut = rule_cut(view.result.statistic, view.result.flagged)
    fig = collapse_figure(view.panels, view.result.statistic, view.statistic_name,
                          statistic_title(view.rule, view.statistic_name, cut), cut, truth,
                          flags.flagged if flags.ready else None)
    event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="col_chart",
                            config={"displaylogo": False, "scrollZoom": False})
    st.caption("Each point is a training image: x its influence on the original affected image(s), y how that "
               "influence changed on the transformed, relabelled copies (symmetric log scales). Poisons sit on "
               "the lower right of every panel: they lose on every copy the support they gave the original; clean "
               "images scatter on both sides of zero with no consistent drop. "
               + (f"The dashed line in the first panel is where {view.rule} cut: it flags "
                  f"{view.statistic_name} ≥ {cut:.1f}. " if cut is not None else "")
               + "Drag a box or lasso to see the images and decide them.")
    gray = result.queries.queries.image_shape[0] == 1
    notes = hidden_panel_notes(view.panels, gray)
    off = [transform_title(t) for t in present if t not in transforms]
    if off:
        notes.append(f"Toggled off: {', '.join(off)}.")
    for note in notes:
        st.caption(note)
    idx = selected_training_indices(event)
    if idx.size:
        selection_panel(act, idx, view.result.statistic, view.statistic_name)
    copies_gallery(result, transforms)


def copies_gallery(result, transforms: list[str]) -> None:
    """The first affected image's copies of the toggled transformations, in the copies' own order
    (a toggle adds or removes its copies in place; nothing moves to the end)."""
    q = result.queries
    rows = [i for i in range(len(q.queries)) if q.image_of[i] == 0 and (q.is_original[i] or q.transform[i] in
                                                                         transforms)]
    classes = q.queries.classes
    with st.expander(f"The first affected image and its {len(rows) - 1} selected transformed copies", expanded=True):
        names = ["original" if q.is_original[i] else transform_short(q.transform[i]) for i in rows[:60]]
        st.image([to_display(q.queries.images[i]) for i in rows[:60]], width=72,
                 caption=[f"{name} → {ui.class_name(classes, int(q.queries.labels[i]))}"
                          for name, i in zip(names, rows[:60], strict=True)])
        st.caption("Captions: transformation → the copy's random label (never the attack target). The poisons' "
                   "support for the target vanishes on every copy; a clean image's influence does not move "
                   "consistently.")
        gray = q.queries.image_shape[0] == 1
        same = [transform_title(t) for t in transforms if gray and t in TRANSFORMS
                and TRANSFORMS.trait(t, "identity_on_gray")]
        if same:
            st.caption(f"On these one-channel images {', '.join(same)} leave{'s' if len(same) == 1 else ''} the "
                       "image unchanged: those copies differ from the original only in their label.")


def render() -> None:
    act = ui.open_step("Influence collapse")
    if act is None:
        return
    aff = ui.affected_images(act)
    if aff is None:
        st.info("Pick an affected image first.")
        st.page_link("pages/affected_image.py", label="Go to Affected image", icon=":material/arrow_forward:")
        return
    if ui.rounds(act).n > 1:
        st.info(f"Round {ui.rounds(act).n}: influence is computed on the unlearned model to find what the "
                "previous round missed.")
    controls(act, aff)
    result = ui.current_collapse(act)
    if result is None:
        st.info(f"{len(aff)} affected image{'s' if len(aff) > 1 else ''} ready. Computing fits influence factors "
                "once per model (cached on disk) and scores every copy in one pass.")
        return
    cached = ui.session().collapse_cached or (False, False)
    factors = "factors from cache" if cached[0] else f"factors {result.factor_seconds:.1f}s"
    scores = "scores from cache" if cached[1] else f"scores {result.score_seconds:.1f}s"
    st.caption(f"{len(result.queries.queries)} queries ({result.queries.n_affected} affected images and their "
               f"copies) × {result.scores.shape[1]:,} training images · {factors} · {scores}")
    explore(act, result)
    st.page_link("pages/triage.py", label="Next: triage the flagged images", icon=":material/arrow_forward:")


render()
