"""Committed benchmark and study results cannot go stale silently.

Every ``bench/results/*.json`` / ``*.jsonl`` and ``studies/results/*.json`` either carries
``"provenance"`` (see ``bench/provenance.py``) whose recorded code versions all equal the current
ones, or is listed below by content hash with the reason it cannot be checked. A listed file that
is re-measured changes its hash and must then carry current provenance; a listed file must be
named in BENCHMARKS.md's "Stale results" section. Both lists are empty today: stale results are
re-measured or removed (their history is in git).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT_DIRS = (ROOT / "bench" / "results", ROOT / "studies" / "results")
sys.path.insert(0, str(ROOT))

from bench.provenance import provenance, stale_parts  # noqa: E402
from studies.batching_audit import audit  # noqa: E402

LEGACY: dict[str, tuple[str, str]] = {}
"""Results that record no code versions, by file name: (content hash, why they cannot be checked)."""

MARKED_STALE: dict[str, tuple[str, str]] = {}
"""Results that record provenance but are stale, kept (by content hash) until re-measured."""

BATCHES_UNAFFECTED: dict[str, tuple[str, str]] = {
    "rule_tail-fresh-cifar-cpu.json": ("927f7d0b1281fd1f", "scores only: its flag counts were never retrained on"),
}
"""Results from before equal batches where ``studies/batching_audit.py`` counts a set size whose batches
changed but no training ran on it (a rule's flag count, scores only), by content hash."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def result_files() -> list[Path]:
    return sorted(p for d in RESULT_DIRS for p in d.iterdir() if p.suffix in (".json", ".jsonl"))


def recorded(path: Path) -> dict | None:
    """The file's provenance (a .jsonl needs it on every line; the first missing one counts)."""
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found = [r.get("provenance") for r in records]
        return None if not found or any(p is None for p in found) else {"lines": found}
    return json.loads(path.read_text()).get("provenance")


@pytest.mark.parametrize("path", result_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_result_was_measured_on_the_current_code(path):
    prov = recorded(path)
    if prov is None:
        assert path.name in LEGACY, (
            f"{path.name} records no code versions: write it with bench/provenance.py's provenance()")
        expected, reason = LEGACY[path.name]
        assert digest(path) == expected, (
            f"{path.name} was re-measured ({reason} no longer holds): record provenance() in it "
            "and drop it from LEGACY")
        return
    assert path.name not in LEGACY, f"{path.name} now records provenance: drop it from LEGACY"
    if path.name in MARKED_STALE:
        assert digest(path) == MARKED_STALE[path.name][0], (
            f"{path.name} was re-measured: drop it from MARKED_STALE")
        return
    for one in prov.get("lines", [prov]):
        assert not stale_parts(one), (
            f"{path.name} is stale ({'; '.join(stale_parts(one))}): re-run the benchmark that wrote it")
    if any("epoch_batches" not in one for one in prov.get("lines", [prov])):  # measured before equal batches
        if path.name in BATCHES_UNAFFECTED:
            assert digest(path) == BATCHES_UNAFFECTED[path.name][0], (
                f"{path.name} was re-measured: drop it from BATCHES_UNAFFECTED")
            return
        changed = audit(path)["changed"]
        assert not changed, (
            f"{path.name} predates equal batches and {len(changed)} of its trainings changed batches "
            f"(e.g. {changed[0][0]}: {changed[0][1]} images): re-run it or mark it stale")


def test_every_listed_result_is_named_stale_in_benchmarks_md_and_exists():
    listed = (*LEGACY, *MARKED_STALE)
    if not listed:
        return
    section = (ROOT / "BENCHMARKS.md").read_text().split("## Stale results", 1)
    assert len(section) == 2, "BENCHMARKS.md lacks its 'Stale results' section"
    names = {p.name for p in result_files()}
    for name in listed:
        assert name in section[1], f"{name} is listed as stale but not named in BENCHMARKS.md"
        assert name in names, f"{name} is listed as stale but no longer exists: drop it"


def test_the_guard_flags_a_changed_version():
    """A result recorded on other code is reported stale, one on the current code is not."""
    now = provenance(stages=["train"], models=["smallcnn"], unlearners=["cf"], attacks=["badnet"])
    assert now["versions"]["unlearner"]["cf"] >= 1
    assert stale_parts(now) == []
    old = json.loads(json.dumps(now))
    old["versions"]["unlearner"]["cf"] -= 1
    old["versions"]["stage"]["train"] += 7
    problems = stale_parts(old)
    assert any("unlearner 'cf'" in p for p in problems)
    assert any("stage 'train'" in p for p in problems)
    gone = json.loads(json.dumps(now))
    gone["versions"]["model"]["no_such_model"] = 1
    assert any("no longer exists" in p for p in stale_parts(gone))
    assert stale_parts({}) == ["no code versions recorded"]


def test_stamp_adds_the_current_provenance(tmp_path):
    from bench.provenance import stamp

    path = tmp_path / "compare-x.json"
    path.write_text(json.dumps({"rows": [1, 2]}))
    stamp([str(path)], stages=["train"], models=["smallcnn"], detectors=["delta"])
    data = json.loads(path.read_text())
    assert data["rows"] == [1, 2]
    assert data["provenance"]["versions"]["detector"] == {"delta": 1} and stale_parts(data["provenance"]) == []


def test_a_result_of_the_default_investigation_goes_stale_with_the_default(monkeypatch):
    """Changing the default rule (or unlearner) makes every result that measured the old one stale."""
    import bench.provenance as prov_mod

    now = provenance(stages=["train"], detectors=["delta"], defaults=["detector", "unlearner"])
    assert now["defaults"] == prov_mod.current_defaults() and stale_parts(now) == []
    implied = provenance(defaults=["detector", "unlearner"])["versions"]  # the defaults' versions, unnamed
    assert set(implied["detector"]) == {now["defaults"]["detector"]}
    assert set(implied["unlearner"]) == {now["defaults"]["unlearner"]}
    moved = {**prov_mod.current_defaults(), "detector": "some_other_rule"}
    monkeypatch.setattr(prov_mod, "current_defaults", lambda: moved)
    assert any("default detector" in p and "some_other_rule" in p for p in stale_parts(now))
