"""Check a freshly built model once, on two synthetic images, before any real work.

A model brought by the analyst can fail in ways a built-in cannot: it may not run
on these images, return several tensors, or have an output per class that does not
match the data. One forward pass at build time turns each into a sentence, instead
of a traceback in the middle of training or influence scoring.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import TRACKED_TYPES, Classifier, ModelError, select_output


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _probe_input(model: nn.Module, image_shape: tuple[int, int, int]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)  # never touch the global RNG (seeded builds stay identical)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.rand(2, *image_shape, generator=gen).to(device)


@torch.no_grad()
def check_outputs(model: Classifier, image_shape: tuple[int, int, int], num_classes: int, label: str) -> None:
    """Raise ``ModelError`` unless the model maps ``image_shape`` images to ``num_classes`` logits."""
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(f"{label} has no trainable parameters")
    was_training = model.training
    model.eval()
    try:
        x = _probe_input(model, image_shape)
        try:
            raw = model.backbone(model.normalize(x))
        except Exception as err:  # noqa: BLE001 - any failure of the user's forward is reported
            shape = "×".join(map(str, image_shape))
            raise ModelError(f"{label} cannot run on {shape} images: {_line(err)}") from None
        logits = select_output(raw, model.output, label)
        if not isinstance(logits, torch.Tensor):
            raise ModelError(f"{label}: the selected output is a {type(logits).__name__}, not a tensor of logits")
        if logits.ndim != 2 or logits.shape[1] != num_classes:
            per_image = "×".join(map(str, logits.shape[1:])) or "1"
            raise ModelError(f"{label} gives {per_image} output values per image but the data has {num_classes} "
                             "classes (one logit per class expected, as a [N, classes] tensor)")
    finally:
        model.train(was_training)


@torch.no_grad()
def influence_tracked_modules(model: nn.Module, image_shape: tuple[int, int, int] | None = None) -> list[str]:
    """Names of the layers EK-FAC can track: ``nn.Linear``/``nn.Conv2d`` (exact types) that the forward uses.

    kronfluence wraps every Linear/Conv2d it finds but looks subclasses up by exact type
    (a subclass such as attention's ``NonDynamicallyQuantizableLinear`` makes it fail),
    and a layer the forward never runs has no statistics. Pass these names to the
    kronfluence Task's ``get_influence_tracked_modules``.
    """
    shape = image_shape or getattr(getattr(model, "arch", None), "image_shape", None)
    candidates = {name: m for name, m in model.named_modules() if type(m) in TRACKED_TYPES}
    if shape is None or not candidates:
        return list(candidates)
    used: set[str] = set()
    handles = [m.register_forward_pre_hook(lambda _m, _a, n=name: used.add(n)) for name, m in candidates.items()]
    was_training = model.training
    model.eval()
    try:
        model(_probe_input(model, shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return [name for name in candidates if name in used]


def require_influence_trackable(model: nn.Module, image_shape: tuple[int, int, int] | None = None) -> list[str]:
    """``influence_tracked_modules``, or a ``ModelError`` naming the detectors that work without EK-FAC."""
    names = influence_tracked_modules(model, image_shape)
    if names:
        return names
    from ..detectors import DETECTORS  # lazily: detectors sit above models

    others = ", ".join(DETECTORS.names(needs_influence=False))
    raise ModelError("the model has no Linear or Conv2d layer for EK-FAC influence to track; detectors that "
                     f"still work: {others}")


__all__ = ["check_outputs", "influence_tracked_modules", "require_influence_trackable"]
