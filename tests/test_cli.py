"""The command line: one-line errors for bad input, and a real tiny run end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from deltainf_core.pipeline import run_results

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]




def assert_one_line_error(rc, err, pattern):
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert "Traceback" not in err
    assert __import__("re").search(pattern, lines[0]), lines[0]


def test_unknown_dataset(capsys):
    rc, _, err = run_cli(capsys, "--dataset", "imagenet22k")
    assert_one_line_error(rc, err, "invalid choice: 'imagenet22k'")


def test_missing_folder(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "--data-dir", str(tmp_path / "nowhere"))
    assert_one_line_error(rc, err, "nowhere does not exist")


def test_mixed_image_sizes(capsys, tmp_path):
    for split, sizes in (("train", [(16, 16), (24, 24)]), ("test", [(16, 16)])):
        for c in ("a", "b"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i, size in enumerate(sizes):
                Image.new("RGB", size).save(d / f"{i}.png")
    rc, _, err = run_cli(capsys, "--data-dir", str(tmp_path))
    assert_one_line_error(rc, err, "differ in size")


def test_victim_equals_target(capsys):
    rc, _, err = run_cli(capsys, "--victim-class", "3", "--target-class", "3")
    assert_one_line_error(rc, err, "victim class and target class must differ")


@pytest.mark.parametrize("frac", ["0", "-0.1", "0.9", "abc"])
def test_fraction_out_of_range(capsys, frac):
    rc, _, err = run_cli(capsys, "--poison-frac", frac)
    assert_one_line_error(rc, err, "poison fraction must be in|invalid float value: 'abc'")


def test_class_out_of_range(capsys, cache_dir):
    rc, _, err = run_cli(capsys, "--target-class", "12", "--cache-dir", cache_dir)
    assert_one_line_error(rc, err, "target class 12 does not exist")


def test_bad_attack_params(capsys, cache_dir):
    rc, _, err = run_cli(capsys, "--attack-param", "pattern=spiral", "--cache-dir", cache_dir)
    assert_one_line_error(rc, err, "attack 'badnet' parameter pattern must be one of .*got 'spiral'")
    rc, _, err = run_cli(capsys, "--attack-pattern", "spiral")
    assert_one_line_error(rc, err, "invalid choice: 'spiral'")
    rc, _, err = run_cli(capsys, "--attack-param", "patern=dark4", "--cache-dir", cache_dir)
    assert_one_line_error(rc, err, "unknown attack 'badnet' parameter.* patern .*known: pattern")


def test_a_parameter_of_another_method_is_refused(capsys):
    rc, _, err = run_cli(capsys, "--detect-th", "-40")
    assert_one_line_error(rc, err, "--detect-th applies to detector delta_published, not delta")


def test_corrupt_checkpoint(capsys, tmp_path, cache_dir):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    rc, _, err = run_cli(capsys, "--checkpoint", str(bad), "--cache-dir", cache_dir)
    assert_one_line_error(rc, err, "not a readable PyTorch checkpoint")


def test_tiny_run_writes_the_contract(tmp_path, cache_dir):
    """The real entry point on a tiny scenario: exit 0 and every field of SPEC §3."""
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "deltainf_core", "run", "--max-train", "600", "--epochs", "12",
           "--detect-effect-size", "3", "--attack-size", "5",
           "--poison-frac", "0.05", "--n-copies", "8", "--max-affected", "2", "--rounds", "1",
           "--cache-dir", cache_dir, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["scenario"]["attack"] == "badnet" and r["scenario"]["dataset"] == "mnist5k"
    config = r["scenario"]["config"]
    assert config["detect"]["params"] == {"effect_size": 3} and config["attack"]["params"] == {"size": 5}
    assert config["collapse"]["n_copies"] == 8 and config["max_rounds"] == 1
    p = r["poisoned"]
    assert p["n_train"] == 600 and p["n_poisons"] == 30
    assert 0.0 <= p["clean_accuracy"] <= 1.0 and 0.0 <= p["poison_success_rate"] <= 1.0
    assert r["affected_test_index"] == r["affected_test_indices"][0]
    d = r["detection"]
    assert d["method"] == "delta" and d["n_flagged"] == len(d["flagged"])
    assert 0.0 <= d["recall"] <= 1.0
    u = r["unlearned"]
    assert u["method"] == "eu" and 0.0 <= u["clean_accuracy"] <= 1.0
    assert u["oracle_clean_accuracy"] is not None and 0.0 <= u["oracle_poison_success_rate"] <= 1.0
    assert set(r["timings_s"]) >= {"train", "factors", "scores", "detect", "unlearn"}


def test_whole_class_flagged_is_reported_not_crashed(pipeline, tiny_scenario):
    """A rule that flags every image of a class: the run reports why nothing was unlearned."""
    from dataclasses import replace

    from deltainf_core import DETECTORS, DetectConfig
    from deltainf_core.detectors.base import Detection

    labels = pipeline.poisoned(tiny_scenario).train.labels.numpy()
    everything = np.flatnonzero(labels == 1)
    DETECTORS.register("whole_class", lambda ctx: Detection("whole_class", everything, np.zeros(len(labels))),
                       "flags all of class 1")
    try:
        r = run_results(pipeline, replace(tiny_scenario, detect=DetectConfig(detector="whole_class")))
    finally:
        DETECTORS.unregister("whole_class")
    assert r["unlearned"] is None
    assert "every training image of class '1'" in r["unlearn_error"]
    assert r["detection"]["n_flagged"] == len(everything)


def test_the_summary_says_what_a_rules_second_check_did():
    import io

    from deltainf_core.cli import _summary

    said = "Held-out check used: 3 models retrained without the candidates narrowed 424 → 86 → 44; ..."
    r = {"poisoned": {"clean_accuracy": 0.99, "poison_success_rate": 0.99, "n_poisons": 40, "n_train": 4000},
         "detection": {"method": "delta_heldout", "n_flagged": 44, "precision": 0.91, "recall": 1.0},
         "unlearned": None, "rounds": [{"round": 1, "heldout_check": said}, {"round": 2}]}
    out = io.StringIO()
    _summary(r, out)
    assert f"round 1: {said}" in out.getvalue().splitlines()
    assert "round 2" not in out.getvalue()
