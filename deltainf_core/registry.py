"""One small registry type shared by every family (datasets, models, attacks, ...).

An entry describes itself: a one-line help, a parameters dataclass (its fields carry
``help`` metadata), a code version (part of every cache key built from it) and
*traits* — facts other modules need to treat it right (``needs_influence`` for a
detector, ``has_success_rate`` for an attack, ...). Each family declares its traits
and their defaults once, so no other module keeps a list of names that behave
differently. Adding a method is one new module plus one ``REGISTRY.register(...)``
line; the CLI choices, the app's select boxes and the parametrised tests read the
registry, so they cannot drift.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")

_DEFINED_IN = {"dataset": ".data", "model": ".models", "attack": ".attacks", "detector": ".detectors",
               "unlearner": ".unlearning", "transformation": ".collapse", "flagging rule": ".collapse"}
"""Where each built-in family's registry is defined: imported when first asked for, so that
light modules (the CLI's path checks) never pay for torch."""


class _Families(dict):
    def __missing__(self, family: str) -> Registry:
        if family in _DEFINED_IN:
            importlib.import_module(_DEFINED_IN[family], __package__)
            if family in self:
                return self[family]
        raise KeyError(family)


FAMILIES: dict[str, Registry] = _Families()
"""Every registry by family name, so a config field can name the family its value comes from
(``metadata={"family": "model"}``) and the CLI and the app read the choices from it."""


@dataclass(frozen=True)
class NoParams:
    """Parameters of an entry that takes none."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and what it says about itself.

    name: the registry key (CLI choice, JSON value).
    obj: the callable (or object) itself.
    help: one line shown in the CLI and the app.
    params: dataclass of the entry's parameters (fields with ``help`` metadata).
    version: code version; bump when the entry's output changes so cached results
        made by the old code are never read again.
    traits: the family's declared traits, defaults filled in.
    """

    name: str
    obj: T
    help: str
    params: type = NoParams
    version: int = 1
    traits: Mapping[str, Any] = field(default_factory=dict)

    def trait(self, name: str) -> Any:
        return self.traits[name]

    def parse_params(self, values: Mapping[str, Any] | None, label: str = "") -> Any:
        """An instance of ``params`` from a plain dict; unknown or mistyped keys are refused."""
        return parse_params(self.params, values or {}, label or self.name)

    def param_help(self) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(self.params)}

    def param_defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params())


class Registry(Generic[T]):
    """Name -> ``Entry`` mapping with a readable error for unknown names.

    ``traits`` declares the family's traits with their defaults; registering an entry
    with an undeclared trait is a programming error (a typo would otherwise be a
    silent default).
    """

    def __init__(self, family: str, traits: Mapping[str, Any] | None = None) -> None:
        self.family = family
        self.declared: dict[str, Any] = dict(traits or {})
        self._entries: dict[str, Entry[T]] = {}
        FAMILIES[family] = self

    def register(self, name: str, obj: T, help: str = "", *, params: type = NoParams, version: int = 1,
                 **traits: Any) -> T:
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        unknown = sorted(set(traits) - set(self.declared))
        if unknown:
            raise ValueError(f"{self.family} {name!r}: undeclared trait(s) {', '.join(unknown)}")
        if not dataclasses.is_dataclass(params):
            raise TypeError(f"{self.family} {name!r}: params must be a dataclass type")
        params()  # every field needs a default: an entry must run with no parameters given
        self._entries[name] = Entry(name, obj, help, params, version, {**self.declared, **traits})
        return obj

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register toy entries and take them out again)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise UnknownNameError(f"unknown {self.family} {name!r} (choose from: {known})") from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def help(self, name: str) -> str:
        return self.entry(name).help

    def trait(self, name: str, trait: str) -> Any:
        return self.entry(name).trait(trait)

    def version(self, name: str) -> int:
        return self.entry(name).version

    def parse_params(self, name: str, values: Mapping[str, Any] | None) -> Any:
        return self.entry(name).parse_params(values, f"{self.family} {name!r}")

    def params(self, name: str) -> type:
        return self.entry(name).params

    def accepted(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``values`` that entry ``name`` takes as parameters (the rest is dropped)."""
        known = {f.name for f in dataclasses.fields(self.params(name))}
        return {k: v for k, v in values.items() if k in known}

    def names(self, **traits: Any) -> list[str]:
        """Registered names, optionally only those whose traits equal the given values."""
        return [n for n, e in self._entries.items() if all(e.traits.get(k) == v for k, v in traits.items())]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


# -- parameters ------------------------------------------------------------------------------
def params_from_signature(fn: Callable[..., Any], skip: int, name: str) -> type:
    """A frozen dataclass of ``fn``'s parameters after the first ``skip`` positional ones.

    Lets a plain function ``f(scores, queries, ..., *, effect_size: float = 2.0)`` register
    in one line: its keyword parameters (each needs a default and an annotation) become
    the entry's parameters, with the annotation as type and no help text.
    """
    fields = []
    hints = typing.get_type_hints(fn)
    for p in list(inspect.signature(fn).parameters.values())[skip:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty or p.name not in hints:
            raise TypeError(f"{name}: parameter {p.name!r} needs a default and a type annotation")
        fields.append((p.name, hints[p.name], dataclasses.field(default=p.default)))
    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Params", fields, frozen=True)


def parse_params(cls: type, values: Mapping[str, Any], label: str) -> Any:
    """Build dataclass ``cls`` from ``values``: one sentence for an unknown key or a wrong type.

    Values coming from JSON or the command line are coerced where it is lossless
    (an int for a float field, a list for a tuple field); anything else is refused.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{label} parameters must be a mapping of name to value, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        names = ", ".join(known) or "none"
        raise ConfigError(f"unknown {label} parameter(s) {', '.join(unknown)} (known: {names})")
    hints = typing.get_type_hints(cls)
    out = {k: coerce(v, hints[k], f"{label} parameter {k}") for k, v in values.items()}
    obj = cls(**out)
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def coerce(value: Any, annotation: Any, what: str) -> Any:
    """``value`` as ``annotation`` (int, float, bool, str, X | None, tuple[...], list[...], Literal)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, what)
            except ConfigError as err:
                errors.append(err)
        raise errors[0] if errors else ConfigError(f"{what} cannot be {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{what} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{what} must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [coerce(v, inner, what) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{what} must be a JSON object, got {value!r}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{what} must be text, got {value!r}")
    return value
