"""Step 1 · Scenario: train a (poisoned) model, or load an existing one to investigate."""

from __future__ import annotations

import os
from dataclasses import replace

import streamlit as st

from deltainf_core import (
    ATTACKS,
    DATASETS,
    MODELS,
    NO_ATTACK,
    TRANSFORMS,
    Scenario,
    checkpoint_bytes,
)
from deltainf_core.checkpoints import store_upload
from deltainf_core.collapse.transforms import transform_title
from deltainf_core.config import INFLUENCE_STRATEGIES
from deltainf_core.figures import to_display
from deltainf_core.models import (
    ModelSpec,
    parse_channel_values,
    parse_model_kwargs,
    parse_model_output,
    torchvision_model_names,
)
from deltainf_core.training import cached_model_note
from pages import ui
from pages.ui.engine import engine_panel

ss = st.session_state
HELP = ui.HELP
ARCH_SOURCES = {"builtin": "built-in", "torchvision": "torchvision", "code": "my own class"}
# The architecture widgets this page adds to ``ui.Widgets`` (keys and defaults).
MODEL_WIDGETS = {"scn_arch_source": "builtin", "scn_tv_model": "resnet18", "scn_arch_path": "",
                 "scn_model_kwargs": "", "scn_model_output": "", "scn_input_mean": "", "scn_input_std": ""}
for _key, _default in MODEL_WIDGETS.items():
    ss.setdefault(_key, _default)
for _key, _shown in (("scn_victim", 0), ("scn_target", 1)):  # the defaults AttackConfig resolves to, shown
    if ss.get(_key) is None:
        ss[_key] = _shown


def _sanitize(key: str, options: list) -> None:
    if ss.get(key) not in options:
        ss[key] = options[0]


def _choices_help(lead: str, registry) -> str:
    """A select box's help: what it is, then one line per option (the box shows names only)."""
    return lead + "\n\n" + "\n".join(f"- **{n}**: {registry.help(n)}" for n in registry.names())


def dataset_widgets(col) -> None:
    options = [*DATASETS.names(), ui.FOLDER]
    _sanitize("scn_dataset", options)
    col.selectbox(
        "Dataset", options, **ui.keep("scn_dataset"),
        help=_choices_help(HELP["data"]["dataset"], DATASETS) + "\n- **ImageFolder**: train/<class>/* and "
        "test/<class>/* on the machine that runs this app",
        format_func=lambda n: "ImageFolder on this machine…" if n == ui.FOLDER else n,
    )
    if ss["scn_dataset"] == ui.FOLDER:
        col.text_input("ImageFolder root", **ui.keep("scn_data_dir"), placeholder="/path/with/train/and/test",
                       help=HELP["data"]["data_dir"])


def model_widget(col) -> None:
    """The architecture: a built-in, a torchvision model or a class in a file on this machine."""
    _sanitize("scn_arch_source", list(ARCH_SOURCES))
    col.radio("Architecture", list(ARCH_SOURCES), **ui.keep("scn_arch_source"), horizontal=True,
              format_func=ARCH_SOURCES.get, help="torchvision models get a stem for small images where the "
              "architecture allows; your own class is imported from a file on the machine that runs this app")
    source = ss["scn_arch_source"]
    if source == "builtin":
        options = MODELS.names()
        _sanitize("scn_model", options)
        col.selectbox("Model", options, **ui.keep("scn_model"), help=_choices_help("architecture", MODELS))
    elif source == "torchvision":
        options = torchvision_model_names()
        _sanitize("scn_tv_model", options)
        col.selectbox("torchvision model", options, **ui.keep("scn_tv_model"),
                      help="built with the data's number of classes; trained from scratch or loaded from your weights")
    else:
        col.text_input("Class or factory", **ui.keep("scn_arch_path"),
                       placeholder="/path/to/nets.py:ResNet  or  mypkg.models:make_net",
                       help=HELP["train"]["model"] + ". The file is read on the machine that runs this app; "
                       "code is never uploaded through the browser.")
    with col.expander("Arguments, output and normalisation"):
        st.text_input("Keyword arguments (JSON)", **ui.keep("scn_model_kwargs"), placeholder='{"width": 16}',
                      help=HELP["train"]["model_kwargs"])
        st.text_input("Logits output (index or key)", **ui.keep("scn_model_output"), placeholder="1  or  logits",
                      help=HELP["train"]["model_output"])
        a, b = st.columns(2)
        mean, std = stats_placeholder()
        a.text_input("Input mean", **ui.keep("scn_input_mean"), placeholder=mean,
                     help=HELP["train"]["input_mean"] + " (one value per channel of the data)")
        b.text_input("Input std", **ui.keep("scn_input_std"), placeholder=std,
                     help=HELP["train"]["input_std"] + " (one value per channel of the data)")


# Placeholders for the built-in grey-scale sets (their usual normalisation), until the data is loaded.
ONE_CHANNEL = {"mnist5k": ("0.1307", "0.3081"), "mnist": ("0.1307", "0.3081"), "fashion_mnist": ("0.2860", "0.3530")}


def stats_placeholder() -> tuple[str, str]:
    """Example mean/std with as many values as the chosen data has channels: the loaded data's own
    statistics when this investigation already uses it, else the usual ones for its kind."""
    act = ui.active()
    data = act.scenario.data if act is not None else None
    folder = ss["scn_dataset"] == ui.FOLDER
    same = data is not None and (bool(data.data_dir) if folder else
                                 (not data.data_dir and data.dataset == ss["scn_dataset"]))
    if same:
        splits = ui.pipeline().dataset(data)
        return (",".join(f"{float(v):.4f}" for v in splits.mean), ",".join(f"{float(v):.4f}" for v in splits.std))
    return ONE_CHANNEL.get(ss["scn_dataset"], ("0.4914,0.4822,0.4465", "0.2470,0.2435,0.2616"))


def model_spec() -> ModelSpec:
    """The architecture the widgets describe (``ConfigError`` in one sentence for bad text)."""
    source = ss["scn_arch_source"]
    name = {"builtin": ss["scn_model"], "torchvision": f"torchvision:{ss['scn_tv_model']}",
            "code": ss["scn_arch_path"].strip()}[source]
    mean, std = ss["scn_input_mean"].strip(), ss["scn_input_std"].strip()
    spec = ModelSpec(name, parse_model_kwargs(ss["scn_model_kwargs"]) if ss["scn_model_kwargs"].strip() else {},
                     parse_model_output(ss["scn_model_output"]),
                     parse_channel_values(mean, "input mean") if mean else None,
                     parse_channel_values(std, "input std") if std else None)
    spec.validate()
    return spec


def scenario(checkpoint: str | None = None) -> Scenario:
    """``ui.scenario_from_widgets`` plus this page's architecture widgets."""
    scn = ui.scenario_from_widgets(None, checkpoint)
    spec = model_spec()
    scn = replace(scn, train=replace(scn.train, model=spec.model, model_kwargs=spec.model_kwargs,
                                     model_output=spec.model_output, input_mean=spec.input_mean,
                                     input_std=spec.input_std))
    victim, target = scn.attack.victim_class, scn.attack.target_class
    if victim is not None and target == (1 if victim != 1 else 2):  # the boxes show the defaults: not given,
        target = None                                                 # as on the CLI (same scenario, same cache)
    if victim == 0:
        victim = None
    scn = replace(scn, attack=replace(scn.attack, victim_class=victim, target_class=target))
    scn.validate()
    return scn


def advanced_widgets(with_training: bool) -> None:
    with st.expander("Advanced: size, speed and attack parameters"):
        a, b, c = st.columns(3)
        a.number_input("Max training images (0 = all)", min_value=0, step=100, **ui.keep("scn_max_train"),
                       help=HELP["data"]["max_train"])
        b.number_input("Max test images (0 = all)", min_value=0, step=100, **ui.keep("scn_max_test"),
                       help=HELP["data"]["max_test"])
        if with_training:
            c.number_input("Epochs (0 = auto)", min_value=0, max_value=200, step=1, **ui.keep("scn_epochs"),
                           help=HELP["train"]["epochs"])
        a.number_input("Copies of the first affected image", min_value=1, max_value=500, step=5,
                       **ui.keep("scn_copies"), help=HELP["collapse"]["n_copies"])
        b.number_input("Copies of each further affected image", min_value=1, max_value=500, step=5,
                       **ui.keep("scn_copies_extra"), help=HELP["collapse"]["n_copies_extra"])
        c.number_input("Affected images used by default", min_value=1, max_value=ui.MAX_AFFECTED, step=1,
                       **ui.keep("scn_max_affected"), help=HELP["collapse"]["max_affected"])
        _sanitize("scn_strategy", list(INFLUENCE_STRATEGIES))
        a.selectbox("Influence strategy", INFLUENCE_STRATEGIES, **ui.keep("scn_strategy"),
                    help=HELP["influence"]["strategy"])
        b.number_input("Detect/unlearn rounds", min_value=1, max_value=10, step=1, **ui.keep("scn_rounds"),
                       help=HELP["scenario"]["max_rounds"])
        transforms = TRANSFORMS.names()
        if not ss.get("scn_transforms") or any(t not in transforms for t in ss["scn_transforms"]):
            ss["scn_transforms"] = [t for t in ss.get("scn_transforms") or transforms if t in transforms] or transforms
        st.multiselect("Transformations the copies are drawn from", transforms, **ui.keep("scn_transforms"),
                       format_func=transform_title, help=HELP["collapse"]["transforms"])
        if with_training:
            c.text_input("Attack parameters (JSON)", **ui.keep("scn_attack_params"), placeholder='{"pattern": "dark4"}',
                         help=_attack_params_help(ss["scn_attack"]))


def _attack_params_help(attack: str) -> str:
    """The chosen attack's parameters, from its parameters dataclass."""
    entry = ATTACKS.entry(attack) if attack in ATTACKS else None
    help_ = entry.param_help() if entry else {}
    if not help_:
        return f"{attack} takes no parameters"
    defaults = entry.param_defaults()
    return f"{attack} parameters (JSON): " + "; ".join(f"{k} — {v} (default {defaults[k]})" for k, v in help_.items())


def train_section() -> None:
    c1, c2, c3 = st.columns(3)
    dataset_widgets(c1)
    model_widget(c2)
    attacks = ATTACKS.names()
    _sanitize("scn_attack", attacks)
    c3.selectbox("Attack", attacks, **ui.keep("scn_attack"), help=_choices_help(HELP["attack"]["attack"], ATTACKS))
    no_attack = ss["scn_attack"] == NO_ATTACK
    d1, d2, d3, d4 = st.columns(4)
    d1.number_input("Poisoned fraction", min_value=0.001, max_value=0.5, step=0.005, format="%.3f",
                    **ui.keep("scn_poison_frac"), disabled=no_attack, help=HELP["attack"]["poison_frac"])
    d2.number_input("Victim class", min_value=0, step=1, **ui.keep("scn_victim"), disabled=no_attack,
                    help=HELP["attack"]["victim_class"])
    d3.number_input("Target class", min_value=0, step=1, **ui.keep("scn_target"), disabled=no_attack,
                    help=HELP["attack"]["target_class"])
    d4.number_input("Seed", min_value=0, step=1, **ui.keep("scn_seed"), help="seed for poisons, training and copies")
    advanced_widgets(with_training=True)
    if st.button("Train", type="primary", icon=":material/play_arrow:", key="scn_train"):
        ok, scn = ui.attempt("Reading the settings", scenario)
        if ok:
            ok, tm = ui.run_long("Training", lambda pipe: pipe.trained(scn))
            if ok:
                ui.activate(scn, "train", tm)


def checkpoint_section() -> None:
    st.caption("Your model's weights (a state_dict as .pt/.pth or .safetensors; files holding code are refused) "
               "plus the data it was trained on. Say its architecture, how it normalises its input and which "
               "output is the logits. There is no ground truth here, so points stay neutral grey and "
               "precision/recall are not shown; unlearning retrains or fine-tunes your architecture with this "
               "tool's recipe.")
    upload = st.file_uploader("Model weights", type=["pt", "pth", "safetensors", "ckpt", "bin"], key="scn_ckpt_file")
    c1, c2 = st.columns(2)
    dataset_widgets(c1)
    model_widget(c2)
    advanced_widgets(with_training=False)
    if st.button("Load model", type="primary", icon=":material/upload:", disabled=upload is None,
                 key="scn_load"):
        ok, path = ui.attempt("Reading the weights", store_upload, upload.getvalue(),
                              os.path.join(ui.cache_dir(), "uploads"), upload.name)
        if not ok:
            return
        ok, scn = ui.attempt("Reading the settings", scenario, path)
        if ok:
            ok, tm = ui.run_long("Loading the model", lambda pipe: pipe.trained(scn))
            if ok:
                ui.activate(scn, "checkpoint", tm, upload.name)


def results(act: ui.Active) -> None:
    pipe = ui.pipeline()
    ok, tm = ui.attempt("Loading the model", ui.trained, act)
    if not ok:
        return
    poisoned = pipe.poisoned(act.scenario)
    splits = pipe.dataset(act.scenario.data)
    truth = ui.ground_truth(act)
    st.divider()
    title = "The model under investigation" if act.mode == "train" else f"Loaded model: {act.checkpoint_name}"
    st.subheader(title)
    cols = st.columns(5)
    cols[0].metric("Clean accuracy", ui.pct(tm.clean_accuracy), help="accuracy on the clean test set")
    cols[1].metric("Poison success rate", ui.pct(tm.poison_success_rate),
                   help="share of triggered victim-class test images predicted as the target")
    split = (f"{len(poisoned.train):,} training and {len(splits.test):,} test images: the dataset's split into "
             "images the model learns from and images it is judged on (after the caps under Advanced)")
    cols[2].metric("Training images", f"{len(poisoned.train):,}", help=split)
    cols[3].metric("Poisoned images", "unknown" if truth is None else f"{len(truth):,}")
    cols[4].metric("Training time", "loaded" if act.mode != "train" else f"{tm.seconds:.1f}s",
                   help=f"trained earlier with these settings; {cached_model_note(tm.trained_on, pipe.device)}"
                   if tm.cached else None)
    st.caption(split[0].upper() + split[1:])
    if truth is not None and act.scenario.attack.attack != NO_ATTACK:
        classes = splits.classes
        shown = truth[:10]
        target = ui.class_name(classes, poisoned.target_class)
        st.markdown(f"**Poisoned training images** ({len(truth)} of {len(poisoned.train):,}; "
                    f"attack `{act.scenario.attack.attack}`, target class {target})")
        st.image([to_display(poisoned.train.float_batch([i])[0]) for i in shown], width=84,
                 caption=[f"#{i} · label {int(poisoned.train.labels[i])}" for i in shown])
        if len(poisoned.psr_set):
            pred = pipe.predict(act.scenario, poisoned.psr_set.images[:10], tm).tolist()
            st.markdown("**Triggered test images** and what the model predicts for them")
            st.image([to_display(img) for img in poisoned.psr_set.images[:10]], width=84,
                     caption=[f"true {int(y)} → {p}" for y, p in zip(poisoned.psr_set.labels[:10].tolist(), pred,
                                                                     strict=True)])
    left, right = st.columns([3, 1])
    left.page_link("pages/affected_image.py", label="Next: pick the affected image", icon=":material/arrow_forward:")
    short = act.scenario.train.model.replace("\\", "/").rsplit("/", 1)[-1].replace(":", "-").replace(".py", "")
    # made once per model here, not on the click (see the Unlearn page's model download)
    model_file = ui.memo("trained_model_file", act.model_key, lambda: checkpoint_bytes(
        tm.model, act.scenario.train.model, splits.classes))
    right.download_button(
        "Download this model", data=model_file, file_name=f"deltainf-{short}-{act.model_key.split(':')[-1][:8]}.pt",
        mime="application/octet-stream", icon=":material/download:", key="scn_download", on_click="ignore",
    )


def settings_changed(act: ui.Active) -> bool:
    try:
        now = scenario(act.scenario.checkpoint)
    except Exception:  # noqa: BLE001 - an unfinished edit (bad JSON, empty folder) is not "changed" yet
        return False
    keep = ("data", "attack", "train", "influence")
    return any(now.as_dict()[k] != act.scenario.as_dict()[k] for k in keep)


def render() -> None:
    ui.through_app()
    st.title("Scenario")
    st.caption("Pick what to investigate. The defaults train a small CNN on the built-in MNIST digits with a "
               "BadNet backdoor — one click on **Train**.")
    ui.investigation_list()
    st.radio("Investigate", ["train", "checkpoint"], **ui.keep("scn_mode"), horizontal=True,
             format_func=lambda m: "a model trained here under a known attack" if m == "train"
             else "an existing model (upload a checkpoint)")
    engine_panel(ui.pipeline())
    if ss["scn_mode"] == "train":
        train_section()
    else:
        checkpoint_section()
    act = ui.active()
    if act is not None:
        if (act.mode == "train") == (ss["scn_mode"] == "train") and settings_changed(act):
            st.warning("The settings above differ from the model below; press "
                       f"**{'Train' if act.mode == 'train' else 'Load model'}** to use them.")
        results(act)


render()
