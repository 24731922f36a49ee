"""Compare: detection × unlearning methods side by side (the paper's Figure 3 as a live table)."""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd
import streamlit as st

from deltainf_core import ATTACKS, DATASETS, DETECTORS, UNLEARNERS, DataConfig
from deltainf_core.compare import (
    comparisons,
    estimate_cells,
    estimate_text,
    figure_path,
    planned_cells,
    reference_comparison,
    run_comparison,
)
from deltainf_core.figures import DEFAULT_DETECTOR, FIGURE3_UNLEARNER, comparison_image
from pages import ui

ss = st.session_state
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where this app's comparisons are written (and read first); the ones shipped with the
# repository (bench/results/) are the reference a run here is read against.
RESULTS = os.environ.get("DELTAINF_RESULTS") or os.path.join(ROOT, "results")
SHIPPED = os.path.join(ROOT, "bench", "results")
PERCENT = ("psr_before", "psr_after", "acc_before", "acc_after", "acc_change", "oracle_acc", "oracle_psr",
           "precision", "recall")
LABELS = {
    "origin": "Run", "attack": "Attack", "detector": "Detector", "unlearner": "Unlearning",
    "psr_before": "PSR before", "psr_after": "PSR after", "success": "PSR < 5%",
    "acc_before": "Accuracy before", "acc_after": "Accuracy", "acc_change": "Δ accuracy",
    "oracle_acc": "Oracle accuracy", "oracle_psr": "Oracle PSR", "n_flagged": "Flagged", "precision": "Precision",
    "recall": "Recall", "rounds": "Rounds", "unlearn_seconds": "Unlearning time", "seconds": "Cell time",
    "time_vs_eu": "Time vs EU", "n_hit": "Targets hit", "n_targets": "Targets", "error": "Why it failed",
}
# The columns shown at first, narrow enough for a 1,280 px window; the rest on request.
MAIN = ("origin", "attack", "detector", "unlearner", "psr_after", "success", "acc_after", "acc_change", "n_flagged",
        "precision", "recall", "error")
FORMATS = {"acc_change": "%+.1f pt", "unlearn_seconds": "%.0f s", "seconds": "%.0f s", "time_vs_eu": "%.2f×",
           "n_flagged": "%d", "rounds": "%d", "n_hit": "%d", "n_targets": "%d"}


def runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def table(tables: list[tuple[str, dict]]) -> pd.DataFrame:
    """The rows of several comparisons in one frame, each marked by where it was measured."""
    rows = [{"origin": origin, **{k: v for k, v in r.items() if k != "targets"}}  # per-target runs: JSON only
            for origin, data in tables for r in data["rows"]]
    df = pd.DataFrame(rows)
    for col in PERCENT:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce") * 100.0
    return df


def origin_of(shipped: bool) -> str:
    """A row's origin, short enough for its column: where it was measured (the caption says when)."""
    return "reference" if shipped else "here"


def show(tables: list[tuple[str, str, dict, bool]]) -> None:
    """One table of every shown comparison (origin first), then each one's figure."""
    first = tables[0][2]
    dataset = os.path.basename(os.path.normpath(str(first.get("dataset") or "?")))  # a folder: its name
    st.subheader(f"{dataset}" + (f" · {first['model']}" if first.get("model") else ""))
    for path, origin, data, shipped in tables:
        where = os.path.relpath(path, ROOT)
        when = str(data.get("created", "")).replace("T", " ")[:16] or "earlier"
        before = {r["attack"]: r["psr_before"] for r in data["rows"] if r.get("psr_before") is not None}
        st.caption(f"**{origin}**: " + ("shipped with the repository, the reference a comparison run here is read "
                                        "against" if shipped else "run on this machine")
                   + f" · measured {when} · {where} · {runs(len(data['rows']))}"
                   + (" · PSR before unlearning: " + ", ".join(f"{a} {100 * v:.1f}%" for a, v in before.items())
                      if before else ""))
    df = table([(origin, data) for _, origin, data, _ in tables])
    every = st.toggle("Every column", key="cmp_all_columns", help="oracle, rounds, unlearning time and more")
    shown = [c for c in MAIN if c in df and (c != "error" or df[c].notna().any())]
    shown += [c for c in df.columns if every and c not in shown]
    config = {c: st.column_config.NumberColumn(LABELS.get(c, c), format="%.1f%%", width="small")
              for c in PERCENT if c in df}
    for c, fmt in FORMATS.items():
        if c in df:
            config[c] = st.column_config.NumberColumn(LABELS.get(c, c), format=fmt, width="small")
    for c in df.columns:
        config.setdefault(c, st.column_config.Column(LABELS.get(c, c.replace("_", " "))))
    config["origin"] = st.column_config.TextColumn(LABELS["origin"], width="small")
    if "success" in df:
        config["success"] = st.column_config.CheckboxColumn(LABELS["success"], width="small",
                                                            help="the run succeeded: PSR after unlearning below 5%")
    st.dataframe(df, column_config=config, column_order=shown, hide_index=True, width="stretch")
    tabs = st.tabs([f"Figure: {origin}" for _, origin, _, _ in tables])
    for tab, (path, _, data, _) in zip(tabs, tables, strict=True):
        with tab:
            ok, image = ui.attempt("Drawing the comparison", comparison_image, data)
            if ok:
                st.image(image, width="stretch" if image.width > 1000 else "content")
            elif figure_path(path, data, ROOT):
                st.image(figure_path(path, data, ROOT))
            if data.get("markdown"):
                with st.expander("As Markdown"):
                    st.code(data["markdown"], language="markdown")


def launcher(expanded: bool) -> bool:
    """The run form; True when a comparison finished in this rerun (a new result file exists)."""
    attacks = ATTACKS.names(has_success_rate=True)
    choices = {"cmp_attacks": (attacks, attacks[:1]), "cmp_detectors": (DETECTORS.names(), DETECTORS.names()),
               "cmp_unlearners": (UNLEARNERS.names(), [FIGURE3_UNLEARNER])}
    for key, (options, default) in choices.items():  # first visit, or a method that left the registry
        ss[key] = [n for n in (ss.get(key) or default) if n in options]
    if ss.get("cmp_dataset") not in DATASETS.names():
        ss["cmp_dataset"] = DataConfig.dataset
    with st.expander("Run a new comparison", expanded=expanded):
        a, b = st.columns(2)
        a.selectbox("Dataset", DATASETS.names(), **ui.keep("cmp_dataset"))
        b.number_input("Max training images (0 = all)", min_value=0, step=500, **ui.keep("cmp_max_train"))
        st.multiselect("Attacks", attacks, **ui.keep("cmp_attacks"))
        st.multiselect("Detectors", DETECTORS.names(), **ui.keep("cmp_detectors"))
        st.multiselect("Unlearning methods", UNLEARNERS.names(), **ui.keep("cmp_unlearners"))
        st.caption(f"Figure 3 unlearns every detector's set with {FIGURE3_UNLEARNER}; Figure 4 runs every chosen "
                   f"unlearner on {DEFAULT_DETECTOR}'s set.")
        if any(ATTACKS.trait(a, "per_target") for a in ss.get("cmp_attacks", [])):
            st.number_input("Targets per one-target attack (one attack run each; PSR = share hit)", min_value=1,
                            max_value=20, **ui.keep("cmp_brew_targets"))
        cells = planned_cells(list(ss["cmp_attacks"]), list(ss["cmp_detectors"]), list(ss["cmp_unlearners"]))
        guess = estimate_text(estimate_cells(cells, ss["cmp_dataset"], [RESULTS, SHIPPED]))
        st.caption(f"{len(cells)} cell{'s' if len(cells) != 1 else ''} (one investigation each; cached steps are "
                   "reused)" + (f" · {guess}" if guess else ""))
        if st.button("Run comparison", type="primary", icon=":material/play_arrow:", key="cmp_run"):
            ok, base = ui.attempt("Reading the settings", comparison_base)
            if not ok:
                return False
            ok, _ = ui.run_long(
                "Comparing methods", lambda pipe: run_comparison(
                    base, list(ss["cmp_attacks"]), list(ss["cmp_detectors"]), list(ss["cmp_unlearners"]),
                    progress=pipe.progress, out_dir=RESULTS, pipeline=pipe,
                    brew_targets=int(ss["cmp_brew_targets"])))
            if ok:
                st.success("Comparison finished: its rows are in the table below, beside the shipped reference.")
            return ok
    return False


def comparison_base():
    """The scenario page's settings (epochs, seed, influence, copies) on the chosen dataset."""
    scn = ui.scenario_from_widgets()
    data = replace(scn.data, dataset=ss["cmp_dataset"], data_dir=None, max_train=int(ss["cmp_max_train"]) or None)
    return replace(scn, data=data)


def shown() -> list[tuple[str, str, dict, bool]]:
    """(path, origin, result, shipped): the newest comparison run here, then the shipped reference on
    its dataset (the reference alone when nothing has run here)."""
    here = comparisons([RESULTS])
    out = []
    if here:
        path, data, _ = here[0]
        out.append((path, origin_of(False), data, False))
    ref = reference_comparison(SHIPPED, str(out[0][2].get("dataset")) if out else None)
    if ref is not None:
        out.append((ref[0], origin_of(True), ref[1], True))
    return out


def render() -> None:
    ui.through_app()
    st.title("Compare methods")
    st.caption("Detection methods × unlearning methods on the same attacks: poison success rate and clean "
               "accuracy before/after, flagged-set precision and recall.")
    tables = shown()
    launcher(expanded=not any(not shipped for *_, shipped in tables))
    tables = shown()
    if not tables:
        st.info("No comparison yet: run one above or with `python -m deltainf_core compare`; results appear "
                "here from `results/compare-*.json`.")
        return
    if tables[0][3] is False and len(tables) == 1:
        st.caption("No comparison shipped with the repository is on this dataset, so there is no reference beside it.")
    show(tables)


render()
