"""The analyst's own architecture: ``path/to/file.py:NAME`` or ``package.module:NAME``.

NAME is a class or a factory function returning an ``nn.Module``; it is called with
the spec's keyword arguments, plus ``num_classes`` from the data when its signature
takes one and the arguments do not give it. The file is imported (its code runs, as
in any training script): it must be on the machine that runs the tool — code is never
accepted through an upload. Its own folder is on ``sys.path`` while it imports, so it
can import its sibling modules.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable

from torch import nn

from .base import ModelError

_imported: dict[tuple[str, int, int], types.ModuleType] = {}


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    where = ""
    if isinstance(err, SyntaxError) and err.lineno:
        where = f" (line {err.lineno})"
        text = [err.msg or ""]
    return f"{type(err).__name__}: {text[0] if text else ''}{where}".rstrip(": ")


def import_file(path: str) -> types.ModuleType:
    """Import a ``.py`` file once per version of it (re-imported when it changes on disk)."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ModelError(f"architecture file {path} does not exist")
    if not full.endswith(".py"):
        raise ModelError(f"architecture file {path} must be a Python file ending in .py")
    stat = os.stat(full)
    key = (full, stat.st_mtime_ns, stat.st_size)
    if key in _imported:
        return _imported[key]
    name = "deltainf_user_" + hashlib.sha256(full.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise ModelError(f"architecture file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(full)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    sys.modules[name] = module  # dataclasses and pickling inside the file look themselves up here
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as err:  # noqa: BLE001 - the user's code may raise anything, even SystemExit
        sys.modules.pop(name, None)
        raise ModelError(f"architecture file {path} failed to import: {_one_line(err)}") from None
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    _imported[key] = module
    return module


def import_module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - report the user's exception in one line
        raise ModelError(f"module {name} failed to import: {_one_line(err)}") from None


def resolve(where: str, name: str, is_file: bool) -> Callable[..., nn.Module]:
    """The class or factory ``name`` (dotted for nested attributes) in a file or module."""
    module = import_file(where) if is_file else import_module(where)
    obj: object = module
    for part in name.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items() if not n.startswith("_")
                            and (inspect.isclass(v) or inspect.isfunction(v))
                            and getattr(v, "__module__", None) == module.__name__)
            hint = f" (it defines: {', '.join(public[:8])})" if public else ""
            raise ModelError(f"{where} has no {name!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{where}:{name} is a {type(obj).__name__}, not a class or function")
    return obj  # type: ignore[return-value]


def instantiate(factory: Callable[..., nn.Module], label: str, kwargs: dict, num_classes: int) -> nn.Module:
    """Call ``factory(**kwargs)``, filling ``num_classes`` when it takes one and it is not given."""
    args = dict(kwargs)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if "num_classes" in params and "num_classes" not in args:
        args["num_classes"] = num_classes
    try:
        model = factory(**args)
    except Exception as err:  # noqa: BLE001 - the user's constructor may raise anything
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ModelError(f"{label}({shown}) failed: {_one_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{label} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def source_fingerprint(where: str, is_file: bool) -> str:
    """Hash of the code that defines the architecture (cache keys must change when it does)."""
    path = os.path.abspath(where) if is_file else getattr(import_module(where), "__file__", None)
    h = hashlib.sha256(where.encode())
    if path and os.path.isfile(path):
        with open(path, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


__all__ = ["import_file", "import_module", "instantiate", "resolve", "source_fingerprint"]
