"""Save and load model checkpoints safely.

Loading always uses ``torch.load(weights_only=True)``: a pickled-code checkpoint is
refused instead of executed. Every failure is one ``CheckpointError`` sentence.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import torch
from torch import nn

from .data.base import DatasetSplits
from .errors import CheckpointError
from .models import Classifier, build_model

FORMAT = "deltainf-checkpoint-v1"


def checkpoint_bytes(model: nn.Module, model_name: str, classes: tuple[str, ...]) -> bytes:
    """A self-describing checkpoint (weights only, no code) as bytes, for downloads."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "model": model_name, "classes": list(classes),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, buf)
    return buf.getvalue()


def read_checkpoint(source: str | bytes) -> dict[str, torch.Tensor] | dict:
    """Deserialize with ``weights_only=True``; hostile or corrupt files raise ``CheckpointError``."""
    name = source if isinstance(source, str) else "uploaded file"
    if isinstance(source, str) and not os.path.isfile(source):
        raise CheckpointError(f"checkpoint {source} does not exist")
    try:
        fh = open(source, "rb") if isinstance(source, str) else io.BytesIO(source)
        with fh:
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        marker = text.find("GLOBAL")
        if marker >= 0:  # the file names code to import and run: refuse, never execute
            what = text[marker + len("GLOBAL"):].split()[0] if text[marker + 6:].split() else "code"
            raise CheckpointError(
                f"{name} contains code ({what}), not just weights, and was refused for safety"
            ) from None
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint (corrupt or not a weights file)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError) as err:
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_checkpoint(source: str | bytes, model_name: str, splits: DatasetSplits) -> Classifier:
    """Build ``model_name`` for ``splits`` and load weights from ``source``.

    Accepts this tool's own format, a full ``Classifier`` state dict, or a bare
    backbone state dict (then the data's mean/std are used for normalisation).
    """
    obj = read_checkpoint(source)
    if obj.get("format") == FORMAT:
        if obj.get("model") != model_name:
            raise CheckpointError(f"checkpoint is a {obj.get('model')!r} model, not {model_name!r}")
        if list(obj.get("classes", [])) != list(splits.classes):
            raise CheckpointError("checkpoint was trained on different classes than this dataset's")
        state = obj["state_dict"]
    else:
        state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("checkpoint does not hold a state dict of tensors")
    model = build_model(model_name, splits.train.image_shape, splits.train.num_classes, splits.mean, splits.std)
    if not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}
        state.update({f"normalize.{k}": v for k, v in model.normalize.state_dict().items()})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        expected = set(model.state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint does not fit {model_name}: {len(missing)} missing and "
                f"{len(unexpected)} unexpected weights"
            ) from None
        raise CheckpointError(f"checkpoint does not fit {model_name}: shapes differ "
                              f"({str(err).splitlines()[1].strip()[:120] if len(str(err).splitlines()) > 1 else ''})"
                              ) from None
    for t in model.state_dict().values():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError("checkpoint weights contain NaN or infinite values")
    return model.eval()
