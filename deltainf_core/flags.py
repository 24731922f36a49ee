"""Command-line flags generated from the config dataclasses and the registries.

Convention (so a new config field or a new method's parameter is a flag with no edit here):

- every field of every stage config (``config.STAGES``) and of ``Scenario`` is a flag
  named after it, ``--max-train`` for ``DataConfig.max_train``; a field name used by more
  than one stage gets the stage as prefix (``--attack-seed``, ``--unlearn-epochs``); a
  field naming a registry entry is named after the family (``--detector``, ``--unlearner``);
- help text is the field's ``help`` metadata plus its default; ``choices`` come from the
  registry named by ``family`` metadata (or the ``choices`` metadata; an ``open_family``
  also takes other forms, checked by the config); a ``parser`` metadata names how the text
  is read; booleans get ``--x/--no-x``; tuples take several values and may be repeated; a
  ``params`` dict takes
  ``--<stage>-param KEY=VALUE`` (repeatable);
- every field of every registered parameters dataclass of an attack, detector or
  unlearner is a flag ``--<stage>-<field>`` (``--attack-size``, ``--detect-effect-size``);
  where that name is taken, ``--<stage>-<entry>-<field>``. It applies to the chosen
  method only if the method has that parameter;
- a few short names from the specification stay: ``--seed`` (every stage's seed unless
  its own flag is given), ``--epochs`` (training), ``--unlearn`` (the unlearner),
  ``--rounds`` (``max_rounds``).

Every flag defaults to "not given", so the dataclass defaults are the only defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from .config import STAGES, ComputeConfig, Scenario
from .errors import ConfigError
from .registry import FAMILIES

PARAM_FAMILIES = {"attack": "attack", "detect": "detector", "unlearn": "unlearner"}
"""Stage -> the registry family whose entries' parameters it carries in ``params``."""
ALIASES = {("train", "epochs"): ("--epochs",), ("unlearn", "method"): ("--unlearn",),
           ("", "max_rounds"): ("--rounds",)}
"""Extra option strings the specification names (SPEC §3)."""
SEEDED = ("attack", "train", "collapse", "unlearn")
"""Stages whose ``seed`` follows ``--seed`` unless given on their own."""


@dataclass(frozen=True)
class Flag:
    """One generated flag: where its value goes.

    stage: the Scenario field (``""`` for Scenario's own fields).
    field: the config field, or the parameter name for a method-parameter flag.
    entries: for a method-parameter flag, the registry entries that take it.
    """

    stage: str
    field: str
    options: tuple[str, ...]
    entries: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return f"{self.stage}.{'param.' if self.entries else ''}{self.field}"


def _option(*parts: str) -> str:
    return "--" + "-".join(p for p in parts if p).replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """``X`` from ``X | None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if optional and len(args) == 1 else annotation


def choice_field(cls: type, family: str) -> str:
    """The field of a stage config that holds the name of a ``family`` entry."""
    return next(f.name for f in fields(cls) if f.metadata.get("family") == family)


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value is None or value == {} or value == ():
        return ""
    if isinstance(value, tuple):
        value = " ".join(map(str, value))
    elif isinstance(value, float):
        value = f"{value:.4g}"
    return f" (default: {value})"


def _choices(f: dataclasses.Field, annotation: Any) -> list | None:
    if f.metadata.get("open_family"):
        return None  # registered names or other forms (``torchvision:NAME``): checked by the config
    if "family" in f.metadata:
        return FAMILIES[f.metadata["family"]].names()
    if "choices" in f.metadata:
        return list(f.metadata["choices"])
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return None


def _value(text: str) -> Any:
    """A JSON value where it parses (numbers, true/false, null, lists), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), _value(raw)


def _parser(name: str) -> Any:
    """A field's ``parser`` metadata: text → value, with the config's one-line error."""
    from .models import spec

    parse = {"model_kwargs": spec.parse_model_kwargs, "model_output": spec.parse_model_output,
             "channels": spec.parse_channel_values}[name]

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = name.replace("_", " ")
    return convert


def _add(parser: argparse.ArgumentParser, flag: Flag, f: dataclasses.Field, annotation: Any, help: str) -> None:
    base = _base_type(annotation)
    origin = typing.get_origin(base)
    if f.metadata.get("open_family"):
        help += f" (built-in: {', '.join(FAMILIES[f.metadata['family']].names())})"
    kw: dict[str, Any] = {"dest": flag.dest, "default": None, "help": help.replace("%", "%%")}
    if base is not bool:
        kw["metavar"] = f.metadata.get("metavar", f.name.upper())
    if "parser" in f.metadata:
        kw["type"] = _parser(f.metadata["parser"])
    elif base is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif base is dict or origin is dict:
        kw.update(type=_key_value, action="append", metavar="KEY=VALUE")
    elif origin in (tuple, list):  # several values, and the flag may be repeated: --x 1 2 --x 3
        inner = (typing.get_args(base) or (str,))[0]
        kw.update(nargs="+", action="extend", type=inner if inner in (int, float, str) else str)
    elif base in (int, float, str):
        kw["type"] = base
    else:  # Literal and anything else: parsed like a JSON value, checked by the dataclass
        kw["type"] = _value
    choices = _choices(f, base)
    if choices is not None and kw.get("action") in (None, "extend"):
        kw["choices"] = choices
        kw.pop("metavar", None)
    parser.add_argument(*flag.options, **kw)


def add_scenario_flags(parser: argparse.ArgumentParser, exclude: Iterable[str] = ()) -> list[Flag]:
    """Add a flag for every config field and every method parameter; returns them.

    ``exclude``: ``"stage.field"`` dests not to add (``compare`` varies the method itself).
    """
    excluded = set(exclude)
    counts: dict[str, int] = {}
    for cls in STAGES.values():
        for f in fields(cls):
            counts[f.name] = counts.get(f.name, 0) + 1
    flags: list[Flag] = []
    taken: set[str] = {"--seed"}
    sections = [(stage, cls) for stage, cls in STAGES.items()] + [("", Scenario)]
    for stage, cls in sections:
        hints = typing.get_type_hints(cls)
        group = parser.add_argument_group(f"{stage or 'scenario'} ({cls.__name__})")
        for f in fields(cls):
            if (cls is Scenario and f.name in STAGES) or f"{stage}.{f.name}" in excluded:
                continue
            name = _option(stage if counts.get(f.name, 0) > 1 else "", f.name)
            if "family" in f.metadata and typing.get_origin(hints[f.name]) not in (tuple, list):
                name = _option(f.metadata["family"])  # one entry of a family: the family's name
            options = (*ALIASES.get((stage, f.name), ()), name)
            if f.name == "params":
                options = (_option(stage, "param"), name)
            flag = Flag(stage, f.name, options)
            _add(group, flag, f, hints[f.name], f.metadata.get("help", "") + _default_text(f))
            taken.update(options)
            flags.append(flag)
    for stage, family in PARAM_FAMILIES.items():
        flags += _add_param_flags(parser, stage, FAMILIES[family], taken)
    return flags


def add_compute_flags(parser: argparse.ArgumentParser) -> list[Flag]:
    """One flag per ``ComputeConfig`` field, named after it (``--engine``, ``--ray-address``): where the work
    runs, kept apart from the scenario because no cache key holds it."""
    hints = typing.get_type_hints(ComputeConfig)
    group = parser.add_argument_group("compute (ComputeConfig: where the work runs, never part of a cache key)")
    flags = []
    for f in fields(ComputeConfig):
        flag = Flag("compute", f.name, (_option(f.name),))
        _add(group, flag, f, hints[f.name], f.metadata.get("help", "") + _default_text(f))
        flags.append(flag)
    return flags


def compute_from_args(args: argparse.Namespace, flags: list[Flag]) -> ComputeConfig:
    """The ``ComputeConfig`` the compute flags describe (its defaults for everything not given)."""
    given = {flag.field: getattr(args, flag.dest) for flag in flags if getattr(args, flag.dest, None) is not None}
    cfg = ComputeConfig(**given)
    cfg.validate()
    return cfg


def _add_param_flags(parser: argparse.ArgumentParser, stage: str, registry, taken: set[str]) -> list[Flag]:
    """One flag per method-parameter name of a family (shared by the methods that take it)."""
    by_option: dict[str, tuple[str, dataclasses.Field, Any, list[str], dict[str, list[str]]]] = {}
    for entry in registry.names():
        cls = registry.params(entry)
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            option = _option(stage, f.name)
            if option in taken:
                option = _option(stage, entry, f.name)
            if option not in by_option:
                by_option[option] = (f.name, f, hints[f.name], [], {})
            by_option[option][3].append(entry)
            # methods sharing a parameter name may mean different things by it: each says its own
            by_option[option][4].setdefault(f.metadata.get("help", "") + _default_text(f), []).append(entry)
    group = parser.add_argument_group(f"{registry.family} parameters (apply to the methods named)")
    flags = []
    for option, (name, f, annotation, entries, helps) in by_option.items():
        flag = Flag(stage, name, (option,), tuple(entries))
        help = "; ".join(f"{', '.join(names)}: {text}" for text, names in helps.items())
        _add(group, flag, f, annotation, help)
        taken.add(option)
        flags.append(flag)
    return flags


def scenario_from_args(args: argparse.Namespace, flags: list[Flag], strict: bool = True) -> Scenario:
    """The Scenario the flags describe: dataclass defaults for everything not given.

    ``strict``: a method parameter given for a method that does not take it is an error
    (``run``); otherwise each method later keeps only the parameters it takes (``compare``).
    """
    values: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES} | {"": {}}
    given: dict[str, list[tuple[Flag, Any]]] = {stage: [] for stage in PARAM_FAMILIES}
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        if flag.entries:
            given[flag.stage].append((flag, value))
        elif flag.field == "params":
            values[flag.stage]["params"] = dict(value)
        else:
            values[flag.stage][flag.field] = tuple(value) if isinstance(value, list) else value
    seed = getattr(args, "seed", None)
    if seed is not None:
        for stage in SEEDED:
            values[stage].setdefault("seed", seed)
    stages = {stage: cls(**values[stage]) for stage, cls in STAGES.items()}
    for stage, family in PARAM_FAMILIES.items():
        chosen = getattr(stages[stage], choice_field(STAGES[stage], family))
        for flag, value in given[stage]:
            if chosen in flag.entries or not strict:
                stages[stage].params.setdefault(flag.field, value)
            else:
                raise ConfigError(f"{flag.options[0]} applies to {FAMILIES[family].family} "
                                  f"{', '.join(flag.entries)}, not {chosen}")
    scn = Scenario(**stages, **values[""])
    scn.validate()
    return scn
