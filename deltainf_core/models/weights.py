"""Fit a state dict to a module: names matched leniently, mismatches told in one sentence.

Lenient only where it is unambiguous: a prefix shared by *every* key (``module.``,
``_orig_mod.``, ``model.``) is stripped when that matches the module's own names
better, and BatchNorm's ``num_batches_tracked`` counters may be missing. Anything
else that does not fit is a ``CheckpointError`` naming up to five keys of each kind.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError


def align_keys(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Strip a prefix shared by every key (``module.``, ``model.``, ...) while that matches better."""
    best, hits, current = state, len(expected & set(state)), state
    for _ in range(3):
        heads = {k.split(".", 1)[0] for k in current}
        if len(heads) != 1 or not all("." in k for k in current):
            break
        cut = len(heads.pop()) + 1
        current = {k[cut:]: v for k, v in current.items()}
        if len(expected & set(current)) > hits:
            best, hits = current, len(expected & set(current))
    return best


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f", … {len(keys) - 5} more" if len(keys) > 5 else "")


def _shape(t: torch.Tensor | torch.Size) -> str:
    return "[" + ", ".join(map(str, tuple(t))) + "]"


def fit_state(module: nn.Module, state: dict[str, torch.Tensor], name: str, label: str, num_classes: int) -> None:
    """``load_state_dict`` with one sentence naming up to five missing, unexpected and misshapen keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
        if wrong:
            shapes = "; ".join(f"{k} is {_shape(state[k].shape)} in the file, {_shape(expected[k].shape)} in the "
                               "model" for k in wrong[:5])
            parts.append(f"{len(wrong)} of another shape ({shapes}{'; …' if len(wrong) > 5 else ''})")
            heads = [k for k in wrong if expected[k].ndim and expected[k].shape[0] == num_classes
                     and state[k].ndim == expected[k].ndim and state[k].shape[1:] == expected[k].shape[1:]]
            if heads:
                parts.append(f"the file's classifier has {state[heads[0]].shape[0]} outputs, the data has "
                             f"{num_classes} classes")
        raise CheckpointError(f"{name} does not fit {label}: " + "; ".join(parts))
    module.load_state_dict(state, strict=False)


__all__ = ["align_keys", "fit_state"]
