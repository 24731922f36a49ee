"""bench/paper_grid.py: the plan, resuming cell by cell, the lock between workers, a real tiny cell, the table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from deltainf_core.pipeline import run_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import paper_grid  # noqa: E402
from bench.paper_grid import Cell, plan, run_grid, scenario, table  # noqa: E402


def test_plan_runs_the_default_detector_first_and_gives_a_per_target_attack_one_affected_count():
    cells = plan(["badnet", "witches_brew"], [0], [5, 1], ["delta", "spectral"], ["cf", "eu"])
    ids = [c.id for c in cells]
    assert ids[:3] == ["badnet-s0-a5-delta-eu", "badnet-s0-a5-spectral-eu", "badnet-s0-a5-delta-cf"]
    assert "badnet-s0-a1-delta-eu" in ids
    assert [c.affected for c in cells if c.attack == "witches_brew"] == [1, 1, 1]
    assert len(ids) == len(set(ids)) == 9  # eu among the unlearners is Figure 3's cell, not a second one


def test_scenario_takes_the_cell_and_keeps_the_base(tiny_scenario):
    scn = scenario(Cell("smooth", 2, 1, "spectral", "cf"), tiny_scenario)
    assert (scn.attack.attack, scn.attack.seed, scn.train.seed, scn.collapse.seed) == ("smooth", 2, 2, 2)
    assert scn.collapse.max_affected == 1 and scn.detect.detector == "spectral" and scn.unlearn.method == "cf"
    assert scn.data == tiny_scenario.data and scn.train.epochs == tiny_scenario.train.epochs
    assert "size" not in scn.attack.params  # BadNet's trigger size is not the smooth trigger's parameter


def fake_runner(calls: list):
    def run(pipe, cell, scn):
        calls.append(cell.id)
        return {"id": cell.id, "cell": {"attack": cell.attack, "seed": cell.seed, "affected": cell.affected,
                                        "detector": cell.detector, "unlearner": cell.unlearner},
                "poisoned": {"poison_success_rate": 0.1}, "attack_failed": "not implanted (a stand-in record)"}
    return run


def test_a_grid_resumes_with_the_cells_it_lacks_and_skips_a_cell_another_worker_holds(tmp_path, tiny_scenario):
    cells = plan(["badnet"], [0], [2], ["delta", "spectral", "delta_label"], [])
    calls: list[str] = []
    assert run_grid(cells, tmp_path, tiny_scenario, pipe=object(), runner=fake_runner(calls),
                    progress=lambda m: None) == [c.id for c in cells]
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(calls)
    calls.clear()
    assert run_grid(cells, tmp_path, tiny_scenario, pipe=object(), runner=fake_runner(calls),
                    progress=lambda m: None) == []
    (tmp_path / f"{cells[1].id}.json").unlink()
    (tmp_path / f"{cells[2].id}.json").unlink()
    held = FileLock(str(tmp_path / f".{cells[2].id}.lock"))
    held.acquire()
    said: list[str] = []
    try:
        assert run_grid(cells, tmp_path, tiny_scenario, pipe=object(), runner=fake_runner(calls),
                        progress=said.append) == [cells[1].id]
    finally:
        held.release()
    assert any("another worker holds it" in m for m in said)
    assert calls == [cells[1].id]


def test_a_spent_budget_starts_no_cell_and_says_how_many_are_left(tmp_path, tiny_scenario):
    cells = plan(["badnet"], [0], [2], ["delta", "spectral"], [])
    said: list[str] = []
    assert run_grid(cells, tmp_path, tiny_scenario, budget_s=-1, pipe=object(), runner=fake_runner([]),
                    progress=said.append) == []
    assert "2 cells left" in said[-1] and not list(tmp_path.glob("*.json"))


def test_a_killed_cell_leaves_no_file_and_runs_again(tmp_path, tiny_scenario):
    cells = plan(["badnet"], [0], [2], ["delta"], [])

    def killed(pipe, cell, scn):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(cells, tmp_path, tiny_scenario, pipe=object(), runner=killed, progress=lambda m: None)
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.tmp"))
    assert run_grid(cells, tmp_path, tiny_scenario, pipe=object(), runner=fake_runner([]),
                    progress=lambda m: None) == [cells[0].id]


def test_a_real_tiny_cell_records_the_investigation_its_costs_and_its_code(tmp_path, pipeline, tiny_scenario):
    cell = Cell("badnet", 0, 2, "delta")
    assert run_grid([cell], tmp_path, tiny_scenario, pipe=pipeline, progress=lambda m: None) == [cell.id]
    record = json.loads((tmp_path / f"{cell.id}.json").read_text())
    ran = run_results(pipeline, scenario(cell, tiny_scenario))  # the CLI's own results for the same scenario
    assert record["detection"]["flagged"] == ran["detection"]["flagged"]
    assert record["unlearned"]["clean_accuracy"] == ran["unlearned"]["clean_accuracy"]
    assert record["poisoned"]["poison_success_rate"] >= 0.5
    assert record["costs_s"]["train"] > 0 and record["costs_s"]["oracle"] > 0
    assert set(record["timings_s"]) >= {"train", "factors", "scores", "detect", "unlearn"}
    assert record["machine"]["device"] in ("cpu", "cuda") and record["machine"]["torch_threads"] >= 1
    assert record["provenance"]["versions"]["detector"] == {"delta": pipeline_version("delta")}
    text = table([record])
    n, p = record["detection"]["n_flagged"], record["detection"]["precision"]
    assert f"| delta | {n}, P {p:.2f}" in text and "published (Li et al.)" in text
    assert "badnet s0" in text.split("Seconds per stage")[1]


def pipeline_version(name: str) -> int:
    from deltainf_core.detectors import DETECTORS

    return DETECTORS.version(name)


def test_the_table_says_when_an_attack_did_not_implant_or_a_set_was_not_unlearned():
    failed = {"id": "smooth-s0-a5-delta-eu", "cell": vars(Cell("smooth", 0, 5, "delta")) | {},
              "poisoned": {"poison_success_rate": 0.12}, "attack_failed": "the attack did not implant"}
    refused = {"id": "badnet-s0-a5-spectral-eu", "cell": vars(Cell("badnet", 0, 5, "spectral")) | {},
               "poisoned": {"poison_success_rate": 0.9}, "detection": {"n_flagged": 5000, "precision": 0.1,
                                                                       "recall": 1.0},
               "rounds": [{"round": 1, "unlearn_error": "the forget set holds every training image of class 'cat'"}],
               "unlearned": None}
    text = table([failed, refused])
    assert "attack failed (PSR 12.0)" in text
    assert "5000 flagged; not unlearned: the forget set holds every training image" in text
    assert paper_grid.PUBLISHED["smooth"] in text
