"""Step 5 · Unlearn: remove the approved images' effect and compare before/after."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import streamlit as st

from deltainf_core import SUCCESS_PSR, UNLEARNERS, checkpoint_bytes
from deltainf_core.figures import before_after_figure
from deltainf_core.metrics import still_affected
from deltainf_core.unlearning.verdict import unlearning_verdict
from pages import ui
from pages.ui.report import report_button

ss = st.session_state


def run(act: ui.Active, forget: list[int]) -> None:
    unlearner = ss["unl_method"]
    epochs = int(ss["unl_epochs"]) or None
    scn = replace(act.scenario, unlearn=replace(act.scenario.unlearn, method=unlearner, epochs=epochs))
    ok, outcome = ui.run_long(f"Unlearning with {unlearner}", lambda pipe: pipe.unlearn(scn, forget))
    if ok:
        ui.session().unlearned = ui.Unlearned(outcome, list(forget), unlearner, act.model_key)
        ui.record_run(outcome, list(forget), asdict(scn.unlearn))


def oracle(act: ui.Active) -> None:
    ok, out = ui.run_long("Retraining without exactly the true poisons", lambda pipe: pipe.oracle(act.scenario))
    if ok and out is not None:
        ui.session().oracle = ui.Keyed(act.model_key, {"clean_accuracy": out.clean_accuracy,
                                                       "poison_success_rate": out.poison_success_rate})
        st.rerun()  # the button goes: its result is on the page now


def verdict(act: ui.Active, outcome, tm) -> None:
    """The run's outcome in words (the same sentence the results JSON carries)."""
    oracle_value = oracle_numbers(act)
    text = unlearning_verdict(outcome.method, outcome.info, outcome.poison_success_rate, tm.poison_success_rate,
                              None if oracle_value is None else oracle_value.get("poison_success_rate"),
                              outcome.clean_accuracy - tm.clean_accuracy)
    sentence = text["text"][0].upper() + text["text"][1:] + "."
    if text["removed"] is True:
        st.success(sentence, icon=":material/check_circle:")
    elif text["removed"] is False:
        st.warning(sentence, icon=":material/warning:")
    else:
        st.info(sentence, icon=":material/info:")


def oracle_numbers(act: ui.Active) -> dict | None:
    s = ui.session()
    return s.oracle.value if s.oracle is not None and s.oracle.sig == act.model_key else None


def next_round(act: ui.Active) -> None:
    """Look again with the unlearned model for what this round missed (SPEC §4, finding 5)."""
    s = ui.session()
    ui.rounds(act).advance(s.unlearned.forget, s.unlearned.outcome)
    s.collapse, s.detections, s.unlearned = None, {}, None


def results(act: ui.Active) -> None:
    un = ui.session().unlearned
    outcome = un.outcome
    tm = ui.trained(act)
    pipe = ui.pipeline()
    classes = pipe.dataset(act.scenario.data).classes
    st.divider()
    st.subheader(f"Before and after {outcome.method}")
    m = st.columns(4)
    m[0].metric("Clean accuracy after", ui.pct(outcome.clean_accuracy),
                delta=f"{100 * (outcome.clean_accuracy - tm.clean_accuracy):+.1f} points")
    if outcome.poison_success_rate is not None:
        m[1].metric("Poison success rate after", ui.pct(outcome.poison_success_rate),
                    delta=None if tm.poison_success_rate is None else
                    f"{100 * (outcome.poison_success_rate - tm.poison_success_rate):+.1f} points",
                    delta_color="inverse")
    else:
        m[1].metric("Poison success rate after", "n/a", help="no ground-truth attack to measure")
    m[2].metric("Images removed", f"{len(un.forget):,}")
    m[3].metric("Unlearning time", "from cache" if outcome.cached else f"{outcome.seconds:.1f}s",
                help=(f"computed earlier in {outcome.seconds:.1f}s; " if outcome.cached else "")
                + f"{outcome.passes:.1f} passes over the data")
    verdict(act, outcome, tm)
    truth = ui.ground_truth(act)
    oracle_value = oracle_numbers(act)
    if truth is not None and oracle_value is None and st.button(
            "Compare with an oracle retrain (without exactly the true poisons)", key="unl_oracle",
            icon=":material/balance:"):
        oracle(act)
    oracle_acc = None if oracle_value is None else oracle_value.get("clean_accuracy")
    fig = before_after_figure({"clean_accuracy": tm.clean_accuracy, "poison_success_rate": tm.poison_success_rate},
                              {"clean_accuracy": outcome.clean_accuracy,
                               "poison_success_rate": outcome.poison_success_rate},
                              after_label=f"after {outcome.method}", oracle_accuracy=oracle_acc,
                              success_psr=SUCCESS_PSR,
                              oracle_psr=None if oracle_value is None else oracle_value.get("poison_success_rate"))
    st.plotly_chart(fig, key="unl_chart", config={"displaylogo": False})
    if oracle_acc is not None and truth is not None:
        psr = oracle_value.get("poison_success_rate")
        st.caption(f"Oracle retrain without exactly the {len(truth)} true poisons: accuracy {ui.pct(oracle_acc)}"
                   + ("" if psr is None else f", poison success rate {ui.pct(psr)}") + " — the part of the accuracy "
                   "change that is retraining noise rather than false positives, and the rate a clean model shows.")
    if outcome.gaussian:
        g = outcome.gaussian
        before = pipe.gaussian_check(act.scenario, tm.model) or {}
        st.markdown(
            "**Gaussian-poisoning check** (mean of the noise-alignment statistic on the noisy training images; "
            "≈ 0 when the model never saw the noise): "
            f"before {before.get('mean', float('nan')):.2f}, after {g.get('mean', float('nan')):.2f} "
            f"(z {g.get('z', float('nan')):.1f}, p {g.get('p_value', float('nan')):.2g}, n {g.get('n', 0)})."
        )
    aff = ui.affected_images(act)
    if aff is not None:
        still = still_affected(outcome.model, aff, ui.affected_target(act))
        rounds = ui.rounds(act)
        if still:
            st.warning(f"{still} of {len(aff)} affected image{'s are' if len(aff) > 1 else ' is'} still predicted "
                       f"as class {ui.class_name(classes, ui.affected_target(act))}.")
        else:
            st.info(f"None of the {len(aff)} affected images is predicted as the target any more.")
        if rounds.another_round(still, un.forget):
            st.caption("Another round re-scores influence on the unlearned model, flags again and removes the union.")
            st.button(f"Start round {rounds.n + 1}", on_click=next_round, args=(act,), key="unl_round",
                      icon=":material/replay:")
        elif still and rounds.n >= rounds.max_rounds:
            st.caption(f"This was the last of {rounds.max_rounds} rounds (Scenario · Advanced).")
    a, b, c, _ = st.columns([1, 1, 1, 1])
    with c:
        report_button(act, "unl_report")
    # The file is made here, once per unlearned model, not on the click: a deferred download runs on a
    # worker thread beside the rerun its click starts, and the first one once waited 240 s for it.
    model_file = ui.memo("unlearned_model", outcome.key, lambda: checkpoint_bytes(
        outcome.model, act.scenario.train.model, classes))
    a.download_button("Unlearned model", data=model_file, file_name=f"deltainf-unlearned-{outcome.method}.pt",
                      mime="application/octet-stream", icon=":material/download:", key="unl_model",
                      on_click="ignore", help=f"{len(model_file) / 2**20:.1f} MB: weights and architecture")
    b.download_button("Removed images (JSON)", json.dumps({"method": outcome.method, "removed": un.forget,
                                                            "model_key": act.model_key}, indent=2),
                      file_name="removed.json", mime="application/json", icon=":material/download:",
                      key="unl_list", on_click="ignore")


def render() -> None:
    act = ui.open_step("Unlearn")
    if act is None:
        return
    flags = ui.current_flags(act)
    forget = ui.approved(act, flags).tolist() if flags.ready else ui.rounds(act).removed.tolist()
    if not forget:
        st.info("No approved training images yet: flag and approve them on the Triage page.")
        st.page_link("pages/triage.py", label="Go to Triage", icon=":material/arrow_forward:")
        return
    names = UNLEARNERS.names()
    if ss["unl_method"] not in names:
        ss["unl_method"] = names[0]
    a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
    a.selectbox("Unlearning method", names, **ui.keep("unl_method"),
                format_func=lambda n: f"{n} · {UNLEARNERS.help(n)}")
    if UNLEARNERS.trait(ss["unl_method"], "from_scratch"):
        st.info(f"{ss['unl_method']} retrains your architecture ({act.scenario.train.model}) from scratch on the "
                "training set without the approved images: a full training run, and the baseline every other "
                "method is measured against.", icon=":material/restart_alt:")
    b.number_input("Epochs (0 = method's default)", min_value=0, max_value=200, step=1, **ui.keep("unl_epochs"))
    truth = ui.ground_truth(act)
    known = "" if truth is None else f" ({len(set(forget) & set(truth.tolist()))} of them true poisons)"
    st.markdown(f"**{len(forget)}** approved training images will be removed{known}.")
    if c.button("Unlearn", type="primary", icon=":material/play_arrow:", key="unl_run"):
        run(act, forget)
    un = ui.session().unlearned
    if un is not None:
        if un.forget != forget or un.method != ss["unl_method"]:
            st.caption("The approved set or method changed since this result; press Unlearn to update it.")
        results(act)


render()
