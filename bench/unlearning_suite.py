"""Every registered unlearner on BadNet-poisoned mnist5k: PSR, clean accuracy, cost.

The flagged set mimics a good detector: every true poison plus ``--false-positives``
random clean training images of the target class (the typical false positives).
Success (SPEC §1): PSR < 5 % with a clean-accuracy drop < 2 points.

    OMP_NUM_THREADS=1 python bench/unlearning_suite.py --seeds 0 1

Prints a table per seed and writes ``bench/results/unlearning_suite.json``.
Poisoned models are cached under ``--cache`` (keyed by seed) so re-runs skip training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltainf_core.attacks import badnet
from deltainf_core.config import AttackConfig, DataConfig, TrainConfig, UnlearnConfig
from deltainf_core.data import load_dataset
from deltainf_core.models import build_model
from deltainf_core.training import accuracy, no_progress, predict, train_model
from deltainf_core.unlearning import UNLEARNERS, UnlearnContext


def psr(model: torch.nn.Module, scenario) -> float:
    return float((predict(model, scenario.psr_set.images) == scenario.target_class).float().mean())


def run_seed(seed: int, methods: list[str], n_fp: int, params: dict, cache: Path) -> dict:
    splits = load_dataset(DataConfig())
    train_cfg = TrainConfig(seed=seed)
    attack_cfg = AttackConfig(seed=seed).resolved(splits.train.num_classes)
    scenario = badnet.attack(splits, attack_cfg, train_cfg, no_progress)

    def build() -> torch.nn.Module:
        return build_model(train_cfg.model, splits.train.image_shape, splits.train.num_classes,
                           splits.mean, splits.std)

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"badnet_mnist5k_seed{seed}.pt"
    torch.manual_seed(seed)
    model = build()
    if path.exists():
        model.load_state_dict(torch.load(path))
        model.eval()
    else:
        train_model(model, scenario.train, train_cfg, augment_flip=splits.augment_flip)
        torch.save(model.state_dict(), path)
    before = {"clean_accuracy": accuracy(model, splits.test), "psr": psr(model, scenario)}
    print(f"seed {seed}: poisoned acc {before['clean_accuracy']:.4f} PSR {before['psr']:.3f} "
          f"({len(scenario.poison_indices)} poisons)", flush=True)

    rng = np.random.default_rng(1000 + seed)
    labels = scenario.train.labels.numpy()
    clean_target = np.setdiff1d(np.flatnonzero(labels == scenario.target_class), scenario.poison_indices)
    false_pos = rng.choice(clean_target, size=n_fp, replace=False)
    forget = np.sort(np.concatenate([scenario.poison_indices, false_pos]))

    rows = []
    for name in methods:
        ctx = UnlearnContext(model=model, train=scenario.train, forget=forget, build_model=build,
                             train_config=train_cfg, augment_flip=splits.augment_flip,
                             cfg=UnlearnConfig(method=name, params=params.get(name, {}), seed=seed),
                             device=torch.device("cpu"))
        start = time.perf_counter()
        result = UNLEARNERS.get(name)(ctx)
        wall = time.perf_counter() - start
        row = {"method": name, "psr": psr(result.model, scenario),
               "clean_accuracy": accuracy(result.model, splits.test), "seconds": result.seconds,
               "wall_seconds": wall, "passes": result.passes,
               "info": {k: v for k, v in result.info.items() if k not in ("strengths",)}}
        row["accuracy_drop"] = before["clean_accuracy"] - row["clean_accuracy"]
        row["success"] = row["psr"] < 0.05 and row["accuracy_drop"] < 0.02
        rows.append(row)
        extra = ""
        if name == "potion":
            extra = f" strength {result.info['strength']:.4g} steps {result.info['steps']}"
        print(f"  {name:7s} PSR {row['psr']:.3f} acc {row['clean_accuracy']:.4f} "
              f"(drop {100 * row['accuracy_drop']:+.2f} pt) {row['seconds']:6.1f}s "
              f"{row['passes']:5.2f} passes {'OK' if row['success'] else 'FAIL'}{extra}", flush=True)
    return {"seed": seed, "poisoned": before, "n_poisons": len(scenario.poison_indices),
            "n_flagged": len(forget), "n_false_positives": int(n_fp), "methods": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=UNLEARNERS.names())
    ap.add_argument("--false-positives", type=int, default=60)
    ap.add_argument("--params", default="{}", help='JSON {"method": {"param": value}} overrides')
    ap.add_argument("--cache", type=Path, default=Path("/tmp/deltainf_bench_models"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "unlearning_suite.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    runs = [run_seed(s, args.methods, args.false_positives, params, args.cache) for s in args.seeds]
    summary = {}
    for name in args.methods:
        rows = [r for run in runs for r in run["methods"] if r["method"] == name]
        summary[name] = {
            "psr_mean": float(np.mean([r["psr"] for r in rows])),
            "accuracy_drop_mean": float(np.mean([r["accuracy_drop"] for r in rows])),
            "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
            "passes_mean": float(np.mean([r["passes"] for r in rows])),
            "successes": int(sum(r["success"] for r in rows)), "runs": len(rows),
        }
    out = {"benchmark": "unlearning_suite", "dataset": "mnist5k", "attack": "badnet (defaults)",
           "train": "smallcnn, TrainConfig defaults", "params": params, "runs": runs, "summary": summary}
    if args.methods == UNLEARNERS.names() and not params:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
