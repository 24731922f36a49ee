"""Potion's whole strength search per scenario, without its stops: where could any stop land?

For each cell (``dataset:attack:seed``: the unlearning grid's ``run --rounds 1`` scenario
and Δ-Influence's round-1 flagged set), Potion's importances are computed once and the
strength walks up from ``s_start`` by ``s_step`` = 1.1 (Potion's defaults) until the
retained-image guard has lost 15 points or test accuracy is under 30 %. Each step records
what a stop may look at (accuracy on the 2,000 guard images, on the flagged set, and how
many affected images are still predicted as the target) and what it may not (PSR, test
accuracy), so stop rules are compared offline, each against the best step any rule
could have chosen:

    DELTAINF_CACHE=$PWD/cache OMP_NUM_THREADS=1 python studies/potion_trajectory.py \\
        --cells mnist5k:badnet:0,cifar10-subset:smooth:1 --out studies/results/potion_trajectory.json
    python studies/potion_trajectory.py --table studies/results/potion_trajectory.json

The guard sample is drawn with seed 0 in every cell (Potion draws it with the unlearning
seed), so a cell's "today" column can differ from the grid's by the sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deltainf_core.metrics import still_affected

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.unlearning_suite import CIFAR_SUBSET, flagged_scenario, scenario  # noqa: E402
from deltainf_core import Pipeline, Store  # noqa: E402
from deltainf_core.metrics import clean_accuracy, poison_success_rate  # noqa: E402
from deltainf_core.training import accuracy  # noqa: E402
from deltainf_core.unlearning import synapses  # noqa: E402
from deltainf_core.unlearning.base import fresh_copy  # noqa: E402
from deltainf_core.unlearning.potion import PotionParams, selection_percentile  # noqa: E402

MAX_STEPS = 120
STOP_GUARD_DROP, STOP_ACCURACY = 0.15, 0.30


def trajectory(pipe: Pipeline, cell: str, cifar_subset: Path) -> dict:
    """Every step of Potion's search on one cell, with what each stop rule would see."""
    dataset, attack, seed = cell.split(":")
    scn = scenario(dataset, attack, int(seed), cifar_subset)
    sc = flagged_scenario(pipe, scn)
    tm, poisoned, splits, forget = sc["tm"], sc["poisoned"], sc["splits"], sc["flagged"]
    affected = pipe.affected_set(scn, pipe.default_affected(scn))
    target, train = poisoned.target_class, poisoned.train
    forget_set, retain = train.subset(forget), train.without(forget)
    rng = np.random.default_rng(0)
    guard = retain.subset(np.sort(rng.choice(len(retain), size=min(2000, len(retain)), replace=False)))
    model = tm.model.cpu().eval()
    p = PotionParams()
    forget_imp = synapses.parameter_importance(model, forget_set, objective=p.objective, power=p.power,
                                               batch_size=scn.train.batch_size)
    retain_imp = synapses.parameter_importance(model, retain, objective=p.objective, power=p.power,
                                               batch_size=scn.train.batch_size)
    ratios = synapses.importance_ratios(retain_imp, forget_imp)

    def measure(m: torch.nn.Module) -> dict:
        return {"guard": accuracy(m, guard), "flagged": accuracy(m, forget_set),
                "affected_target": still_affected(m, affected, target),
                "psr": poison_success_rate(m, poisoned), "acc": clean_accuracy(m, splits.test)}

    base = measure(model)
    s = p.first_strength(len(forget), len(train))
    steps = []
    for _ in range(MAX_STEPS):
        candidate = fresh_copy(model)
        dampened = synapses.dampen(candidate, retain_imp, forget_imp,
                                   float(np.percentile(ratios, selection_percentile(s))), p.lam)
        steps.append({**measure(candidate), "s": s, "dampened": dampened})
        if base["guard"] - steps[-1]["guard"] > STOP_GUARD_DROP or steps[-1]["acc"] < STOP_ACCURACY:
            break
        s *= p.s_step
    return {"base": base, "traj": steps, "n_flagged": len(forget), "precision": sc["precision"],
            "recall": sc["recall"], "n_affected": len(affected)}


def stop_search(r: dict, budget: float, done: Callable[[dict], bool]) -> dict | None:
    """Where a search stops: the last step within ``budget`` of guard accuracy, or the first ``done`` step."""
    last = None
    for t in r["traj"]:
        if r["base"]["guard"] - t["guard"] > budget:
            return last
        last = t
        if done(t):
            return t
    return last


def at_rho(r: dict, rho: float = 0.1) -> Callable[[dict], bool]:
    """Potion's own stop: flagged-set accuracy down to ``rho`` of its start."""
    return lambda t: t["flagged"] <= rho * r["base"]["flagged"]


def affected_left(left: int) -> Callable[[dict], bool]:
    """Stop once at most ``left`` affected images are still predicted as the target."""
    return lambda t: t["affected_target"] <= left


def best_step(r: dict, floor: float = 0.05) -> dict | None:
    """The step with PSR under ``floor`` and the highest test accuracy: the best any stop could do."""
    ok = [t for t in r["traj"] if t["psr"] < floor]
    return max(ok, key=lambda t: t["acc"]) if ok else None


RULES = {
    "guard 0.75 pt (today)": lambda r: stop_search(r, 0.0075, at_rho(r)),
    "guard 2 pt": lambda r: stop_search(r, 0.02, at_rho(r)),
    "affected cleared, guard 2 pt": lambda r: stop_search(r, 0.02, affected_left(0)),
    "≤ 1 affected left, guard 2 pt": lambda r: stop_search(r, 0.02, affected_left(1)),
    "affected cleared, guard 5 pt": lambda r: stop_search(r, 0.05, affected_left(0)),
    "best step with PSR < 5 %": best_step,
}


def table(results: dict) -> str:
    def cell(r: dict, t: dict | None) -> str:
        return "–" if t is None else f"{100 * t['psr']:.1f} / {100 * (t['acc'] - r['base']['acc']):+.1f}"

    lines = ["| cell | P / R | " + " | ".join(RULES) + " |", "|---" * (len(RULES) + 2) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['precision']:.2f} / {r['recall']:.2f} | "
                     + " | ".join(cell(r, rule(r)) for rule in RULES.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", help="comma list of dataset:attack:seed")
    ap.add_argument("--out", type=Path, default=ROOT / "studies" / "results" / "potion_trajectory.json")
    ap.add_argument("--cifar-subset", type=Path, default=CIFAR_SUBSET)
    ap.add_argument("--table", type=Path, help="only print the stop-rule table of this results file")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())["cells"]))
        return
    torch.set_num_threads(1)
    from bench.provenance import provenance

    pipe = Pipeline(Store())
    cells: dict = {}
    for name in args.cells.split(","):
        t0 = time.perf_counter()
        cells[name] = trajectory(pipe, name, args.cifar_subset)
        cells[name]["seconds"] = time.perf_counter() - t0
        print(name, f"{len(cells[name]['traj'])} steps, {cells[name]['seconds']:.0f} s", flush=True)
        result = {"command": " ".join(sys.argv[1:]), "cells": cells,
                  "provenance": provenance(stages=["poison", "train", "factors", "scores"], models=["smallcnn"],
                                           attacks=["badnet", "smooth"], detectors=["delta"], unlearners=["potion"])}
        args.out.write_text(json.dumps(result, indent=1))
    print(table(cells))


if __name__ == "__main__":
    main()
