"""The comparison table (detectors × attacks with EU) on the tiny scenario."""

from __future__ import annotations

import json
import os

import pytest

from deltainf_core.compare import latest_comparison, run_comparison
from deltainf_core.metrics import SUCCESS_PSR
from deltainf_core.pipeline import investigate


@pytest.fixture(scope="module")
def comparison(tiny_scenario, pipeline, tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("results"))
    return run_comparison(tiny_scenario, ["badnet"], ["delta", "frequency"], ["eu"], out_dir=out_dir,
                          pipeline=pipeline), out_dir


def test_every_cell_is_measured_and_consistent(comparison, tiny_scenario, pipeline):
    result, _ = comparison
    rows = {r["detector"]: r for r in result["rows"]}
    assert set(rows) == {"delta", "frequency"}
    tm = pipeline.trained(tiny_scenario)
    oracle = pipeline.oracle(tiny_scenario).clean_accuracy
    for r in rows.values():
        assert "error" not in r, r
        assert r["psr_before"] == pytest.approx(tm.poison_success_rate)
        assert r["acc_before"] == pytest.approx(tm.clean_accuracy)
        assert r["success"] == (r["psr_after"] < SUCCESS_PSR)
        assert r["acc_change"] == pytest.approx(r["acc_after"] - r["acc_before"])
        assert r["oracle_acc"] == pytest.approx(oracle)
        assert 0 <= r["recall"] <= 1 and r["n_flagged"] > 0
    # the Δ-Influence cell is the same investigation the pipeline runs on its own
    inv = investigate(pipeline, tiny_scenario)
    assert rows["delta"]["n_flagged"] == inv.flagged.size
    assert rows["delta"]["psr_after"] == pytest.approx(inv.outcome.poison_success_rate)


def test_table_and_files(comparison):
    result, out_dir = comparison
    md = result["markdown"]
    assert "| detector | badnet |" in md and "oracle retrain" in md
    for r in result["rows"]:
        assert ("✓" if r["success"] else "×") + f" {100 * r['psr_after']:.1f}" in md
    assert os.path.isfile(result["figure_png"]) and os.path.getsize(result["figure_png"]) > 1000
    with open(result["json_path"]) as fh:
        assert json.load(fh)["rows"] == json.loads(json.dumps(result["rows"]))
    path, latest = latest_comparison(out_dir)
    assert latest["created"] == result["created"] and path == result["json_path"]


def test_witches_brew_targets_aggregate_into_shares():
    from deltainf_core.compare import targets_cell

    def run(hit, after=None, acc=0.9, **kw):
        r = {"psr_before": float(hit), "acc_before": acc}
        if hit:
            r.update({"psr_after": float(after), "acc_after": acc - 0.01, "acc_change": -0.01, "n_flagged": 10,
                      "precision": 0.5, "recall": 1.0, **kw})
        else:
            r["error"] = "no affected image"
        return r

    cell = targets_cell([run(True, False), run(False), run(True, False), run(False)])
    assert (cell["n_hit"], cell["n_targets"]) == (2, 4)
    assert cell["psr_before"] == 0.5 and cell["psr_after"] == 0.0 and cell["success"]
    assert cell["acc_change"] == pytest.approx(-0.01) and "error" not in cell

    still = targets_cell([run(True, True), run(True, False)])
    assert still["psr_after"] == 0.5 and not still["success"]

    missed = targets_cell([run(False), run(False)])
    assert not missed["success"] and "hit none of its 2 targets" in missed["error"]

    broken = targets_cell([{"error": "surrogate misclassifies every test image", "success": False}])
    assert not broken["success"] and "surrogate" in broken["error"]
