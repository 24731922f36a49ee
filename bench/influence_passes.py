"""Benchmark: the default investigation's queries in one scoring pass, against one query and a training epoch.

The default workload is every query the default investigation scores: up to 5 affected
images, 50 transformed copies of the first and 20 of each other, plus the originals
(135 queries). From one process, on the same model and training set, it prints and
writes to ``bench/results/influence_passes[-<data>].json``:

- ``ratio_default_vs_1``: time to score the default workload / time to score 1 query
  (target <= 1.2: one pass whose cost hardly grows with the queries);
- ``ratio_scores_vs_epoch``: that score pass / one training epoch (target <= 2);
- ``ratio_factors_vs_epoch``: factor fitting / one training epoch;
- ``ratio_passes_of_64_vs_1``: the same queries in passes of 64 (the old default) / 1 query;
- ``progress_max_gap_s`` (``_fitting_s``): the longest the progress bar stood still while scoring (fitting).

Wall-clock and CPU (process) seconds are both recorded; on a shared machine the CPU
ratios are the steadier ones, and only timings from an otherwise idle machine are figures.

    python -m bench.influence_passes [--dataset mnist5k | --data-dir DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from bench.provenance import provenance
from deltainf_core import DataConfig, ImageSet, Pipeline, Scenario, TrainConfig, build_queries
from deltainf_core.config import config_dict
from deltainf_core.influence import InfluenceEngine
from deltainf_core.training import train_model


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def median(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return float(np.median([p[0] for p in pairs])), float(np.median([p[1] for p in pairs]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--data-dir")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scn = Scenario(data=DataConfig(dataset=args.dataset, data_dir=args.data_dir))
    pipe = Pipeline()
    tm = pipe.trained(scn)
    poisoned = pipe.poisoned(scn)
    train = poisoned.train
    affected = pipe.affected_set(scn, pipe.default_affected(scn))
    target = poisoned.target_class
    labelled = ImageSet(affected.images, torch.full((len(affected),), target), affected.classes)
    queries = build_queries(labelled, target, scn.collapse).queries
    gaps: list[float] = []
    with tempfile.TemporaryDirectory() as work:
        eng = InfluenceEngine(tm.model, train, scn.influence, work)  # no score cache: real passes
        factors = timed(eng.fit_factors)
        fit_gap = float(np.diff([eng.meter.start, *eng.meter.times]).max())
        one, many, legacy = [], [], []
        per_query = 4 * sum(i * o for i, o in eng._shapes)
        old = InfluenceEngine(tm.model, train, replace(scn.influence, query_memory_mb=max(1, 64 * per_query >> 20)),
                              work)  # the same factors (query_memory_mb only changes scoring)
        assert old.factors_name == eng.factors_name
        for _ in range(args.repeats):
            one.append(timed(lambda: eng.scores(queries.subset([0]))))
            many.append(timed(lambda: eng.scores(queries)))
            gaps.append(float(np.diff([eng.meter.start, *eng.meter.times]).max()))
            passes = eng.passes
            legacy.append(timed(lambda: old.scores(queries)))
    flip = pipe.dataset(scn.data).augment_flip
    epoch = [timed(lambda r=r: train_model(pipe.new_model(scn, seed=r), train, TrainConfig(epochs=1, seed=r),
                                           augment_flip=flip)) for r in range(args.repeats)]
    one_s, many_s, legacy_s, epoch_s = median(one), median(many), median(legacy), median(epoch)
    res = {
        "dataset": args.data_dir or args.dataset, "n_train": len(train), "n_queries": len(queries),
        "passes_default": passes, "passes_legacy": old.passes, "queries_per_pass": eng.queries_per_pass(len(queries)),
        "factor_fit_s": factors[0], "score_1_query_s": one_s[0], "score_default_s": many_s[0],
        "score_passes_of_64_s": legacy_s[0], "train_epoch_s": epoch_s[0],
        "cpu_s": {"factor_fit": factors[1], "score_1_query": one_s[1], "score_default": many_s[1],
                  "score_passes_of_64": legacy_s[1], "train_epoch": epoch_s[1]},
        "progress_max_gap_s": max(gaps), "progress_max_gap_fitting_s": fit_gap,
        "repeats": args.repeats, "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0], "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "influence_config": config_dict(scn.influence),
        "provenance": provenance(stages=["train", "factors", "scores"], models=[scn.train.model],
                                 attacks=[scn.attack.attack], datasets=[] if args.data_dir else [args.dataset]),
    }
    for tag, i in (("", 0), ("cpu_", 1)):
        res[f"{tag}ratio_default_vs_1"] = many_s[i] / one_s[i]
        res[f"{tag}ratio_passes_of_64_vs_1"] = legacy_s[i] / one_s[i]
        res[f"{tag}ratio_scores_vs_epoch"] = many_s[i] / epoch_s[i]
        res[f"{tag}ratio_factors_vs_epoch"] = factors[i] / epoch_s[i]
    print(f"default workload ({len(queries)} queries, {passes} pass) / 1 query : "
          f"{res['ratio_default_vs_1']:.2f} wall, {res['cpu_ratio_default_vs_1']:.2f} CPU  (target <= 1.2)")
    print(f"same queries in passes of 64 ({old.passes} passes) / 1 query   : "
          f"{res['ratio_passes_of_64_vs_1']:.2f} wall, {res['cpu_ratio_passes_of_64_vs_1']:.2f} CPU")
    print(f"score pass / one training epoch          : {res['ratio_scores_vs_epoch']:.2f} wall, "
          f"{res['cpu_ratio_scores_vs_epoch']:.2f} CPU  (target <= 2)")
    print(f"factor fitting / one training epoch      : {res['ratio_factors_vs_epoch']:.2f} wall, "
          f"{res['cpu_ratio_factors_vs_epoch']:.2f} CPU")
    print(f"longest progress gap, scoring / fitting  : {res['progress_max_gap_s']:.2f} s / {fit_gap:.2f} s")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    name = "influence_passes" + ("" if not args.data_dir and args.dataset == "mnist5k" else "-" + os.path.basename(
        os.path.normpath(args.data_dir or args.dataset))) + ("-cuda" if pipe.device.type == "cuda" else "")
    with open(os.path.join(os.path.dirname(__file__), "results", f"{name}.json"), "w") as fh:
        json.dump(res, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
