"""The house rules that keep the layout guessable (checked on the source, no imports needed)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", modules("deltainf_core") + modules("pages"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_the_limit(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_core_never_imports_streamlit():
    offenders = [str(p.relative_to(ROOT)) for p in modules("deltainf_core") if "streamlit" in imported(p)]
    assert offenders == []


def test_pages_and_their_helpers_never_touch_torch_or_kronfluence():
    """Tensor work belongs to the core; the app's code only calls it."""
    offenders = [str(p.relative_to(ROOT)) for p in [*modules("pages"), ROOT / "app.py"]
                 if imported(p) & {"torch", "torchvision", "kronfluence"}]
    assert offenders == []


def test_app_py_is_the_only_python_file_at_the_root():
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["app.py"]


def test_benchmarks_import_the_installed_package():
    assert [p.name for p in modules("bench") if "sys.path.insert" in p.read_text()
            and p.name in ("core_pipeline.py", "app_latency.py", "witches_brew_trials.py")] == []


def test_the_package_declares_the_requirements_and_a_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0]: d for d in project["project"]["dependencies"]}
    required = {re.split(r"[<>=!~ ]", line, maxsplit=1)[0]: line.replace(" ", "")
                for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "-"))}
    assert {k: v.replace(" ", "") for k, v in declared.items()} == required, \
        "pyproject.toml [project] dependencies must list requirements.txt's ranges"
    assert project["project"]["scripts"]["deltainf"] == "deltainf_core.cli:main"
    assert "build-backend" in project["build-system"]
