"""The detect → unlearn rounds: the stopping rule (known answers) and the loop on a tiny scenario."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from deltainf_core import Rounds
from deltainf_core.pipeline import investigate


@dataclass
class Model:
    key: str
    model: object = None


def test_rounds_stop_when_the_attack_is_gone_nothing_new_is_found_or_rounds_run_out():
    r = Rounds(Model("base"), max_rounds=3)
    assert r.model.key == "base" and r.n == 1
    assert not r.another_round(0, np.array([1, 2]))  # no affected image shows the attack any more
    assert r.another_round(1, np.array([1, 2]))
    r.advance(np.array([1, 2]), Model("unlearned-1"))
    assert r.n == 2 and r.model.key == "unlearned-1" and r.removed.tolist() == [1, 2]
    assert r.union(np.array([2, 5])).tolist() == [1, 2, 5] and r.new(np.array([2, 5])).tolist() == [5]
    assert not r.another_round(1, r.union(np.array([2])))  # round 2 found nothing new
    assert r.another_round(1, r.union(np.array([7])))
    r.advance(r.union(np.array([7])), Model("unlearned-2"))
    assert not r.another_round(1, r.union(np.array([9])))  # the third round was the last
    assert Rounds(Model("b"), max_rounds=1).another_round(5, np.array([1])) is False


def test_investigate_records_each_round(pipeline, tiny_scenario):
    scn = replace(tiny_scenario, max_rounds=2)
    inv = investigate(pipeline, scn)
    assert 1 <= len(inv.rounds) <= 2
    first = inv.rounds[0]
    assert first["round"] == 1 and first["new_flags"] == first["n_flagged"]
    assert inv.flagged.size >= first["n_flagged"] and inv.outcome is not None
    assert set(inv.timings) == {"factors", "scores", "detect", "unlearn"}
    if len(inv.rounds) == 2:  # a second round only when the first left an affected image behind
        assert first["affected_still_target"] > 0 and inv.rounds[1]["new_flags"] >= 0
    else:
        assert first["affected_still_target"] == 0 or first["new_flags"] == 0
