"""Save and load model weights safely: PyTorch state dicts and safetensors, never code.

What is read is decided by the file's bytes, not its name (an upload is stored under
a hash): a zip or pickle header goes to ``torch.load(weights_only=True)``, which
refuses pickled objects instead of running them; a safetensors header to
``safetensors``; anything else is not a checkpoint. Every failure is one
``CheckpointError`` sentence, with no warning printed on the way.

Two kinds of file load:
- this tool's own (``checkpoint_bytes``): the weights plus the model spec, image
  shape and classes, so it rebuilds itself and its normalisation travels with it;
- a plain ``state_dict`` of the analyst's model, possibly inside a training
  checkpoint (``state_dict`` / ``model_state_dict`` / ``model`` / ``net`` entry) and
  with wrapper prefixes such as ``module.`` (DataParallel), ``_orig_mod.``
  (torch.compile) or ``model.`` (Lightning), matched as ``models.weights`` says.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import warnings
from dataclasses import asdict
from typing import Any

import safetensors.torch
import torch
from torch import nn

from .data.base import DatasetSplits
from .errors import CheckpointError
from .models import Classifier, ModelSpec, as_spec, build_model
from .models.weights import align_keys, fit_state

FORMAT = "deltainf-checkpoint-v2"
OLD_FORMATS = ("deltainf-checkpoint-v1",)  # v1: {"model": builtin name, "classes", "state_dict"}
SAVE_HINT = "save the weights alone with torch.save(model.state_dict(), path) and load that file"
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights")


def _not_a_checkpoint(name: str) -> CheckpointError:
    return CheckpointError(f"{name} is not a readable PyTorch checkpoint: expected a state_dict saved with "
                           "torch.save(model.state_dict(), path) (.pt/.pth) or a .safetensors file")


# -- writing ---------------------------------------------------------------------------------
def _payload(model: nn.Module, model_name: str | None, classes: tuple[str, ...] | list[str]) -> dict:
    arch = getattr(model, "arch", None)
    spec = arch.spec if arch is not None else ModelSpec(model=model_name or "smallcnn")
    if model_name is not None and model_name != spec.model:
        raise CheckpointError(f"the model is a {spec.model!r}, not {model_name!r}")
    return {"format": FORMAT, "model": spec.model, "spec": _plain(asdict(spec)),
            "image_shape": list(arch.image_shape) if arch is not None else None,
            "small_images": bool(arch.small_images) if arch is not None else False,
            "classes": list(classes),
            "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}}


def _plain(value: Any) -> Any:
    """Tuples as lists, so the payload is JSON (safetensors metadata) and ``weights_only``-safe."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def checkpoint_bytes(model: nn.Module, model_name: str | None = None, classes: tuple[str, ...] | list[str] = (),
                     *, fmt: str = "pt") -> bytes:
    """A self-describing checkpoint (weights and spec, no code) as bytes: ``fmt`` ``pt`` or ``safetensors``."""
    payload = _payload(model, model_name, classes)
    if fmt == "safetensors":
        state = payload.pop("state_dict")
        return safetensors.torch.save(state, metadata={k: json.dumps(v) for k, v in payload.items()})
    if fmt != "pt":
        raise ValueError(f"unknown checkpoint format {fmt!r} (pt or safetensors)")
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(model: nn.Module, path: str, classes: tuple[str, ...] | list[str]) -> None:
    """Write ``checkpoint_bytes`` atomically; ``.safetensors`` paths get that format."""
    data = checkpoint_bytes(model, None, classes, fmt="safetensors" if path.endswith(".safetensors") else "pt")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


# -- reading ---------------------------------------------------------------------------------
def _sniff(head: bytes, size: int) -> str:
    if head[:4] == b"PK\x03\x04":
        return "torch"  # torch.save's zip format
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"  # a pickle: torch.save's legacy format
    return "unknown"


def _read_safetensors(data: bytes, name: str) -> dict:
    try:
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        tensors = safetensors.torch.load(data)
    except Exception:  # noqa: BLE001 - a damaged file may fail anywhere in the parser
        raise _not_a_checkpoint(name) from None
    if meta.get("format") != json.dumps(FORMAT):
        return tensors  # someone else's safetensors file: a plain state_dict
    try:
        obj = {k: json.loads(v) for k, v in meta.items()}
    except (TypeError, ValueError):
        raise _not_a_checkpoint(name) from None
    obj["state_dict"] = tensors
    return obj


def _read_torch(source: str | bytes, name: str) -> Any:
    try:
        fh = open(source, "rb") if isinstance(source, str) else io.BytesIO(source)
        with fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(err))
        if found:  # the file names code to import and run: refuse, never execute
            raise CheckpointError(f"{name} contains code ({found.group(1)}), a pickled Python object rather than "
                                  f"weights alone, and was refused for safety; {SAVE_HINT}") from None
        raise _not_a_checkpoint(name) from None
    except Exception:  # noqa: BLE001 - torch's readers fail with anything on garbage (KeyError, IndexError, ...)
        raise _not_a_checkpoint(name) from None


def _name(source: str | bytes, name: str | None) -> str:
    return name or (os.path.basename(source) if isinstance(source, str) else "uploaded file")


def read_checkpoint(source: str | bytes, name: str | None = None) -> dict:
    """Deserialize a checkpoint file (path) or upload (bytes); ``CheckpointError`` if it is not one.

    name: what to call the file in error messages (default: its base name / "uploaded file").
    """
    name = _name(source, name)
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise CheckpointError(f"checkpoint {source} does not exist")
        size = os.path.getsize(source)
        with open(source, "rb") as fh:
            head = fh.read(16)
    else:
        size, head = len(source), bytes(source[:16])
    kind = _sniff(head, size)
    if kind == "unknown":
        raise _not_a_checkpoint(name)
    if kind == "safetensors":
        if isinstance(source, str):
            with open(source, "rb") as fh:
                source = fh.read()
        obj = _read_safetensors(bytes(source), name)
    else:
        obj = _read_torch(source, name)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a state dict; {SAVE_HINT}")
    return obj


def store_upload(data: bytes, directory: str, name: str | None = None) -> str:
    """Check uploaded weights and keep them under their content hash; returns the file's path.

    The suffix follows the content (``.safetensors`` or ``.pt``), whatever the upload was called.
    """
    read_checkpoint(data, name)
    os.makedirs(directory, exist_ok=True)
    suffix = ".safetensors" if _sniff(data[:16], len(data)) == "safetensors" else ".pt"
    path = os.path.join(directory, hashlib.sha256(data).hexdigest()[:32] + suffix)
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return path


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def state_dict_of(obj: dict, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a plain checkpoint: the dict itself or its ``state_dict``-like entry."""
    if _is_state_dict(obj):
        return obj
    for key in _STATE_KEYS:
        if _is_state_dict(obj.get(key)):
            return obj[key]
    keys = ", ".join(map(str, list(obj)[:6])) or "none"
    raise CheckpointError(f"{name} holds a dict (keys: {keys}) but no state dict of tensors; {SAVE_HINT}")


def checkpoint_spec(source: str | bytes) -> ModelSpec | None:
    """The model spec a checkpoint of this tool records (None for a plain state_dict)."""
    obj = read_checkpoint(source)
    if obj.get("format") == FORMAT:
        return _saved_spec(obj)
    if obj.get("format") in OLD_FORMATS:
        return ModelSpec(model=str(obj.get("model")))
    return None


def _saved_spec(obj: dict) -> ModelSpec:
    raw = dict(obj.get("spec") or {"model": obj.get("model")})
    for key in ("input_mean", "input_std"):
        if raw.get(key) is not None:
            raw[key] = tuple(raw[key])
    try:
        return ModelSpec(**raw)
    except TypeError:
        raise CheckpointError("the checkpoint's model description is damaged") from None


# -- fitting weights to an architecture -------------------------------------------------------
def _finite(model: nn.Module, name: str) -> None:
    for t in model.state_dict().values():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{name}: the weights contain NaN or infinite values")


def _same(a: tuple[float, ...] | None, b: tuple[float, ...]) -> bool:
    if a is None or len(a) != len(b):
        return False
    return all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def _own(obj: dict, given: ModelSpec | None, splits: DatasetSplits, name: str) -> Classifier:
    """This tool's checkpoint: it says its own architecture; a contradicting request is refused."""
    saved = _saved_spec(obj)
    if given is not None:
        if given.model != saved.model:
            raise CheckpointError(f"{name} is a {saved.model!r} model, not {given.model!r}")
        for what, mine, theirs in (("model kwargs", given.model_kwargs, saved.model_kwargs),
                                   ("model output", given.model_output, saved.model_output)):
            if mine not in (None, {}) and mine != theirs:
                raise CheckpointError(f"{name} was saved with {what} {theirs!r}, not {mine!r}")
    if list(obj.get("classes") or []) != list(splits.classes):
        raise CheckpointError(f"{name} was trained on different classes than this dataset's")
    shape = tuple(splits.train.image_shape)
    if obj.get("image_shape") is not None and tuple(obj["image_shape"]) != shape:
        made = "×".join(map(str, obj["image_shape"]))
        raise CheckpointError(f"{name} was made for {made} images; this data has {'×'.join(map(str, shape))}")
    state = obj["state_dict"]
    if not _is_state_dict(state):
        raise CheckpointError(f"{name} does not hold a state dict of tensors")
    mean, std = state.get("normalize.mean"), state.get("normalize.std")
    if mean is None or std is None:
        raise CheckpointError(f"{name} lacks its normalisation (normalize.mean / normalize.std)")
    mean, std = tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())
    if given is not None and given.input_mean is not None and not (
            _same(tuple(given.input_mean), mean) and _same(tuple(given.input_std or ()), std)):
        raise CheckpointError(f"{name} normalises with mean {mean} and std {std}, not the ones given")
    spec = ModelSpec(saved.model, dict(saved.model_kwargs), saved.model_output, mean, std)
    model = build_model(spec, shape, splits.train.num_classes, small_images=bool(obj.get("small_images")))
    fit_state(model, state, name, saved.model, splits.train.num_classes)
    return model


def _plain_state(state: dict[str, torch.Tensor], spec: ModelSpec, splits: DatasetSplits, name: str,
                 small_images: bool | None = None) -> Classifier:
    shape, k = tuple(splits.train.image_shape), splits.train.num_classes
    model = build_model(spec, shape, k, small_images=small_images)
    whole_keys, inner_keys = set(model.state_dict()), set(model.backbone.state_dict())
    whole, inner = align_keys(state, whole_keys), align_keys(state, inner_keys)
    if len(whole_keys & set(whole)) > len(inner_keys & set(inner)):  # a whole Classifier: normalisation comes along
        fit_state(model, whole, name, spec.model, k)
        file_mean, file_std = model.normalize.values()
        if spec.input_mean is not None and not (_same(tuple(spec.input_mean), file_mean)
                                                and _same(tuple(spec.input_std or ()), file_std)):
            raise CheckpointError(f"{name} normalises with mean {file_mean} and std {file_std}, not the ones given")
    else:
        fit_state(model.backbone, inner, name, spec.model, k)
    return model


def _plain_or_stock_stem(state: dict[str, torch.Tensor], spec: ModelSpec, splits: DatasetSplits,
                         name: str) -> Classifier:
    try:
        return _plain_state(state, spec, splits, name)
    except CheckpointError:
        if spec.kind != "torchvision":
            raise
        try:  # weights trained with torchvision's stock stem on small images
            return _plain_state(state, spec, splits, name, small_images=False)
        except CheckpointError:
            pass
        raise


def load_checkpoint(source: str | bytes, model: ModelSpec | str | None, splits: DatasetSplits,
                    name: str | None = None) -> Classifier:
    """The model in ``source``, built for ``splits`` and ready for evaluation.

    model: the architecture (a ``ModelSpec`` or a name). This tool's own checkpoints
        describe themselves (``None`` is then enough; a different name is refused); a
        plain state_dict needs it. The plain state_dict's normalisation is the spec's
        ``input_mean``/``input_std``, or none: the model sees pixels in ``[0, 1]``.
    """
    name = _name(source, name)
    obj = read_checkpoint(source, name)
    given = as_spec(model) if model is not None else None
    if obj.get("format") in (FORMAT, *OLD_FORMATS):
        result = _own(obj, given, splits, name)
    else:
        state = state_dict_of(obj, name)
        if given is None:
            raise CheckpointError(f"{name} is a plain state_dict, which does not say its architecture; "
                                  "choose the model it belongs to")
        result = _plain_or_stock_stem(state, given, splits, name)
    _finite(result, name)
    return result.eval()


def file_hash(path: str) -> str:
    """A checkpoint's content digest (what keys the model under investigation), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


__all__ = ["FORMAT", "checkpoint_bytes", "checkpoint_spec", "file_hash", "load_checkpoint", "read_checkpoint",
           "save_checkpoint", "state_dict_of", "store_upload"]
