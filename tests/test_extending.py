"""Adding a method is one new module plus one registry line (``tests/toys.py`` writes one of each):
the toy shows up in the CLI's choices, the app's select boxes and the registry-parametrised
contract tests, with no edit anywhere else (the app's select boxes: ``app/test_toy_select_boxes.py``)."""

from __future__ import annotations

import toys


def test_toys_are_cli_choices(with_toys):
    from deltainf_core.cli import build_parser

    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    choices = {o: a.choices for a in run._actions for o in a.option_strings}
    assert toys.ATTACK in choices["--attack"] and toys.DETECTOR in choices["--detector"]
    assert toys.TRANSFORM in choices["--transforms"] and toys.UNLEARNER in choices["--unlearn"]
    assert "--attack-keep-images" in choices  # the toy attack's parameter is a flag too


def test_toys_are_in_the_contract_tests(request):
    toy_of = toys.TOY_OF
    for argname in toys.REGISTRY_ARGS:
        assert toy_of[argname] in toys.registry_names(argname)
    collected: dict[str, set] = {}
    for item in request.session.items:  # the tests of this run, when the contract files are part of it
        for argname, value in getattr(getattr(item, "callspec", None), "params", {}).items():
            if argname in toy_of:
                collected.setdefault(argname, set()).add(value)
    for argname, values in collected.items():
        assert toy_of[argname] in values, argname
