"""How far apart two retrains land by chance: EU's cost against the oracle, seed by seed (issue 17).

The bar compares one EU retrain with one oracle retrain. On a small set two retrains of
the *same* images differ by their initialisation and batch order alone, so a single
pair's gap mixes the cost of the clean images a flagged set removed with that chance.
This retrains both, without the flagged set and without the true poisons, from several
seeds (the recipe's, as EU's retries do), on the sets ``heldout_rule.py`` recorded:
the spread of the oracle across seeds is the noise floor, the mean paired gap the cost.

    DELTAINF_CACHE=/tmp/c OMP_NUM_THREADS=1 .venv/bin/python studies/retrain_noise.py measure \\
        /work/replay/heldout-cifar-smooth-2.json:5 --seeds 0 1 2 --cifar ../shared/data/cifar10-subset \\
        --out /tmp/noise/cifar-smooth-2-5.json
    .venv/bin/python studies/retrain_noise.py combine /tmp/noise/*.json --out studies/results/retrain_noise.json

``measure --logits DIR`` also keeps each retrain's test and PSR logits with the class counts it
trained on, and ``prior DIR`` asks of them whether EU's cost is the class prior its flagged set
shifts: a set that is mostly clean images of the target class leaves the retrain with fewer of
them, so it calls the class less often. The standard post-hoc correction for a changed prior
(label-shift / logit adjustment) adds ``tau * log(n_all / n_kept)`` per class to the logits;
``tau`` 1 is the Bayes correction, 0 the retrain as it is. No retrain is needed to evaluate it.
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
sys.path.insert(0, str(ROOT / "studies"))

from heldout_rule import scenario_here  # noqa: E402

from bench.provenance import provenance  # noqa: E402
from deltainf_core import Pipeline, Store  # noqa: E402
from deltainf_core.metrics import clean_accuracy, poison_success_rate  # noqa: E402
from deltainf_core.training import predict_logits, train_model, training_environment  # noqa: E402

TAUS = (0.0, 0.5, 1.0)
"""Prior corrections ``prior`` reports: none, half, and the full Bayes correction."""


def retrain(pipe: Pipeline, scn, forget: np.ndarray, seed: int,
            logits: Path | None = None) -> tuple[float, float | None]:
    """(clean accuracy, PSR) of the recipe's retrain without ``forget`` from initialisation ``seed``;
    with ``logits``, that file also gets the retrain's logits and class counts (``prior``'s input)."""
    poisoned, splits = pipe.poisoned(scn), pipe.dataset(scn.data)
    rows = poisoned.train.rows_without(forget)
    model = pipe.new_model(scn, seed=seed)
    train_model(model, poisoned.train, replace(scn.train, seed=seed), augment_flip=splits.augment_flip,
                device=pipe.device, epochs=scn.train.epochs_for(len(poisoned.train)), rows=rows)
    if logits is not None:
        labels = poisoned.train.labels.numpy()
        k = poisoned.train.num_classes
        np.savez(logits, test=predict_logits(model, splits.test.images).numpy(), test_y=splits.test.labels.numpy(),
                 psr=predict_logits(model, poisoned.psr_set.images).numpy(), target=poisoned.target_class,
                 n_all=np.bincount(labels, minlength=k), n_kept=np.bincount(labels[np.asarray(rows)], minlength=k))
    return clean_accuracy(model, splits.test), poison_success_rate(model, poisoned)


def prior_shift(n_all: np.ndarray, n_kept: np.ndarray, tau: float) -> np.ndarray:
    """Per-class logit offset restoring the training set's class prior after a retrain kept ``n_kept``.

    A class with nothing kept gets none: the retrain never saw it, and no offset makes it know it.
    """
    n_all, n_kept = np.asarray(n_all, dtype=np.float64), np.asarray(n_kept, dtype=np.float64)
    ratio = np.divide(n_all, n_kept, out=np.ones_like(n_all), where=(n_kept > 0) & (n_all > 0))
    return tau * np.log(ratio)


def corrected(z, tau: float) -> dict:
    """Accuracy, PSR and the target class's own test accuracy (%) of saved logits, prior-corrected by ``tau``."""
    shift = prior_shift(z["n_all"], z["n_kept"], tau)
    pred, y, target = (z["test"] + shift).argmax(1), z["test_y"], int(z["target"])
    psr = (z["psr"] + shift).argmax(1)
    return {"accuracy": 100 * float((pred == y).mean()),
            "psr": 100 * float((psr == target).mean()) if len(psr) else None,
            "target_class_accuracy": 100 * float((pred[y == target] == target).mean())}


def measure(args: argparse.Namespace) -> None:
    path, n_images = args.cell.rsplit(":", 1)
    cell = json.loads(Path(path).read_text())
    name = cell["cell"]
    pipe = Pipeline(Store())
    scn = scenario_here(pipe, name, args.cifar)
    flagged = np.asarray(cell[n_images]["indices"], dtype=np.int64)
    poisons = np.asarray(pipe.poisoned(scn).poison_indices, dtype=np.int64)
    keep = Path(args.logits) if args.logits else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    stem = name.replace(":", "-")
    rows = []
    for s in args.seeds:
        start = time.perf_counter()
        eu = retrain(pipe, scn, flagged, s, keep / f"{stem}-{n_images}-seed{s}.npz" if keep else None)
        oracle = retrain(pipe, scn, poisons, s, keep / f"{stem}-oracle-seed{s}.npz" if keep else None)
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


def prior(args: argparse.Namespace) -> None:
    """EU's gap to the oracle with the prior correction at each ``TAUS``, from ``measure --logits`` files."""
    runs: dict[str, dict[str, dict[int, Path]]] = {}  # scenario -> "oracle" or the image count -> seed -> file
    for path in sorted(Path(args.logits).glob("*-seed*.npz")):
        stem, seed = path.stem.rsplit("-seed", 1)
        scenario, which = stem.rsplit("-", 1)
        runs.setdefault(scenario, {}).setdefault(which, {})[int(seed)] = path
    cells = []
    print("| run | tau | EU − oracle per seed | mean gap | EU's target-class accuracy | EU's PSR |")
    print("|---|---|---|---|---|---|")
    for scenario, sets in runs.items():
        oracle = sets.get("oracle", {})
        for n_images, eu in sorted((k, v) for k, v in sets.items() if k != "oracle"):
            pairs = {s: (np.load(eu[s]), np.load(oracle[s])) for s in sorted(set(eu) & set(oracle))}
            if not pairs:
                continue
            for tau in TAUS:
                rows = []
                for s, (eu_logits, oracle_logits) in pairs.items():
                    e, o = corrected(eu_logits, tau), corrected(oracle_logits, tau)
                    rows.append({"seed": s, "eu": e, "oracle": o, "gap": e["accuracy"] - o["accuracy"]})
                cell = {"scenario": scenario, "n_images": int(n_images), "tau": tau, "rows": rows,
                        "mean_gap": statistics.mean(r["gap"] for r in rows)}
                cells.append(cell)
                per = ", ".join(f"{r['gap']:+.1f}" for r in rows)
                tgt = ", ".join(f"{r['eu']['target_class_accuracy']:.0f}" for r in rows)
                psr = ", ".join("–" if r["eu"]["psr"] is None else f"{r['eu']['psr']:.0f}" for r in rows)
                print(f"| {scenario} n{n_images} | {tau} | {per} | {cell['mean_gap']:+.1f} | {tgt} | {psr} |")
    out = {"benchmark": "retrain_noise-prior", "command": " ".join(sys.argv), "taus": list(TAUS), "cells": cells,
           "provenance": provenance(stages=["poison", "train"], models=["smallcnn"],
                                    attacks=sorted({c["scenario"].split("-")[1] for c in cells}))}
    Path(args.out).write_text(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="retrain one recorded set and its oracle from several seeds")
    m.add_argument("cell", help="a heldout_rule.py cell JSON and the affected-image count, PATH:N")
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    m.add_argument("--cifar", default=str(ROOT.parent / "shared" / "data" / "cifar10-subset"))
    m.add_argument("--out", required=True)
    m.add_argument("--logits", help="a folder to keep each retrain's logits and class counts in (for `prior`)")
    c = sub.add_parser("combine")
    c.add_argument("cells", nargs="+")
    c.add_argument("--out", required=True)
    pr = sub.add_parser("prior", help="EU's gap with the class prior restored, from `measure --logits` files")
    pr.add_argument("logits")
    pr.add_argument("--out", required=True)
    args = ap.parse_args()
    {"measure": measure, "combine": combine, "prior": prior}[args.cmd](args)


if __name__ == "__main__":
    main()
