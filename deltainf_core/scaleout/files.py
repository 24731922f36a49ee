"""What a unit or a training replica reads and writes: content-keyed files in the cache, committed atomically.

A task never receives a pickled model or image set: it receives paths and content keys.
The driver writes each model (its architecture as JSON, its weights) and each image set
(NumPy arrays a worker memory-maps) once per key under ``<cache>/scaleout/``; every folder
is written under a temporary name and renamed into place, so a reader sees a complete
folder or none, and a killed writer leaves only a temporary folder behind. Multi-machine
clusters need the cache on a filesystem every node mounts (``--cache-dir``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from ..data.base import ImageSet
from ..errors import DeltaInfError
from ..integrity import file_digest, verify_folder, write_json


class ScaleOutError(DeltaInfError):
    """A cluster that cannot be reached or used, a unit that cannot run, a job that failed."""


def scaleout_dir(cache: str, *parts: str) -> str:
    """``<cache>/scaleout/<parts...>``: everything the engines share besides the store itself."""
    return os.path.join(cache, "scaleout", *parts)


@contextlib.contextmanager
def staged(final: str) -> Iterator[str]:
    """A temporary folder beside ``final`` that becomes ``final`` atomically when the block ends.

    If ``final`` appeared meanwhile (another attempt of the same unit committed first) ours is
    dropped: both hold the same content. An exception leaves nothing behind.
    """
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = f"{final}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    os.makedirs(tmp)
    try:
        yield tmp
        seal_folder(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if verify_folder(final) is not None:  # a damaged earlier commit: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def seal_folder(folder: str) -> None:
    """Write ``DONE`` with every file's checksum (``integrity.verify_folder`` checks it)."""
    files = {n: file_digest(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
             if n != "DONE" and os.path.isfile(os.path.join(folder, n))}
    write_json(os.path.join(folder, "DONE"), {"files": files})


def committed(folder: str, verify: bool = True) -> bool:
    """Whether ``folder`` is a complete commit whose files match their checksums.

    ``verify=False`` only checks that the commit's files are all there: enough for a reader of a
    folder that ``staged`` renamed into place (it is complete or absent), and it does not hash a
    training set's worth of pixels in every unit.
    """
    if not verify:
        try:
            with open(os.path.join(folder, "DONE")) as fh:
                return all(os.path.isfile(os.path.join(folder, n)) for n in json.load(fh)["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
    return os.path.isdir(folder) and verify_folder(folder) is None


def link(src: str, dst: str) -> None:
    """``dst`` as a hard link of ``src`` (a copy across filesystems): factor files are never rewritten."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# -- image sets ----------------------------------------------------------------------------
def save_image_set(cache: str, key: str, data: ImageSet) -> str:
    """The folder holding ``data`` under ``key`` (written once): pixels and labels as .npy, class names."""
    final = scaleout_dir(cache, "data", key)
    if committed(final):
        return final
    with staged(final) as tmp:
        np.save(os.path.join(tmp, "pixels.npy"), data.pixels.contiguous().numpy())
        np.save(os.path.join(tmp, "labels.npy"), data.labels.contiguous().numpy())
        with open(os.path.join(tmp, "classes.json"), "w") as fh:
            json.dump(list(data.classes), fh)
    return final


def load_image_set(folder: str) -> ImageSet:
    """The image set in ``folder``, its pixels memory-mapped (copy-on-write: never written back)."""
    if not committed(folder, verify=False):
        raise ScaleOutError(f"the image set {folder} is missing or damaged (is the cache on a filesystem "
                            "every Ray node mounts?)")
    pixels = torch.from_numpy(np.load(os.path.join(folder, "pixels.npy"), mmap_mode="c"))
    labels = torch.from_numpy(np.load(os.path.join(folder, "labels.npy")))
    with open(os.path.join(folder, "classes.json")) as fh:
        return ImageSet(pixels, labels, json.load(fh))


# -- models --------------------------------------------------------------------------------
def model_recipe(model: nn.Module) -> dict:
    """How to build ``model``'s architecture again, as JSON (``models.build_like``'s facts)."""
    from ..models import Classifier

    arch = getattr(model, "arch", None)
    if not isinstance(model, Classifier) or arch is None:
        raise ScaleOutError("this model does not record its architecture, so no other process can build it; "
                            "use --engine local")
    mean, std = model.normalize.values()
    spec = {**asdict(arch.spec), "input_mean": list(mean), "input_std": list(std)}
    return {"spec": spec, "image_shape": list(arch.image_shape), "num_classes": arch.num_classes,
            "small_images": arch.small_images}


def build_from_recipe(recipe: dict) -> nn.Module:
    """A freshly built model of ``recipe``'s architecture (its weights are loaded after)."""
    from ..models import ModelSpec, build_model

    spec = dict(recipe["spec"])
    spec["input_mean"], spec["input_std"] = tuple(spec["input_mean"]), tuple(spec["input_std"])
    return build_model(ModelSpec(**spec), tuple(recipe["image_shape"]), int(recipe["num_classes"]),
                       small_images=bool(recipe["small_images"]))


def save_model(cache: str, key: str, model: nn.Module) -> str:
    """The folder holding ``model`` under ``key`` (written once): its recipe and its weights."""
    final = scaleout_dir(cache, "models", key)
    if committed(final):
        return final
    recipe = model_recipe(model)
    with staged(final) as tmp:
        with open(os.path.join(tmp, "recipe.json"), "w") as fh:
            json.dump(recipe, fh)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, os.path.join(tmp, "weights.pt"))
    return final


def load_model(folder: str) -> nn.Module:
    """The model saved in ``folder``: built from its recipe, its weights loaded, in eval mode."""
    if not committed(folder, verify=False):
        raise ScaleOutError(f"the model {folder} is missing or damaged (is the cache on a filesystem every "
                            "Ray node mounts?)")
    with open(os.path.join(folder, "recipe.json")) as fh:
        model = build_from_recipe(json.load(fh))
    model.load_state_dict(torch.load(os.path.join(folder, "weights.pt"), map_location="cpu", weights_only=True))
    return model.eval()


class ProgressFile:
    """How far a unit or a training replica got, as JSON a driver polls: at most one write a second.

    A file, not a message, so that progress survives the process (a killed attempt's last count
    stays readable) and needs nothing but the shared cache folder.
    """

    def __init__(self, path: str, total: float, every: float = 1.0, **facts: object) -> None:
        import socket
        import time

        self.path, self.total, self.every, self._time = path, total, every, time.monotonic
        self.facts = {"pid": os.getpid(), "host": socket.gethostname(), **facts}
        self.done = 0.0
        self.last = -every
        self.write()

    def add(self, n: float) -> None:
        self.done += n
        if self._time() - self.last >= self.every:
            self.write()

    def set(self, frac: float, message: str = "") -> None:
        """A ``training.Progress`` sink: the fraction done and a message."""
        self.done = frac * self.total
        self.facts["message"] = message
        if self._time() - self.last >= self.every or frac >= 1.0:
            self.write()

    def write(self) -> None:
        self.last = self._time()
        write_json(self.path, {**self.facts, "done": self.done, "total": self.total})


def read_progress(path: str) -> dict | None:
    """What a ``ProgressFile`` last wrote; None when it does not exist (yet) or is being replaced."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
