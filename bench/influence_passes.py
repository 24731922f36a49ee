"""Benchmark: one influence pass for all collapse queries vs one query, and vs a training epoch.

Prints, from one run on the same model and training set:
- time to score 1 + 50 queries / time to score 1 query   (target <= 1.5: one pass, not 51)
- time of that score pass / time of one training epoch
and writes ``bench/results/influence_passes.json``.

    python bench/influence_passes.py [--dataset mnist5k | --data-dir DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deltainf_core import (
    AttackConfig,
    CollapseConfig,
    DataConfig,
    ImageSet,
    InfluenceConfig,
    Pipeline,
    Scenario,
    TrainConfig,
    build_queries,
)
from deltainf_core.influence import InfluenceEngine
from deltainf_core.training import train_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--data-dir")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scn = Scenario(data=DataConfig(dataset=args.dataset, data_dir=args.data_dir),
                   train=TrainConfig(epochs=args.epochs), attack=AttackConfig())
    pipe = Pipeline()
    tm = pipe.trained(scn)
    train = pipe.poisoned(scn).train
    affected = pipe.affected_set(scn, pipe.default_affected(scn)[:1])
    target = pipe.poisoned(scn).target_class
    labelled = ImageSet(affected.images, torch.full((1,), target), affected.classes)
    queries = build_queries(labelled, target, CollapseConfig(n_copies=50, max_affected=1)).queries
    with tempfile.TemporaryDirectory() as work:
        eng = InfluenceEngine(tm.model, train, InfluenceConfig(), work)  # no score cache: real passes
        t = time.perf_counter()
        eng.fit_factors()
        factor_s = time.perf_counter() - t
        one, many = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            eng.scores(queries.subset([0]))
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            eng.scores(queries)
            many.append(time.perf_counter() - t)
    epoch = []
    for r in range(args.repeats):
        model = pipe.new_model(scn, seed=r)
        t = time.perf_counter()
        train_model(model, train, TrainConfig(epochs=1, seed=r), augment_flip=pipe.dataset(scn.data).augment_flip)
        epoch.append(time.perf_counter() - t)
    res = {
        "dataset": args.data_dir or args.dataset, "n_train": len(train), "n_queries": len(queries),
        "factor_fit_s": factor_s, "score_1_query_s": float(np.median(one)),
        "score_51_queries_s": float(np.median(many)), "train_epoch_s": float(np.median(epoch)),
        "repeats": args.repeats, "device": str(pipe.device), "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    res["ratio_51_vs_1"] = res["score_51_queries_s"] / res["score_1_query_s"]
    res["ratio_scores_vs_epoch"] = res["score_51_queries_s"] / res["train_epoch_s"]
    print(f"score 1+50 queries / score 1 query : {res['ratio_51_vs_1']:.2f}  (target <= 1.5)")
    print(f"score pass / one training epoch    : {res['ratio_scores_vs_epoch']:.2f}")
    print(json.dumps(res, indent=2))
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    name = "influence_passes" + ("" if not args.data_dir and args.dataset == "mnist5k" else "-" + os.path.basename(
        os.path.normpath(args.data_dir or args.dataset)))
    with open(os.path.join(os.path.dirname(__file__), "results", f"{name}.json"), "w") as fh:
        json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
