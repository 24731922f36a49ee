"""Compare: detection × unlearning methods side by side (the paper's Figure 3 as a live table)."""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd
import streamlit as st

from deltainf_core import ATTACKS, DATASETS, DETECTORS, UNLEARNERS, DataConfig
from deltainf_core.compare import (
    DEFAULT_DETECTOR,
    FIGURE3_UNLEARNER,
    comparisons,
    duration,
    estimate_seconds,
    figure_path,
    n_cells,
    run_comparison,
)
from deltainf_core.figures_png import comparison_image
from pages import ui

ss = st.session_state
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where this app's comparisons are written (and read first); the ones shipped with the
# repository (bench/results/) are shown too, marked as such.
RESULTS = os.environ.get("DELTAINF_RESULTS") or os.path.join(ROOT, "results")
SHIPPED = os.path.join(ROOT, "bench", "results")
PERCENT = ("psr_before", "psr_after", "acc_before", "acc_after", "acc_change", "oracle_acc", "oracle_psr",
           "precision", "recall")
LABELS = {
    "attack": "Attack", "detector": "Detector", "unlearner": "Unlearning", "psr_before": "PSR before",
    "psr_after": "PSR after", "success": "Success (PSR < 5%)", "acc_before": "Accuracy before",
    "acc_after": "Accuracy after", "acc_change": "Accuracy change", "oracle_acc": "Oracle accuracy",
    "oracle_psr": "Oracle PSR", "n_flagged": "Flagged", "precision": "Precision", "recall": "Recall",
    "rounds": "Rounds", "unlearn_seconds": "Unlearning time", "seconds": "Total time", "time_vs_eu": "Time vs EU",
    "n_hit": "Targets hit", "n_targets": "Targets", "error": "Why it failed",
}
FORMATS = {"acc_change": "%+.1f pt", "unlearn_seconds": "%.0f s", "seconds": "%.0f s", "time_vs_eu": "%.2f×",
           "n_flagged": "%d", "rounds": "%d", "n_hit": "%d", "n_targets": "%d"}


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "targets"} for r in rows])  # per-target runs: JSON
    for col in PERCENT:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce") * 100.0
    return df


def show(path: str, data: dict, shipped: bool) -> None:
    dataset = os.path.basename(os.path.normpath(str(data.get("dataset") or "?")))  # a folder: its name
    st.subheader(f"Most recent comparison · {dataset}" + (f" · {data['model']}" if data.get("model") else ""))
    when = str(data.get("created", "")).replace("T", " ")
    where = os.path.relpath(path, ROOT)
    if shipped:
        st.caption(f"Shipped with the repository ({where}, measured {when or 'earlier'}) · {len(data['rows'])} runs. "
                   "A comparison run here takes its place.")
    else:
        st.caption(f"{where} · {when} · {len(data['rows'])} runs")
    df = table(data["rows"])
    config = {c: st.column_config.NumberColumn(LABELS.get(c, c), format="%.1f%%") for c in PERCENT if c in df}
    for c, fmt in FORMATS.items():
        if c in df:
            config[c] = st.column_config.NumberColumn(LABELS.get(c, c), format=fmt)
    for c in df.columns:
        config.setdefault(c, st.column_config.Column(LABELS.get(c, c.replace("_", " "))))
    config["success"] = st.column_config.CheckboxColumn(LABELS["success"])
    st.dataframe(df, column_config=config, hide_index=True, width="stretch")
    ok, image = ui.attempt("Drawing the comparison", comparison_image, data)
    if ok:
        st.image(image)
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
        n = n_cells(list(ss["cmp_attacks"]), list(ss["cmp_detectors"]), list(ss["cmp_unlearners"]))
        guess = estimate_seconds(n, ss["cmp_dataset"], [RESULTS, SHIPPED])
        st.caption(f"{n} cell{'s' if n != 1 else ''} (one investigation each; cached steps are reused)"
                   + ("" if guess is None else f" · about {duration(guess)} going by the last comparison on "
                      "this dataset"))
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
                st.success("Comparison finished; the table below is the new one.")
            return ok
    return False


def comparison_base():
    """The scenario page's settings (epochs, seed, influence, copies) on the chosen dataset."""
    scn = ui.scenario_from_widgets()
    data = replace(scn.data, dataset=ss["cmp_dataset"], data_dir=None, max_train=int(ss["cmp_max_train"]) or None)
    return replace(scn, data=data)


def render() -> None:
    ui.through_app()
    st.title("Compare methods")
    st.caption("Detection methods × unlearning methods on the same attacks: poison success rate and clean "
               "accuracy before/after, flagged-set precision and recall.")
    found = latest()
    if launcher(expanded=found is None):
        found = latest() or found
    if found is None:
        st.info("No comparison yet: run one above or with `python -m deltainf_core compare`; results appear "
                "here from `results/compare-*.json`.")
        return
    path, data, folder = found
    show(path, data, shipped=folder == 1)


def latest() -> tuple[str, dict, int] | None:
    """The newest comparison here or shipped (folder 1 = shipped)."""
    found = comparisons([RESULTS, SHIPPED])
    return found[0] if found else None


render()
