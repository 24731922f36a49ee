"""Checksums and checks for cached artefacts: what makes a damaged cache cost time, never a result.

- ``seal``/``unseal``: a pickled value with a BLAKE2b digest of its bytes (the store's entries);
- ``finite_array``/``finite_state_dict``: checks of what a value must look like (shape, finite);
- ``StepManifest``/``verify_folder``: checksums of files another library writes (kronfluence's
  factors), recorded as each step completes, so an interrupted step's files are never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Check = Callable[[Any], "str | None"]
"""Validates a value read back from a cache: ``None`` when fine, else why not."""

_MAGIC = b"DIC1"
_DIGEST = 32


def digest(data: bytes | memoryview) -> str:
    """The checksum every cached artefact is stored with (BLAKE2b-256, hex)."""
    return hashlib.blake2b(data, digest_size=_DIGEST).hexdigest()


def file_digest(path: str) -> str:
    """``digest`` of a file's bytes, read in blocks."""
    h = hashlib.blake2b(digest_size=_DIGEST)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def seal(value: Any) -> bytes:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _MAGIC + hashlib.blake2b(payload, digest_size=_DIGEST).digest() + payload


def unseal(blob: Any) -> Any:
    """The value sealed in ``blob``; ``ValueError`` saying why when it is damaged."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or bytes(blob[:4]) != _MAGIC:
        raise ValueError("not a checksummed entry")
    view = memoryview(blob)
    head, payload = bytes(view[4 : 4 + _DIGEST]), view[4 + _DIGEST :]
    if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != head:
        raise ValueError("checksum mismatch")
    try:
        return pickle.loads(payload)
    except Exception as err:  # noqa: BLE001 - written by other code: any unpickling failure means unusable
        raise ValueError(f"unreadable ({type(err).__name__})") from None


def finite_array(shape: tuple[int, ...] | None = None) -> Check:
    """A check for an array/tensor: the given shape (``-1`` = any) and only finite values."""

    def check(value: Any) -> str | None:
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if shape is not None and (arr.ndim != len(shape) or any(
                s != -1 and s != a for s, a in zip(shape, arr.shape, strict=False))):
            return f"shape {arr.shape}, expected {shape}"
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            return "non-finite values"
        return None

    return check


def finite_state_dict(reference: dict[str, torch.Tensor], field: str | None = "state_dict") -> Check:
    """A check for model weights: the reference's names and shapes, finite floating values.

    ``field`` names the weights inside a dict entry (``{"state_dict": ..., "seconds": ...}``).
    """

    def check(value: Any) -> str | None:
        sd = value.get(field) if field is not None and isinstance(value, dict) else value
        if not isinstance(sd, dict):
            return "no weights"
        if set(sd) != set(reference):
            return "weights for another architecture"
        for name, t in sd.items():
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(reference[name].shape):
                return f"weight {name} has the wrong shape"
            if t.is_floating_point() and not torch.isfinite(t).all():
                return f"weight {name} is not finite"
        return None

    return check


class StepManifest:
    """Which steps of a multi-step computation in ``folder`` finished, and the checksums of
    the files each left (the ``PARTS`` file).

    Opening a folder deletes every file that no finished step recorded or whose bytes
    no longer match, and forgets the steps that made them: whatever an interrupted
    step left behind is recomputed, never trusted.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, "PARTS")
        try:
            with open(self.path) as fh:
                saved = json.load(fh)
            steps = {str(k): list(v) for k, v in saved["steps"].items()}
            self.files: dict[str, str] = dict(saved["files"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            steps, self.files = {}, {}
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name == "PARTS" or not os.path.isfile(path):
                continue
            if name not in self.files or file_digest(path) != self.files[name]:
                os.remove(path)
                self.files.pop(name, None)
        self.steps = {s: made for s, made in steps.items() if all(f in self.files for f in made)}

    def has(self, step: str) -> bool:
        return step in self.steps

    def record(self, step: str) -> None:
        """Checksum the files ``step`` created or changed and save the manifest atomically."""
        made = {}
        for name in sorted(os.listdir(self.folder)):
            path = os.path.join(self.folder, name)
            if name in ("PARTS", "DONE") or name.endswith(".tmp") or not os.path.isfile(path):
                continue
            h = file_digest(path)
            if self.files.get(name) != h:
                made[name] = h
        self.files.update(made)
        self.steps[step] = sorted(made)
        write_json(self.path, {"steps": self.steps, "files": self.files})

    def finish(self) -> None:
        """Write ``DONE`` listing every file's checksum: the folder is complete."""
        write_json(os.path.join(self.folder, "DONE"), {"files": self.files})


def verify_folder(folder: str) -> str | None:
    """None when ``folder/DONE`` exists and every file it lists matches its checksum, else what is wrong."""
    try:
        with open(os.path.join(folder, "DONE")) as fh:
            files = json.load(fh)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable completion marker"
    for name, expected in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        if file_digest(path) != expected:
            return f"{name} does not match its checksum"
    return None


def write_json(path: str, obj: dict) -> None:
    """Write ``obj`` as JSON atomically (a killed run leaves the old file or the new one)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
