"""Which code measured a benchmark result, so a committed figure cannot go stale silently.

Every ``bench/results/*.json`` written by a benchmark carries ``"provenance"``: the git
commit it ran on and the code versions of the stages it measured — registry versions of
the models, attacks, detectors, unlearners and datasets involved, and the store's stage
versions (``"train"`` is the training recipe's); and the version of the rule that cuts an
epoch into mini-batches (``"epoch_batches"``: a result without it predates equal batches,
and ``studies/batching_audit.py`` says whether any of its trainings changed).
``tests/test_bench_results.py`` compares them with the current code and fails when a stage
changed, so changing the model, the recipe or an unlearner forces a re-run of the
benchmarks that depend on it.

    out["provenance"] = provenance(stages=["poison", "train"], models=["smallcnn"], attacks=["badnet"])
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _registries() -> dict:
    from deltainf_core.attacks import ATTACKS
    from deltainf_core.data import DATASETS
    from deltainf_core.detectors import DETECTORS
    from deltainf_core.models import MODELS
    from deltainf_core.unlearning import UNLEARNERS

    return {"model": MODELS, "attack": ATTACKS, "detector": DETECTORS, "unlearner": UNLEARNERS,
            "dataset": DATASETS}


def _stage_versions() -> dict[str, int]:
    from deltainf_core.store import STAGE_VERSIONS

    return dict(STAGE_VERSIONS)


def _epoch_batches() -> int:
    from deltainf_core.training import EPOCH_BATCHES_VERSION

    return EPOCH_BATCHES_VERSION


def current_defaults() -> dict[str, str]:
    """The settings a "default workload" benchmark measures implicitly: change one and every result
    that recorded the old value is stale (the default rule's flagged set feeds unlearning, timings...)."""
    from deltainf_core.config import DetectConfig, UnlearnConfig

    return {"detector": DetectConfig().detector, "unlearner": UnlearnConfig().method}


def git_commit() -> tuple[str | None, bool]:
    """(HEAD commit, whether tracked files differ from it); (None, False) outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip() != ""
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return head, dirty


def provenance(*, stages: Iterable[str] = (), models: Iterable[str] = (), attacks: Iterable[str] = (),
               detectors: Iterable[str] = (), unlearners: Iterable[str] = (),
               datasets: Iterable[str] = (), defaults: Iterable[str] = ()) -> dict:
    """The versions of everything named, as now; a dataset read from a folder is not registered (skip it).

    ``defaults``: the default settings (``current_defaults``' keys) the result measured without
    naming them, e.g. ``["detector"]`` for a benchmark of ``run``'s default investigation; the
    default's code version is recorded with the others."""
    regs = _registries()
    stage_versions = _stage_versions()
    now = current_defaults()
    defaults = list(defaults)
    detectors = list(dict.fromkeys([*detectors, *([now["detector"]] if "detector" in defaults else [])]))
    unlearners = list(dict.fromkeys([*unlearners, *([now["unlearner"]] if "unlearner" in defaults else [])]))
    versions: dict[str, dict[str, int]] = {"stage": {s: stage_versions[s] for s in stages}}
    for family, names in (("model", models), ("attack", attacks), ("detector", detectors),
                          ("unlearner", unlearners), ("dataset", datasets)):
        versions[family] = {n: regs[family].version(n) for n in names}
    commit, dirty = git_commit()
    out = {"git_commit": commit, "git_dirty": dirty, "versions": versions, "epoch_batches": _epoch_batches()}
    if defaults:
        out["defaults"] = {k: now[k] for k in defaults}
    return out


def stale_parts(recorded: dict) -> list[str]:
    """What in ``recorded`` (a result's ``"provenance"``) differs from the current code; [] if current."""
    versions = recorded.get("versions")
    if not isinstance(versions, dict) or not versions:
        return ["no code versions recorded"]
    regs = _registries()
    stage_versions = _stage_versions()
    out = []
    for family, entries in versions.items():
        for name, version in entries.items():
            if family == "stage":
                now = stage_versions.get(name)
            elif family in regs:
                now = regs[family].version(name) if name in regs[family] else None
            else:
                out.append(f"unknown family {family!r}")
                continue
            if now is None:
                out.append(f"{family} {name!r} no longer exists")
            elif now != version:
                out.append(f"{family} {name!r} was v{version}, is now v{now}")
    batches = recorded.get("epoch_batches")
    if batches is not None and batches != _epoch_batches():
        out.append(f"training batches were version {batches}, are now {_epoch_batches()}")
    defaults = current_defaults()
    for setting, value in (recorded.get("defaults") or {}).items():
        if defaults.get(setting) != value:
            out.append(f"measured with the default {setting} {value!r}, which is now {defaults.get(setting)!r}")
    return out


def stamp(paths: Iterable[str], **names: list[str]) -> None:
    """Add ``"provenance"`` to results the product itself wrote (e.g. ``compare``'s JSON, which
    the core writes without knowing about git): run it right after, on the same checkout."""
    import json

    prov = provenance(**names)
    for path in paths:
        data = json.loads(Path(path).read_text())
        data["provenance"] = prov
        Path(path).write_text(json.dumps(data, indent=1, default=str))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="stamp results files with the current code's provenance")
    ap.add_argument("command", choices=["stamp"])
    ap.add_argument("files", nargs="+")
    for family in ("stages", "models", "attacks", "detectors", "unlearners", "datasets", "defaults"):
        ap.add_argument(f"--{family}", default="", help="comma-separated names")
    args = ap.parse_args()
    names = {f: [n for n in getattr(args, f).split(",") if n] for f in
             ("stages", "models", "attacks", "detectors", "unlearners", "datasets", "defaults")}
    stamp(args.files, **names)


if __name__ == "__main__":
    main()
