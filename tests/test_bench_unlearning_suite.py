"""bench/unlearning_suite.py: its scenarios are the CLI's, and shards combine into one result
only when they can be one measurement (no scenario twice, one device, one code version)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import unlearning_suite as suite  # noqa: E402
from bench.provenance import provenance  # noqa: E402


def test_scenario_is_the_clis_run_with_one_round():
    from deltainf_core.cli import build_parser
    from deltainf_core.flags import scenario_from_args

    scn = suite.scenario("mnist5k", "smooth", 2)
    args = build_parser().parse_args(["run", "--dataset", "mnist5k", "--attack", "smooth", "--seed", "2",
                                      "--rounds", "1"])
    assert scn == scenario_from_args(args, args.flags)
    assert scn.max_rounds == 1 and scn.attack.attack == "smooth" and scn.train.seed == 2
    folder = suite.scenario("cifar10-subset", "badnet", 0, Path("/data/cifar"))
    assert folder.data.data_dir == "/data/cifar" and folder.data.dataset != "cifar10-subset"


def shard(tmp_path: Path, name: str, dataset: str, attack: str, device: str = "cuda", version_bump: int = 0) -> Path:
    prov = provenance(stages=suite.STAGES, models=["smallcnn"], attacks=[attack], unlearners=["eu"])
    prov["versions"]["unlearner"]["eu"] += version_bump
    runs = [{"dataset": dataset, "attack": attack, "seed": s, "methods": []} for s in (0, 1)]
    path = tmp_path / name
    path.write_text(json.dumps({"device": device, "gpu": "X" if device == "cuda" else None, "command": f"c {name}",
                                "params": {"eu": {}}, "provenance": prov, "runs": runs}))
    return path


def test_shards_combine_into_one_result(tmp_path, capsys):
    out = tmp_path / "all.json"
    suite.combine([shard(tmp_path, "a.json", "mnist5k", "badnet"), shard(tmp_path, "b.json", "mnist5k", "smooth")], out)
    result = json.loads(out.read_text())
    assert [(r["attack"], r["seed"]) for r in result["runs"]] == [("badnet", 0), ("badnet", 1), ("smooth", 0),
                                                                  ("smooth", 1)]
    assert result["device"] == "cuda" and result["gpu"] == "X" and not result["complete"]
    assert result["provenance"]["versions"]["attack"] == {"badnet": 1, "smooth": 1}
    assert result["shard_commands"] == ["c a.json", "c b.json"]


@pytest.mark.parametrize("second, message", [
    ({"attack": "badnet"}, "same scenario twice"),
    ({"device": "cpu"}, "different devices"),
    ({"version_bump": 1}, "different versions of unlearner eu"),
])
def test_shards_that_are_not_one_measurement_are_refused(tmp_path, second, message):
    a = shard(tmp_path, "a.json", "mnist5k", "badnet")
    b = shard(tmp_path, "b.json", "mnist5k", **{"attack": "smooth", **second})
    with pytest.raises(SystemExit, match=message):
        suite.combine([a, b], tmp_path / "all.json")
    assert not (tmp_path / "all.json").exists()
