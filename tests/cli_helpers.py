"""The CLI as the tests drive it: in process (``run_cli``) and the tiny scenario as flags."""

from __future__ import annotations

from deltainf_core.cli import main

TINY_FLAGS = ["--max-train", "800", "--max-test", "300", "--poison-frac", "0.05", "--attack-size", "4",
              "--epochs", "5", "--batch-size", "64", "--n-copies", "12", "--n-copies-extra", "6",
              "--max-affected", "3", "--rounds", "1"]
"""conftest's ``tiny_scenario`` as flags (the same cache keys)."""


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``run --quiet ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main(["run", "--quiet", *args])
    except SystemExit as exit_:
        rc = exit_.code
    out, err = capsys.readouterr()
    return rc, out, err
