"""Which model to build: a built-in, a torchvision architecture, or the analyst's own class.

``ModelSpec``'s field names are the flags' names (``--model``, ``--model-kwargs``,
``--model-output``, ``--input-mean``, ``--input-std``) so a training config can carry
them as its own fields (``ModelSpec.from_config`` reads them back by name). Its types
stay plain for a generated CLI: text, a JSON object, an index or key, comma lists.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError

TORCHVISION_PREFIX = "torchvision:"

_IDENT = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _f(default: Any, help: str) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelSpec:
    """The architecture under investigation and how it reads its input.

    Images stay in pixel space ``[0, 1]`` everywhere upstream (attacks, test-time
    transformations, uploads); the model normalises inside, so ``input_mean`` /
    ``input_std`` say what the analyst's model expects.
    """

    model: str = _f("smallcnn", "architecture: a built-in name, torchvision:NAME, path/to/file.py:NAME "
                                "or package.module:NAME (NAME a class or a factory function)")
    model_kwargs: dict = _f({}, "keyword arguments for the architecture (a JSON object); num_classes is "
                                "filled in from the data when the class takes it and it is not given")
    model_output: int | str | None = _f(None, "which output is the logits when forward returns a tuple or "
                                              "list (its index) or a dict (its key)")
    input_mean: tuple[float, ...] | None = _f(None, "per-channel mean the model normalises its [0, 1] input "
                                                    "with (None: the data's statistics when the tool trains "
                                                    "it; raw pixels for weights you bring)")
    input_std: tuple[float, ...] | None = _f(None, "per-channel std that goes with input_mean")

    @classmethod
    def from_config(cls, cfg: Any) -> ModelSpec:
        """The spec held by any config object with these field names (e.g. a training config)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)})

    @property
    def kind(self) -> str:
        """``builtin``, ``torchvision``, ``file`` or ``module``."""
        if self.model.startswith(TORCHVISION_PREFIX):
            return "torchvision"
        if ":" not in self.model:
            return "builtin"
        where = self.model.rsplit(":", 1)[0]
        return "file" if where.endswith(".py") or "/" in where or "\\" in where else "module"

    def target(self) -> tuple[str, str]:
        """``(file path or module or torchvision, NAME)`` of a ``WHERE:NAME`` spec."""
        where, _, name = self.model.rpartition(":")
        return where, name

    def validate(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model must be a name such as smallcnn, torchvision:resnet18 or file.py:ClassName")
        looks_like_file = self.model.endswith(".py") or "/" in self.model or "\\" in self.model
        if self.kind != "builtin" or looks_like_file:
            where, name = self.target()
            if not where or not _IDENT.match(name):
                raise ConfigError(f"model {self.model!r} must end in :NAME, the class or function to build "
                                  "(e.g. torchvision:resnet18, nets/cifar.py:ResNet, mypkg.models:make_net)")
            if self.kind == "module" and not _IDENT.match(where):
                raise ConfigError(f"model {self.model!r}: {where!r} is neither a .py file nor a module name")
        if not isinstance(self.model_kwargs, dict) or not all(isinstance(k, str) for k in self.model_kwargs):
            raise ConfigError("model kwargs must be a JSON object of name: value")
        try:
            json.dumps(self.model_kwargs)
        except (TypeError, ValueError):
            raise ConfigError("model kwargs must hold JSON values only (numbers, text, lists, objects)") from None
        if self.model_output is not None and not isinstance(self.model_output, (int, str)):
            raise ConfigError(f"model output must be an index or a key, got {self.model_output!r}")
        if (self.input_mean is None) != (self.input_std is None):
            raise ConfigError("give both input mean and input std, or neither")
        for what, values in (("input mean", self.input_mean), ("input std", self.input_std)):
            if values is None:
                continue
            if len(values) == 0 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ConfigError(f"{what} must be finite numbers, one per channel, got {values!r}")
        if self.input_std is not None and min(self.input_std) <= 0:
            raise ConfigError(f"input std must be positive, got {self.input_std!r}")

    def normalisation(self, channels: int, mean: tuple[float, ...] | None = None,
                      std: tuple[float, ...] | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The spec's mean/std, else ``mean``/``std``, else none at all (0 and 1); checked per channel."""
        if self.input_mean is not None and self.input_std is not None:
            mean, std = tuple(map(float, self.input_mean)), tuple(map(float, self.input_std))
            for what, values in (("input mean", mean), ("input std", std)):
                if len(values) != channels:
                    raise ConfigError(f"{what} has {len(values)} value(s) but the images have {channels} "
                                      f"channel(s); give one per channel")
            return mean, std
        if mean is None or std is None:
            return (0.0,) * channels, (1.0,) * channels
        return tuple(map(float, mean)), tuple(map(float, std))


# -- parsing command-line text -----------------------------------------------------------
def parse_channel_values(text: str, what: str = "input mean") -> tuple[float, ...]:
    """``"0.49,0.48,0.45"`` → a tuple of floats (``ConfigError`` for anything else)."""
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(",") if v != "")
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers such as 0.5,0.5,0.5, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what} must be comma-separated numbers such as 0.5,0.5,0.5, got {text!r}")
    return values


def parse_model_kwargs(text: str) -> dict:
    """``'{"width": 16}'`` → a dict (``ConfigError`` for bad JSON or a non-object)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"model kwargs are not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"model kwargs must be a JSON object such as {{\"width\": 16}}, got {text!r}")
    return value


def parse_model_output(text: str | None) -> int | str | None:
    """``"1"`` → 1 (an index), ``"logits"`` → a key, ``""`` → None."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


__all__ = ["TORCHVISION_PREFIX", "ModelSpec", "parse_channel_values", "parse_model_kwargs", "parse_model_output"]
