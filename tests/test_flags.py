"""The CLI's flags are generated from the configs and the registries: none can be missing or drift."""

from __future__ import annotations

import dataclasses

import pytest

from deltainf_core import ATTACKS, DETECTORS, STAGES, UNLEARNERS, Scenario
from deltainf_core.cli import build_parser
from deltainf_core.errors import ConfigError
from deltainf_core.flags import PARAM_FAMILIES, add_scenario_flags, scenario_from_args
from deltainf_core.registry import FAMILIES

SPEC_FLAGS = ("--dataset", "--data-dir", "--model", "--attack", "--poison-frac", "--victim-class", "--target-class",
              "--epochs", "--seed", "--detector", "--unlearn", "--out", "--checkpoint", "--rounds", "--cache-dir",
              "--quiet", "--debug")
"""The flag names SPEC §3 and the README promise."""


def subparser(command: str):
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[command]


def actions(command: str) -> dict:
    return {a.dest: a for a in subparser(command)._actions}


@pytest.mark.parametrize("command", ["run", "compare"])
def test_every_field_of_every_stage_config_has_a_flag(command):
    """Walk the dataclasses: each field is a flag with the field's help text (and choices)."""
    found = actions(command)
    varied = {"attack.attack", "detect.detector", "unlearn.method"} if command == "compare" else set()
    sections = [*STAGES.items(), ("", Scenario)]
    for stage, cls in sections:
        for f in dataclasses.fields(cls):
            if cls is Scenario and f.name in STAGES:
                continue
            dest = f"{stage}.{f.name}"
            if dest in varied:
                assert dest not in found  # compare takes lists of methods instead
                continue
            assert dest in found, f"{cls.__name__}.{f.name} has no flag"
            action = found[dest]
            assert f.metadata["help"] in action.help.replace("%%", "%"), dest
            assert any(f.name.replace("_", "-") in o or f.metadata.get("family", "@") in o
                       for o in action.option_strings), (dest, action.option_strings)
            if "family" in f.metadata:
                assert list(action.choices) == FAMILIES[f.metadata["family"]].names()


def test_every_method_parameter_has_a_flag():
    found = actions("run")
    for stage, family in PARAM_FAMILIES.items():
        registry = FAMILIES[family]
        for entry in registry.names():
            for f in dataclasses.fields(registry.params(entry)):
                matches = [a for d, a in found.items() if d == f"{stage}.param.{f.name}"]
                assert matches, f"{family} {entry}: parameter {f.name} has no flag"
                assert any(f.metadata.get("help", "") in a.help.replace("%%", "%") and entry in a.help for a in matches)


def test_the_specification_flag_names_work():
    options = {o for a in subparser("run")._actions for o in a.option_strings}
    assert set(SPEC_FLAGS) <= options


def test_flag_defaults_are_the_dataclass_defaults():
    parser = build_parser()
    args = parser.parse_args(["run"])
    assert scenario_from_args(args, args.flags).as_dict() == Scenario().as_dict()


def test_flags_fill_every_stage():
    parser = build_parser()
    args = parser.parse_args([
        "run", "--dataset", "mnist5k", "--max-train", "600", "--attack", "smooth", "--attack-budget", "0.2",
        "--attack-param", "cutoff=3", "--epochs", "7", "--no-augment", "--strategy", "kfac",
        "--transforms", "flip", "blur", "--n-copies", "9", "--detector", "delta_published", "--detect-th", "-40",
        "--unlearn", "cf", "--unlearn-epochs", "2", "--seed", "4", "--collapse-seed", "9", "--rounds", "3"])
    scn = scenario_from_args(args, args.flags)
    assert scn.data.max_train == 600 and scn.train.epochs == 7 and scn.train.augment is False
    assert scn.attack.attack == "smooth" and scn.attack.params == {"budget": 0.2, "cutoff": 3}
    assert scn.influence.strategy == "kfac" and scn.collapse.transforms == ("flip", "blur")
    assert scn.collapse.n_copies == 9 and scn.detect.params == {"th": -40}
    assert scn.unlearn.method == "cf" and scn.unlearn.epochs == 2 and scn.max_rounds == 3
    assert (scn.attack.seed, scn.train.seed, scn.collapse.seed, scn.unlearn.seed) == (4, 4, 9, 4)


def test_compare_keeps_each_methods_own_parameters():
    parser = build_parser()
    args = parser.parse_args(["compare", "--attack-size", "5", "--attack-budget", "0.2", "--detect-top-k", "7"])
    base = scenario_from_args(args, args.flags, strict=False)
    assert ATTACKS.accepted("badnet", base.attack.params) == {"size": 5}
    assert ATTACKS.accepted("smooth", base.attack.params) == {"budget": 0.2}
    assert DETECTORS.accepted("spectral", base.detect.params) == {"top_k": 7}
    assert DETECTORS.accepted("delta", base.detect.params) == {}
    assert UNLEARNERS.accepted("eu", base.unlearn.params) == {}


def test_bad_combinations_are_one_sentence():
    parser = build_parser()
    args = parser.parse_args(["run", "--attack-budget", "0.2"])
    with pytest.raises(ConfigError, match="--attack-budget applies to attack smooth, not badnet"):
        scenario_from_args(args, args.flags)
    args = parser.parse_args(["run", "--rounds", "0"])
    with pytest.raises(ConfigError, match="at least one detect/unlearn round"):
        scenario_from_args(args, args.flags)


def test_a_clashing_parameter_name_gets_the_method_in_its_flag():
    """A method parameter named like a stage field (seed, epochs, ...) must not shadow it."""
    import argparse

    @dataclasses.dataclass(frozen=True)
    class SeededParams:
        seed: int = dataclasses.field(default=1, metadata={"help": "the toy's own seed"})

    UNLEARNERS.register("toy_seeded", lambda ctx: None, "toy", params=SeededParams)
    try:
        flags = add_scenario_flags(argparse.ArgumentParser())
    finally:
        UNLEARNERS.unregister("toy_seeded")
    options = {o: f for f in flags for o in f.options}
    assert options["--unlearn-seed"].entries == ()
    assert options["--unlearn-toy-seeded-seed"].entries == ("toy_seeded",)
