"""Benchmark: the default pipeline on mnist5k and the CIFAR subset, several seeds.

For each (dataset, seed) it runs exactly what ``python -m deltainf_core run --seed S``
runs (cached stages are reused), then re-derives, from the same scores, how other
rules would have done, so the default rule is compared side by side:

- ``delta`` (default): pooled effect size over the copies that broke the attack
  (std within each affected image), candidates at d >= 2, Otsu's upper group of log d;
  the same without the split
- the first default (5920518, 2026-11-23): d >= 2 over every copy, with the within-image and the total std
- ``delta_published``: the published vote (Δ < 0 on >= T - 1 copies)

Writes ``bench/results/core_pipeline_<datasets>.json`` and prints one line per run.

    python -m bench.core_pipeline [--seeds 0 1 2] [--cifar ../shared/data/cifar10-subset]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from deltainf_core import (
    RULES,
    AttackConfig,
    CollapseConfig,
    DataConfig,
    Pipeline,
    Scenario,
    TrainConfig,
    UnlearnConfig,
    influence_collapse,
    pooled_effect_size,
    precision_recall,
)
from deltainf_core.collapse.rules import EffectSizeParams, PublishedVoteParams
from deltainf_core.pipeline import run_results


def rule_table(pipe: Pipeline, scn: Scenario, affected_idx: np.ndarray, truth: np.ndarray,
               dump: str | None = None) -> dict:
    cr = pipe.collapse(scn, pipe.affected_set(scn, affected_idx))
    if dump:  # raw collapse matrices, for studying other rules offline
        rows = cr.queries.copy_rows()
        np.savez_compressed(dump, collapse=influence_collapse(cr.scores, cr.queries),
                            image_of=cr.queries.image_of[rows], transform=cr.queries.transform[rows].astype(str),
                            labels=pipe.poisoned(scn).train.labels.numpy(), truth=truth,
                            target=cr.target_class)
    delta_rule = RULES.get("delta")
    default = delta_rule(cr, EffectSizeParams())
    d_broken = default.statistic
    all_copies = delta_rule(cr, EffectSizeParams(broken_only=False, split=False))
    d = all_copies.statistic
    d_total = pooled_effect_size(influence_collapse(cr.scores, cr.queries))
    out = {}
    for name, flagged in {
        "default (broken copies, d>=2, Otsu split)": default.flagged,
        "broken copies, d>=2, no split": delta_rule(cr, EffectSizeParams(split=False)).flagged,
        "d>=2 all copies (first default)": all_copies.flagged,
        "d>=2 all copies (total std)": np.flatnonzero(d_total >= 2.0),
        "published th=0 n_tol=1": RULES.get("delta_published")(cr, PublishedVoteParams()).flagged,
    }.items():
        p, r = precision_recall(flagged, truth)
        out[name] = {"n_flagged": int(flagged.size), "precision": p, "recall": r}
    out["poison_effect_size_min"] = float(d[truth].min())
    out["poison_broken_effect_size_min"] = float(d_broken[truth].min())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cifar", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                    "cifar10-subset"))
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "cifar"])
    ap.add_argument("--unlearn", default="eu")
    ap.add_argument("--out", help="result file (default bench/results/core_pipeline_<datasets>.json)")
    ap.add_argument("--dump", help="folder for each run's collapse matrix (.npz), for offline rule studies")
    args = ap.parse_args()
    runs = []
    for ds in args.datasets:
        data = DataConfig() if ds == "mnist5k" else DataConfig(data_dir=os.path.abspath(args.cifar))
        if ds != "mnist5k" and not os.path.isdir(data.data_dir):
            print(f"skip {ds}: {data.data_dir} not found")
            continue
        for seed in args.seeds:
            scn = Scenario(data=data, attack=AttackConfig(seed=seed), train=TrainConfig(seed=seed),
                           collapse=CollapseConfig(seed=seed), unlearn=UnlearnConfig(method=args.unlearn, seed=seed))
            pipe = Pipeline()
            t = time.perf_counter()
            r = run_results(pipe, scn)
            wall = time.perf_counter() - t
            truth = pipe.poisoned(scn).poison_indices
            dump = os.path.join(args.dump, f"collapse-{ds}-{seed}.npz") if args.dump else None
            if dump:
                os.makedirs(args.dump, exist_ok=True)
            rules = rule_table(pipe, scn, pipe.default_affected(scn), truth, dump)
            row = {"dataset": ds, "seed": seed, "wall_s": wall, "poisoned": r["poisoned"],
                   "detection": {k: v for k, v in r["detection"].items() if k != "flagged"},
                   "rounds": r["rounds"], "unlearned": r["unlearned"], "rules_first_round": rules,
                   "timings_s": r["timings_s"]}
            runs.append(row)
            u = r["unlearned"] or {}
            print(f"{ds:8s} seed {seed}: PSR {r['poisoned']['poison_success_rate']:.2f} acc "
                  f"{r['poisoned']['clean_accuracy']:.3f} | flagged {r['detection']['n_flagged']} "
                  f"({100 * r['detection']['flagged_fraction']:.1f}%) P {r['detection']['precision']:.2f} "
                  f"R {r['detection']['recall']:.2f} rounds {len(r['rounds'])} | EU PSR "
                  f"{u.get('poison_success_rate', float('nan')):.3f} acc {u.get('clean_accuracy', float('nan')):.3f} "
                  f"(oracle {u.get('oracle_clean_accuracy') or float('nan'):.3f}, oracle PSR "
                  f"{u.get('oracle_poison_success_rate') or 0:.3f}) | {wall:.0f}s")
            for name, v in rules.items():
                if isinstance(v, dict):
                    print(f"    first round, {name:34s}: {v['n_flagged']:4d} flagged, P {v['precision']:.2f} "
                          f"R {v['recall']:.2f}")
    name = "core_pipeline_" + "_".join("mnist5k" if d == "mnist5k" else "cifar10-subset" for d in args.datasets)
    path = args.out or os.path.join(os.path.dirname(__file__), "results", f"{name}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    from bench.provenance import provenance

    prov = provenance(stages=["poison", "train", "factors", "scores", "unlearn"], models=["smallcnn"],
                      attacks=["badnet"], detectors=["delta_published"], unlearners=[args.unlearn],
                      defaults=["detector"])
    with open(path, "w") as fh:
        json.dump({"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": runs, "provenance": prov}, fh, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
