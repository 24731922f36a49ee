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


def test_every_family_is_found_from_a_cold_start():
    """Each registry is reachable through ``FAMILIES`` before anything imported it (the lazy map
    in ``registry._DEFINED_IN`` names every family the package defines, with its entries)."""
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import sys, json\n"
        "from deltainf_core.registry import FAMILIES, _DEFINED_IN\n"
        "cold = {f: FAMILIES[f].names() for f in _DEFINED_IN}\n"
        "import deltainf_core, deltainf_core.pipeline\n"
        "warm = {f: r.names() for f, r in FAMILIES.items()}\n"
        "print(json.dumps([cold, warm]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    cold, warm = json.loads(proc.stdout.strip().splitlines()[-1])
    assert cold == warm, "a family registered by the package is missing from registry._DEFINED_IN"
    assert all(cold.values()), [f for f, names in cold.items() if not names]
