"""Step 2 · Affected image: pick the misbehaving test image(s), or upload one."""

from __future__ import annotations

import numpy as np
import streamlit as st

from deltainf_core.figures import to_display
from deltainf_core.uploads import load_affected_image
from pages import ui

ss = st.session_state
PAGE_SIZE = 24
COLUMNS = 8


def _toggle(index: int, key: str) -> None:
    """Checkbox callback: keep the picks ordered by when images were picked."""
    s = ui.session()
    selected = list(s.picked or [])
    if ss[key] and index not in selected:
        if len(selected) + len(s.uploads) >= ui.MAX_AFFECTED:
            ss[key] = False
            s.pick_notice = f"at most {ui.MAX_AFFECTED} affected images are scored together; unpick one first"
            return
        selected.append(index)
    elif not ss[key] and index in selected:
        selected.remove(index)
    s.picked = selected
    ui.reset_downstream("affected")


def pick_advice() -> str:
    """What to do next, given how many images are picked already (uploads included)."""
    s = ui.session()
    n, most = len(s.picked or []) + len(s.uploads), ui.MAX_AFFECTED
    if n == 0:
        return f"Pick one, or several (up to {most}, all scored in one pass): more images shrink the flagged set."
    if n < most:
        return (f"{n} picked; add up to {most - n} more (all {most} are scored in one pass): more images shrink "
                "the flagged set.")
    return f"{n} picked, the most scored together: untick one to use another instead."


def gallery(act: ui.Active, indices: np.ndarray, images, labels: list[int], preds: list[int],
            sources: list[int], source_name: str) -> None:
    """Paginated grid of candidate images, each with a 'use' checkbox."""
    n_pages = max(1, -(-len(indices) // PAGE_SIZE))
    if n_pages > 1:
        ss["aff_page"] = min(max(1, int(ss["aff_page"])), n_pages)
        st.columns([1, 3])[0].number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, step=1,
                                           **ui.keep("aff_page"))
    page = int(ss["aff_page"]) if n_pages > 1 else 1
    start = (page - 1) * PAGE_SIZE
    notice, ui.session().pick_notice = ui.session().pick_notice, None
    if notice:  # beside the picker that caused it (a sixth pick), not at the top of the page
        st.warning(notice[0].upper() + notice[1:] + ".", icon=":material/block:")
    selected = set(ui.session().picked or [])
    cols = st.columns(COLUMNS)
    for j, pos in enumerate(range(start, min(len(indices), start + PAGE_SIZE))):
        idx = int(indices[pos])
        key = f"aff_use_{source_name}_{idx}"
        ss[key] = idx in selected
        with cols[j % COLUMNS]:
            st.image(to_display(images[pos]), width="stretch",
                     caption=f"#{sources[pos]} · {labels[pos]}→{preds[pos]}")
            st.checkbox("use", key=key, on_change=_toggle, args=(idx, key),
                        help=f"test image #{sources[pos]}: true class {labels[pos]}, predicted {preds[pos]}")


def attack_gallery(act: ui.Active) -> None:
    pipe = ui.pipeline()
    scn = act.scenario
    poisoned = pipe.poisoned(scn)
    ok, cands = ui.attempt("Finding affected images", ui.affected_candidates, act)
    if not ok:
        return
    if ui.session().picked is None:
        ui.session().picked = [int(i) for i in cands[: int(ss["scn_max_affected"])]]
    classes = pipe.dataset(scn.data).classes
    st.markdown(
        f"**{len(cands)} of {len(poisoned.psr_set)}** triggered test images of class "
        f"{ui.class_name(classes, poisoned.victim_class)} are predicted as the attacker's target "
        f"**{ui.class_name(classes, poisoned.target_class)}**. {pick_advice()}"
    )
    if len(cands) == 0:
        st.warning("The attack did not take hold on any test image: there is nothing to trace. Train longer, "
                   "raise the poisoned fraction, or upload an image below.")
        return
    shown = poisoned.psr_set.subset(cands)
    images, labels = shown.images, shown.labels.tolist()
    preds = [int(poisoned.target_class)] * len(cands)
    sources = [int(poisoned.psr_source_indices[i]) for i in cands]
    gallery(act, cands, images, labels, preds, sources, "psr")


def misclassified_gallery(act: ui.Active) -> None:
    """No known attack: show test images the model gets wrong, grouped by the predicted class."""
    pipe = ui.pipeline()
    scn = act.scenario
    test = pipe.dataset(scn.data).test
    ok, pred = ui.attempt("Predicting the test set", ui.test_predictions, act)
    if not ok:
        return
    wrong = pred != test.labels.numpy()
    if not wrong.any():
        st.info("The model classifies every test image correctly; upload the image that misbehaves below.")
        return
    counts = np.bincount(pred[wrong], minlength=test.num_classes)
    classes = list(range(test.num_classes))
    if ss.get("aff_target") not in classes:
        ss["aff_target"] = int(np.argmax(counts))
    st.selectbox("Suspected attack target (the class wrong predictions go to)", classes, **ui.keep("aff_target"),
                 format_func=lambda c: f"{ui.class_name(test.classes, c)} · {counts[c]} wrong predictions",
                 on_change=ui.reset_downstream, args=("affected",))
    target = int(ss["aff_target"])
    idx = np.flatnonzero(wrong & (pred == target))
    s = ui.session()
    s.picked = [i for i in (s.picked if s.picked is not None else idx[:1].tolist()) if pred[i] == target]
    st.markdown(f"**{len(idx)}** test images are wrongly predicted as {ui.class_name(test.classes, target)}. "
                + pick_advice())
    shown = test.subset(idx)
    gallery(act, idx, shown.images, shown.labels.tolist(), pred[idx].tolist(), idx.tolist(), "test")


def upload_section(act: ui.Active) -> None:
    pipe = ui.pipeline()
    splits = pipe.dataset(act.scenario.data)
    shape = splits.train.image_shape
    st.subheader("Or upload the misbehaving image")
    st.caption(f"PNG, JPEG, BMP, GIF, TIFF or WebP. It is converted to the model's input ({shape[0]} channel"
               f"{'s' if shape[0] > 1 else ''}, {shape[2]}×{shape[1]} px) with a note for every change; "
               "images with see-through pixels are refused (flatten them first).")
    file = st.file_uploader("Affected image", type=["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"],
                            key="aff_upload_file")
    if file is not None:
        data = file.getvalue()
        ok, up = ui.attempt("Reading the image", load_affected_image, data, shape, file.name)
        if ok:
            for note in up.notes:
                st.info(note, icon=":material/info:")
            s = ui.session()
            sha = ui.sha256(data)
            if sha not in {u.sha for u in s.uploads}:
                if len(s.picked or []) + len(s.uploads) >= ui.MAX_AFFECTED:
                    st.warning(f"Already {ui.MAX_AFFECTED} affected images; unpick one to add this upload.")
                else:
                    s.uploads = [*s.uploads, ui.Upload(sha, file.name, up.image.numpy(), list(up.notes))]
                    ui.reset_downstream("affected")
                    ui.upload_saved(data, file.name)
    uploads = ui.session().uploads
    if uploads:
        preds = pipe.predict(act.scenario, [u.image for u in uploads], ui.trained(act))
        cols = st.columns(COLUMNS)
        for j, (u, p) in enumerate(zip(uploads, preds, strict=True)):
            with cols[j % COLUMNS]:
                st.image(to_display(u.image), caption=f"{u.name} → {p}", width="stretch")
                if st.button("remove", key=f"aff_rm_{u.sha[:12]}"):
                    ui.session().uploads = [v for v in uploads if v.sha != u.sha]
                    ui.reset_downstream("affected")
                    st.rerun()


def summary(act: ui.Active) -> None:
    aff = ui.affected_images(act)
    st.divider()
    if aff is None:
        st.info("No affected image picked yet.")
        return
    pred = ui.pipeline().predict(act.scenario, aff, ui.trained(act)).tolist()
    target = ui.affected_target(act)
    classes = aff.classes
    st.markdown(f"**Using {len(aff)} affected image{'s' if len(aff) > 1 else ''}**, explained as predictions of "
                f"class {ui.class_name(classes, target if target is not None else pred[0])}.")
    st.image([to_display(img) for img in aff.images], width=84, caption=[f"predicted {p}" for p in pred])
    if target is not None and any(p != target for p in pred):
        st.warning("Some picked images are not predicted as the target class; influence collapse still "
                   "explains the target prediction for each of them.")
    st.page_link("pages/influence_collapse.py", label="Next: influence collapse", icon=":material/arrow_forward:")


def render() -> None:
    act = ui.open_step("Affected image")
    if act is None:
        return
    notice, ui.session().notice = ui.session().notice, None
    if notice:
        st.warning(notice[0].upper() + notice[1:] + ".")
    if ui.has_attack_gallery(act):
        attack_gallery(act)
    else:
        misclassified_gallery(act)
    upload_section(act)
    summary(act)


render()
