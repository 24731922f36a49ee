"""Widgets generated from parameter dataclasses, formatting, and the sidebar summary.

A method's parameters dataclass is the one description of its knobs: the CLI's flags
(``deltainf_core.flags``) and the widgets here are both generated from its fields, so a
new rule or detector shows its own controls with no page edit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from typing import Any

import streamlit as st

from deltainf_core import STAGES, Scenario
from deltainf_core.config import field_help

from .state import keep, session

HELP = {name: field_help(cls) for name, cls in STAGES.items()} | {"scenario": field_help(Scenario)}
"""Help text of every config field, by stage: the widgets say what the CLI's flags say."""


# -- parameters ---------------------------------------------------------------------------------
def _base(annotation: Any) -> tuple[Any, bool]:
    """``(X, optional)`` for ``X | None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0], True
    return annotation, False


def param_key(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


def params_from_widgets(cls: type, prefix: str) -> Any:
    """An instance of ``cls`` from the widget values under ``prefix`` (defaults where none)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        key = param_key(prefix, f.name)
        if key in st.session_state:
            value = st.session_state[key]
            base, optional = _base(hints[f.name])
            values[f.name] = None if optional and base is int and not value else value
    return cls(**values)


def param_widgets(cls: type, prefix: str, columns: list) -> None:
    """One widget per field of a parameters dataclass, spread over ``columns``.

    bool → checkbox, int/float → number input (``min``/``max``/``step`` metadata; an
    optional int shows 0 for "default"), Literal → select box, str → text input.
    """
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for i, f in enumerate(dataclasses.fields(cls)):
        col = columns[i % len(columns)]
        key = param_key(prefix, f.name)
        base, optional = _base(hints[f.name])
        default = getattr(defaults, f.name)
        if key not in st.session_state:
            st.session_state[key] = 0 if optional and default is None and base is int else default
        label = f.name.replace("_", " ")
        help_text = f.metadata.get("help")
        if base is bool:
            col.checkbox(label, help=help_text, **keep(key))
        elif base in (int, float):
            kw = {k: base(f.metadata[k]) for k in ("min", "max", "step") if k in f.metadata}
            if optional:
                kw["min"] = base(0)
                label += " (0 = default)"
            col.number_input(label, min_value=kw.get("min"), max_value=kw.get("max"), step=kw.get("step"),
                             help=help_text, **keep(key))
        elif typing.get_origin(base) is typing.Literal:
            col.selectbox(label, list(typing.get_args(base)), help=help_text, **keep(key))
        else:
            col.text_input(label, help=help_text, **keep(key))


def params_text(params: Any) -> str:
    """``name value, ...`` of a parameters dataclass, for captions."""
    return ", ".join(f"{f.name.replace('_', ' ')} {getattr(params, f.name)}" for f in dataclasses.fields(params))


# -- formatting ---------------------------------------------------------------------------------
def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100.0 * x:.{digits}f}%"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def class_name(classes: tuple[str, ...], c: int | None) -> str:
    if c is None:
        return "?"
    name = classes[c] if 0 <= c < len(classes) else str(c)
    return name if name == str(c) else f"{c} ({name})"


def sidebar_summary() -> None:
    """A compact summary of the investigation in the sidebar (read-only, never computes)."""
    s = session()
    act = s.active
    st.markdown("#### Investigation")
    if s.inv_id is not None:
        st.caption(f"saved as `{s.inv_id}`: its address reopens it")
    if act is None:
        st.caption("No model yet: train or load one on the Scenario page.")
        return
    scn = act.scenario
    src = os.path.basename(scn.data.data_dir) if scn.data.data_dir else scn.data.dataset
    if act.mode == "train":
        frac = "" if scn.attack.attack == "none" else f"{scn.attack.poison_frac:.1%}"
        lines = [f"**{src}** · {scn.train.model} · {scn.attack.attack} {frac}"]
    else:
        lines = [f"**{act.checkpoint_name or 'uploaded model'}** on {src} · {scn.train.model}"]
    if "clean_accuracy" in act.extra:
        psr = act.extra.get("poison_success_rate")
        lines.append(f"accuracy {pct(act.extra['clean_accuracy'])}" + ("" if psr is None else f" · PSR {pct(psr)}"))
    lines.append(f"affected images: {len(s.picked or []) + len(s.uploads)}")
    if s.collapse_result is not None:
        lines.append(f"collapse: {s.collapse_result.scores.shape[0]} queries scored")
    if s.rounds is not None and s.rounds.n > 1:
        lines.append(f"round {s.rounds.n}")
    if s.unlearned is not None:
        o = s.unlearned.outcome
        psr = "" if o.poison_success_rate is None else f", PSR {pct(o.poison_success_rate)}"
        lines.append(f"unlearned ({o.method}, {len(s.unlearned.forget)} images): accuracy "
                     f"{pct(o.clean_accuracy)}{psr}")
    st.markdown("  \n".join(lines))
