"""Committed benchmark results cannot go stale silently.

Every ``bench/results/*.json`` / ``*.jsonl`` either carries ``"provenance"`` (see
``bench/provenance.py``) whose recorded code versions all equal the current ones, or is
one of the results that predate versioning, listed below by content hash with the reason
it cannot be checked. A listed file that is re-measured changes its hash and must then
carry provenance; a listed file must be marked stale in BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from bench.batching_audit import audit  # noqa: E402
from bench.provenance import provenance, stale_parts  # noqa: E402

SESSION_2 = "measured on the current model (session 2), before results recorded code versions"
LEGACY: dict[str, tuple[str, str]] = {
    "witches_brew_trials.jsonl": ("288ee8a5bf293992", SESSION_2),
}

EU_V2 = ("measured with EU v1; v2 adds the retrain fit check, which changes a result only where a retrain "
         "fails to fit (none did in the 12-scenario unlearning grid)")

HELDOUT_V2 = ("measured with delta_heldout version 1; version 2 widens its net by delta's flagged set and "
              "estimates precision from the clean test images every round's model mislabelled")

HELDOUT_V3 = ("measured with delta_heldout version 2; version 3 changes only its fallback (delta's set with its "
              "group's lower tail), replayed on these recorded rounds in rule_heldout-v3-replay.json")

BATCHES = ("measured before equal batches (a last mini-batch under a quarter of batch_size); "
           "bench/batching_audit.py finds a training whose batches changed: ")

MARKED_STALE: dict[str, tuple[str, str]] = {
    "scaling-run-cuda-h100.json": ("1b562993034253ad", EU_V2 + "; needs an H100"),
    "rule_heldout-cuda-h200.json": ("08acdcacc7275c96", HELDOUT_V2 + " (session 9's CPU matrices, since lost; "
                                    "rule_heldout-v2-cuda-h200.json re-measures on H200 matrices)"),
    "compare-cifar10-subset-baselines.json": ("d938a1c5cb8ac352", HELDOUT_V2 + " (its delta_heldout cells only)"),
    "compare-cifar10-subset-witches-brew-rules-cpu.json": ("1facd8664d6c7f0e",
                                                           HELDOUT_V2 + " (its delta_heldout row only)"),
    "rule_heldout-v2-cuda-h200.json": ("9830bd9db764044b", HELDOUT_V3),
    "compare-cifar10-subset-witches-brew-seed1.json": ("0204027ed0d1157e", BATCHES + "EU of a 90-image set"),
    "compare-mnist5k-attacks.json": ("28ddc186e7121013", BATCHES + "BadNet's EU of delta's 152-image set"),
    "core_pipeline_mnist5k_cifar10-subset.json": ("7754d142b239e6cf", BATCHES + "mnist5k's EU (3,848 kept)"),
    "rule_heldout-v3-replay.json": ("89d4f16d904c0de4", BATCHES + "EU and held-out rounds, CIFAR BadNet seed 0's "
                                    "235-image set among them (rule_heldout-v3-batches.json re-measures it)"),
    "rule_study.json": ("ea660171e76ce4e5", BATCHES + "EU of CIFAR BadNet seed 2's 100-image set"),
    "scaling-run.json": ("7a116053cdb1a375", BATCHES + "the 5,000-image set's model"),
    "scaling-run-cuda-h200.json": ("428584e933d5f104", BATCHES + "the 5,000-image set's model"),
    "unlearning_suite.json": ("6301908d51c0b6e9", BATCHES + "EU of two flagged sets (1,822 and 3,848 kept)"),
}
"""Results that record provenance but are stale, kept (by content hash) until re-measured;
each is named in BENCHMARKS.md's stale section."""

BATCHES_UNAFFECTED: dict[str, tuple[str, str]] = {
    "rule_tail-fresh-cifar-cpu.json": ("927f7d0b1281fd1f", "scores only: its flag counts were never retrained on"),
}
"""Results from before equal batches where ``bench/batching_audit.py`` counts a set size whose batches
changed but no training ran on it (a rule's flag count, scores only), by content hash."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def result_files() -> list[Path]:
    return sorted(p for p in RESULTS.iterdir() if p.suffix in (".json", ".jsonl"))


def recorded(path: Path) -> dict | None:
    """The file's provenance (a .jsonl needs it on every line; the first missing one counts)."""
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found = [r.get("provenance") for r in records]
        return None if not found or any(p is None for p in found) else {"lines": found}
    return json.loads(path.read_text()).get("provenance")


@pytest.mark.parametrize("path", result_files(), ids=lambda p: p.name)
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


def test_every_legacy_result_is_marked_stale_in_benchmarks_md():
    text = (ROOT / "BENCHMARKS.md").read_text()
    section = text.split("## Results that predate versioning", 1)
    assert len(section) == 2, "BENCHMARKS.md lacks its 'Results that predate versioning' section"
    for name in (*LEGACY, *MARKED_STALE):
        assert name in section[1], f"{name} is legacy but not listed as stale in BENCHMARKS.md"
    for name in (*LEGACY, *MARKED_STALE):
        assert (RESULTS / name).exists(), f"{name} is listed as legacy but no longer exists: drop it"


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
