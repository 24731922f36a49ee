"""Every collapse rule, side by side on the paper grid's own scores (no retraining).

The grid (``bench/paper_grid.py``) retrains for each detector; this reads the same cached models and
score matrices and asks, for each (attack, seed, affected count), what every rule and variant of the
default rule would flag, and the ceiling: the smallest top-k of the default statistic among images
labelled as the target that holds 98 % of the poisons (a ground-truth bound, not a rule). It changes
nothing and computes nothing heavy: a cell whose scores are not in the cache is skipped, never scored.

    python -m studies.grid_rules --data-dir ../shared/data/cifar10 --attacks badnet,smooth --seeds 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, tuple[str, dict]] = {
    "delta (default)": ("delta", {}),
    "delta, no split": ("delta", {"split": False}),
    "delta, every copy": ("delta", {"broken_only": False}),
    "delta, d >= 2.5": ("delta", {"effect_size": 2.5}),
    "delta_published": ("delta_published", {}),
    "delta_label": ("delta_label", {}),
    "delta_profile": ("delta_profile", {}),
    "influence_topk": ("influence_topk", {}),
}
"""Name in the table -> (detector, parameters); every one reads the cached scores only."""


def evaluate(pipe, scn, variants: dict[str, tuple[str, dict]] = VARIANTS) -> dict:
    """Each variant's flagged set against the true poisons, and the default statistic's ceiling."""
    from deltainf_core.config import DetectConfig
    from deltainf_core.metrics import precision_recall
    from studies.rule_ceiling import ceiling

    poisoned = pipe.poisoned(scn)
    tm = pipe.trained(scn)
    affected = pipe.affected_set(scn, pipe.default_affected(scn))
    truth = np.asarray(poisoned.poison_indices)
    is_poison = np.zeros(len(poisoned.train), dtype=bool)
    is_poison[truth] = True
    out: dict = {"psr": tm.poison_success_rate, "accuracy": tm.clean_accuracy, "n_affected": len(affected),
                 "n_poisons": int(truth.size), "rules": {}}
    from deltainf_core.errors import CacheError

    for name, (detector, params) in variants.items():
        t0 = time.perf_counter()
        try:
            det = pipe.detect(replace(scn, detect=DetectConfig(detector, params)), affected, poisoned.target_class)
        except CacheError:  # a rule that scores other queries than the grid's: not computed here
            out["rules"][name] = {"not_cached": True}
            continue
        p, r = precision_recall(det.flagged, truth)
        out["rules"][name] = {"n_flagged": int(det.flagged.size), "precision": p, "recall": r,
                              "seconds": time.perf_counter() - t0}
        print(f"  {name}: {out['rules'][name]}", file=sys.stderr, flush=True)
        if name == "delta (default)":
            labels = poisoned.train.labels.numpy()
            out["ceiling"] = ceiling(np.asarray(det.scores, dtype=float), is_poison, labels, poisoned.target_class)
    return out


def markdown(results: dict[str, dict]) -> str:
    cols = list(results)
    lines = ["| rule | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    names = list(dict.fromkeys(n for r in results.values() for n in r.get("rules", {})))
    for name in names:
        cells = []
        for c in cols:
            x = results[c].get("rules", {}).get(name)
            cells.append("" if x is None else "scores not cached" if x.get("not_cached") else
                         f"{x['n_flagged']} (P {x['precision']:.2f}, R {x['recall']:.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| ceiling at recall 0.98 (ground truth) | " + " | ".join(
        f"{results[c]['ceiling']['flagged']} (P {results[c]['ceiling']['precision']:.2f})" if "ceiling" in results[c]
        else "" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data/cifar10", help="as the grid got it (it is in the key)")
    ap.add_argument("--attacks", default="badnet,smooth")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--affected", default="5,1")
    ap.add_argument("--out", default=str(ROOT / "studies" / "results" / "grid_rules-cifar10-cpu.json"))
    args = ap.parse_args(argv)
    from bench.paper_grid import Cell, base_scenario, scenario
    from bench.provenance import provenance
    from deltainf_core.errors import CacheError
    from deltainf_core.pipeline import Pipeline
    from deltainf_core.store import Store

    pipe = Pipeline(Store(read_only=True))
    base = base_scenario(args.data_dir, "mnist5k")
    results: dict[str, dict] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for attack in args.attacks.split(","):
            for n in [int(a) for a in args.affected.split(",")]:
                name = f"{attack} s{seed}, {n} img"
                try:
                    results[name] = evaluate(pipe, scenario(Cell(attack, seed, n, "delta"), base))
                except CacheError as err:
                    print(f"{name}: skipped ({err})", file=sys.stderr)
                    continue
                print(name, json.dumps(results[name]["rules"]["delta (default)"]), flush=True)
    text = markdown(results)
    print(text)
    body = {"results": results, "markdown": text, "data_dir": args.data_dir,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "provenance": provenance(stages=["poison", "train"], models=[base.train.model],
                                     attacks=args.attacks.split(","),
                                     detectors=sorted({d for d, _ in VARIANTS.values()}))}
    Path(args.out).write_text(json.dumps(body, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
