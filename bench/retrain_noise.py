"""How far apart two retrains land by chance: EU's cost against the oracle, seed by seed (issue 17).

The bar compares one EU retrain with one oracle retrain. On a small set two retrains of
the *same* images differ by their initialisation and batch order alone, so a single
pair's gap mixes the cost of the clean images a flagged set removed with that chance.
This retrains both, without the flagged set and without the true poisons, from several
seeds (the recipe's, as EU's retries do), on the sets ``heldout_rule.py`` recorded:
the spread of the oracle across seeds is the noise floor, the mean paired gap the cost.

    DELTAINF_CACHE=/tmp/c OMP_NUM_THREADS=1 .venv/bin/python bench/retrain_noise.py measure \\
        /work/replay/heldout-cifar-smooth-2.json:5 --seeds 0 1 2 --cifar ../shared/data/cifar10-subset \\
        --out /tmp/noise/cifar-smooth-2-5.json
    .venv/bin/python bench/retrain_noise.py combine /tmp/noise/*.json --out bench/results/retrain_noise.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from heldout_rule import scenario_here  # noqa: E402
from provenance import provenance  # noqa: E402

from deltainf_core import Pipeline, Store  # noqa: E402
from deltainf_core.metrics import clean_accuracy, poison_success_rate  # noqa: E402
from deltainf_core.training import train_model, training_environment  # noqa: E402


def retrain(pipe: Pipeline, scn, forget: np.ndarray, seed: int) -> tuple[float, float | None]:
    """(clean accuracy, PSR) of the recipe's retrain without ``forget`` from initialisation ``seed``."""
    poisoned, splits = pipe.poisoned(scn), pipe.dataset(scn.data)
    rows = poisoned.train.rows_without(forget)
    model = pipe.new_model(scn, seed=seed)
    train_model(model, poisoned.train, replace(scn.train, seed=seed), augment_flip=splits.augment_flip,
                device=pipe.device, epochs=scn.train.epochs_for(len(poisoned.train)), rows=rows)
    return clean_accuracy(model, splits.test), poison_success_rate(model, poisoned)


def measure(args: argparse.Namespace) -> None:
    path, n_images = args.cell.rsplit(":", 1)
    cell = json.loads(Path(path).read_text())
    name = cell["cell"]
    pipe = Pipeline(Store())
    scn = scenario_here(pipe, name, args.cifar)
    flagged = np.asarray(cell[n_images]["indices"], dtype=np.int64)
    poisons = np.asarray(pipe.poisoned(scn).poison_indices, dtype=np.int64)
    rows = []
    for s in args.seeds:
        start = time.perf_counter()
        eu, oracle = retrain(pipe, scn, flagged, s), retrain(pipe, scn, poisons, s)
        rows.append({"seed": s, "eu": list(eu), "oracle": list(oracle), "gap": eu[0] - oracle[0]})
        gap = 100 * (eu[0] - oracle[0])
        print(f"{name} n{n_images} seed {s}: EU {eu[0]:.3f} oracle {oracle[0]:.3f} gap {gap:+.1f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    out = {"scenario": name, "n_images": int(n_images), "flagged": len(flagged), "poisons": len(poisons),
           "clean_removed": len(np.setdiff1d(flagged, poisons)), "rows": rows,
           "environment": training_environment(pipe.device)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


def summarise(cell: dict) -> dict:
    gaps = [100 * r["gap"] for r in cell["rows"]]
    oracle = [100 * r["oracle"][0] for r in cell["rows"]]
    eu = [100 * r["eu"][0] for r in cell["rows"]]
    sd = statistics.stdev if len(gaps) > 1 else (lambda _: float("nan"))
    return {"scenario": cell["scenario"], "n_images": cell["n_images"], "flagged": cell["flagged"],
            "clean_removed": cell["clean_removed"], "seeds": len(gaps), "mean_gap": statistics.mean(gaps),
            "sd_gap": sd(gaps), "oracle_mean": statistics.mean(oracle), "oracle_sd": sd(oracle),
            "eu_mean": statistics.mean(eu), "gaps": gaps}


def combine(args: argparse.Namespace) -> None:
    cells = [json.loads(Path(p).read_text()) for p in args.cells]
    summary = [summarise(c) for c in cells]
    print("| run | flagged (clean) | seeds | oracle mean ± sd | EU − oracle per seed | mean gap |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        per = ", ".join(f"{g:+.1f}" for g in s["gaps"])
        print(f"| {s['scenario']} n{s['n_images']} | {s['flagged']} ({s['clean_removed']}) | {s['seeds']} | "
              f"{s['oracle_mean']:.1f} ± {s['oracle_sd']:.1f} | {per} | {s['mean_gap']:+.1f} |")
    out = {"benchmark": "retrain_noise", "command": " ".join(sys.argv), "cells": cells, "summary": summary,
           "provenance": provenance(stages=["poison", "train"], models=["smallcnn"],
                                    attacks=sorted({c["scenario"].split(":")[1] for c in cells}))}
    Path(args.out).write_text(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="retrain one recorded set and its oracle from several seeds")
    m.add_argument("cell", help="a heldout_rule.py cell JSON and the affected-image count, PATH:N")
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    m.add_argument("--cifar", default=str(ROOT.parent / "shared" / "data" / "cifar10-subset"))
    m.add_argument("--out", required=True)
    c = sub.add_parser("combine")
    c.add_argument("cells", nargs="+")
    c.add_argument("--out", required=True)
    args = ap.parse_args()
    {"measure": measure, "combine": combine}[args.cmd](args)


if __name__ == "__main__":
    main()
