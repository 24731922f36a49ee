"""Benchmark: the default investigation as the training set grows, and what factor caps cost.

    python -m bench.scaling build --n 50000 --out data/cifar-aug [--nested 5000,10000,20000]
        An ImageFolder of N CIFAR-size training images made from the real CIFAR subset
        (../shared/data/cifar10-subset, 1,900 train / 380 test) by augmentation: image i
        is training image i mod 1,900 (its class kept) after a seeded random crop of a
        4-pixel reflect-padded copy, a horizontal flip with p 0.5, and brightness and
        contrast scaled by U(0.8, 1.2); the first 1,900 are the originals. The test split
        is the subset's own 380 test images.

    python -m bench.scaling run --data-dirs data/cifar-aug-5000,data/cifar-aug-50000
        The whole default ``run`` on each folder in a fresh process: seconds per stage,
        seconds per image, peak RSS, the growth exponent of each stage between sizes.

    python -m bench.scaling caps --datasets mnist5k,<cifar dir> --seeds 0,1,2 --lambda-caps 1000,500 [--query-rank 32]
        First-round flagged sets with the factor caps at their defaults and with each
        cap given (per dataset, in that order): a cap may only be a default where the
        flagged set stays the same; likewise for low-rank query gradients.

Results go to ``bench/results/scaling-<mode>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np

from deltainf_core.pipeline import run_results

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SUBSET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                      "cifar10-subset")


def build(n: int, out: str, source: str = SUBSET, seed: int = 0) -> None:
    """Write an ImageFolder of ``n`` augmented training images (see the module docstring)."""
    import shutil

    import torch
    import torch.nn.functional as F
    from PIL import Image

    from deltainf_core import DataConfig, load_dataset

    torch.set_num_threads(1)  # per-image ops on 3x32x32 tensors: threads only add overhead (10x slower on 16 cores)
    splits = load_dataset(DataConfig(data_dir=source))
    src, labels, classes = splits.train.pixels, splits.train.labels, splits.classes
    gen = torch.Generator().manual_seed(seed)
    for c in classes:
        os.makedirs(os.path.join(out, "train", c), exist_ok=True)
    for i in range(n):
        x = src[i % len(src)].float() / 255
        if i >= len(src):
            _, h, w = x.shape
            pad = F.pad(x[None], (4, 4, 4, 4), mode="reflect")[0]
            dy, dx = (int(v) for v in torch.randint(0, 9, (2,), generator=gen))
            x = pad[:, dy : dy + h, dx : dx + w]
            if torch.rand(1, generator=gen).item() < 0.5:
                x = x.flip(-1)
            b, k = (0.8 + 0.4 * torch.rand(2, generator=gen)).tolist()
            x = ((x - x.mean()) * k + x.mean() * b).clamp(0, 1)
        arr = (x * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(os.path.join(out, "train", classes[int(labels[i % len(src)])], f"{i:06d}.png"))
    shutil.copytree(os.path.join(source, "test"), os.path.join(out, "test"), dirs_exist_ok=True)


def nest(full: str, n: int, out: str) -> None:
    """The first ``n`` images of a built set as their own folder (hard links): image i is the
    same in every size, since the augmentation draws in order."""
    import shutil

    for d, _, files in os.walk(os.path.join(full, "train")):
        dst = os.path.join(out, os.path.relpath(d, full))
        os.makedirs(dst, exist_ok=True)
        for f in files:
            if int(f.split(".")[0]) < n:
                os.link(os.path.join(d, f), os.path.join(dst, f))
    shutil.copytree(os.path.join(full, "test"), os.path.join(out, "test"), dirs_exist_ok=True)


def _run_one(data_dir: str, cache: str) -> dict:
    """One default ``run`` in this process (called in a child process by ``run``), then one query
    scored on the same factors: the default workload's scoring ratio and the per-epoch ratios."""
    from deltainf_core import DataConfig, Pipeline, Scenario, Store

    t, load = time.perf_counter(), os.getloadavg()[0]
    pipe = Pipeline(Store(cache))
    scn = Scenario(data=DataConfig(data_dir=data_dir))
    result = run_results(pipe, scn)
    wall = time.perf_counter() - t
    rss_run = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timings = result["timings_s"]
    n = result["poisoned"]["n_train"]
    epochs = scn.train.epochs or scn.train.epochs_for(n)
    epoch_s = timings["train"] / epochs
    rounds = max(1, len(result.get("rounds") or []))
    queries = pipe.collapse(scn, pipe.affected_set(scn, pipe.default_affected(scn))).queries.queries  # cached
    eng = pipe.engine(scn)
    t1 = time.perf_counter()
    eng.scores(queries.subset([0]))  # a query set never scored: one real pass
    one_query_s = time.perf_counter() - t1
    return {"wall_s": wall, "timings_s": timings,
            "load_average_before_after": [load, os.getloadavg()[0]],
            "n_train": n, "epochs": epochs, "n_queries": len(queries),
            "n_flagged": result["detection"]["n_flagged"],
            "precision": result["detection"]["precision"], "recall": result["detection"]["recall"],
            "rounds": rounds, "score_1_query_s": one_query_s,
            # the timings add up every round (each refits factors and rescores on the unlearned model)
            "ratio_default_scores_vs_1_query": timings["scores"] / rounds / one_query_s,
            "ratio_scores_vs_epoch": timings["scores"] / rounds / epoch_s,
            "ratio_factors_vs_epoch": timings["factors"] / rounds / epoch_s,
            "peak_rss_mb": rss_run, "device": result["device"], "gpu": _gpu()}


def _gpu() -> dict | None:
    """The GPU's name and this process's peak allocation on it (None on a CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {"name": torch.cuda.get_device_name(), "peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20}


PER_ROUND_STAGES = ("factors", "scores", "detect", "unlearn")
"""Stages every investigation round repeats (training and the oracle run once)."""


def run(data_dirs: list[str], cache_root: str) -> dict:
    rows = []
    for d in data_dirs:
        cache = os.path.join(cache_root, os.path.basename(os.path.normpath(d)))
        out = subprocess.run([sys.executable, "-m", "bench.scaling", "_one", d, cache], capture_output=True,
                             text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append({"data_dir": d, **json.loads(out)})
        print(json.dumps(rows[-1]), flush=True)
    growth, per_round = {}, {}
    for a, b in itertools.pairwise(rows):
        ratio = math.log(b["n_train"] / a["n_train"])
        pair = f"{a['n_train']}->{b['n_train']}"
        growth[pair] = {k: math.log(max(b["timings_s"][k], 1e-3) / max(a["timings_s"][k], 1e-3)) / ratio
                        for k in a["timings_s"]}
        # a larger set can take another round (more flagged, attack not yet gone): compare one round's cost
        per_round[pair] = {k: math.log(max(b["timings_s"][k] / b.get("rounds", 1), 1e-3)
                                       / max(a["timings_s"][k] / a.get("rounds", 1), 1e-3)) / ratio
                           for k in PER_ROUND_STAGES if k in a["timings_s"]}
    return {"runs": rows, "growth_exponent": growth, "growth_exponent_per_round": per_round,
            "rss_kb_per_image": [(r["peak_rss_mb"] * 1024 / r["n_train"]) for r in rows]}


def caps(datasets: list[str], seeds: list[int], lambda_caps: list[int], query_rank: int | None = None) -> dict:
    from deltainf_core import AttackConfig, CollapseConfig, DataConfig, Pipeline, Scenario, TrainConfig

    out = []
    for data, cap in zip(datasets, lambda_caps, strict=True):
        dcfg = DataConfig(data_dir=data) if os.path.isdir(data) else DataConfig(dataset=data)
        for seed in seeds:
            scn = Scenario(data=dcfg, attack=AttackConfig(seed=seed), train=TrainConfig(seed=seed),
                           collapse=CollapseConfig(seed=seed), max_rounds=1)  # as ``run --seed``
            pipe = Pipeline()
            affected = pipe.affected_set(scn, pipe.default_affected(scn))
            target = pipe.poisoned(scn).target_class
            flagged = {}
            variants = [("default", scn.influence), ("lambda_cap", replace(scn.influence, lambda_max_examples=cap))]
            if query_rank:
                variants.append(("query_rank", replace(scn.influence, query_gradient_rank=query_rank)))
            for name, infl in variants:
                t = time.perf_counter()
                eng = pipe.engine(replace(scn, influence=infl))
                eng.fit_factors()
                fit = time.perf_counter() - t
                flagged[name] = (pipe.detect(replace(scn, influence=infl), affected, target).flagged.tolist(), fit)
            a, b = (set(flagged[k][0]) for k in ("default", "lambda_cap"))
            row = {"data": data, "seed": seed, "lambda_cap": cap, "n_train": len(pipe.poisoned(scn).train),
                   "n_default": len(a), "n_capped": len(b), "same": a == b, "jaccard": len(a & b) / max(1, len(a | b)),
                   "fit_s_default": flagged["default"][1], "fit_s_capped": flagged["lambda_cap"][1],
                   "flagged_default": sorted(a), "flagged_capped": sorted(b)}
            if query_rank:
                r = set(flagged["query_rank"][0])
                row.update({"query_rank": query_rank, "n_query_rank": len(r), "same_query_rank": a == r,
                            "jaccard_query_rank": len(a & r) / max(1, len(a | r))})
            out.append(row)
            print(json.dumps(row), flush=True)
    return {"caps": out}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        print(json.dumps(_run_one(sys.argv[2], sys.argv[3])))
        return
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("build")
    b.add_argument("--n", type=int, required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--source", default=SUBSET, help="the real CIFAR subset (an ImageFolder) to augment")
    b.add_argument("--nested", default="", help="also write the first N images as OUT-N folders, e.g. 5000,10000")
    r = sub.add_parser("run")
    r.add_argument("--data-dirs", required=True)
    r.add_argument("--cache-root", default=os.path.join("cache", "scaling"))
    c = sub.add_parser("caps")
    c.add_argument("--datasets", default="mnist5k")
    c.add_argument("--seeds", default="0,1,2")
    c.add_argument("--lambda-caps", default="1000")
    c.add_argument("--query-rank", type=int, help="also score with this query_gradient_rank")
    args = ap.parse_args()
    if args.mode == "build":
        build(args.n, args.out, args.source)
        for n in (int(v) for v in args.nested.split(",") if v):
            nest(args.out, n, f"{args.out.rstrip('/')}-{n}")
        return
    if args.mode == "run":
        res = run(args.data_dirs.split(","), args.cache_root)
    else:
        res = caps(args.datasets.split(","), [int(s) for s in args.seeds.split(",")],
                   [int(v) for v in args.lambda_caps.split(",")], args.query_rank)
    from bench.provenance import provenance

    res.update({"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average": os.getloadavg()[0],
                "cpu_count": os.cpu_count(), "numpy": np.__version__,
                "provenance": provenance(stages=["poison", "train", "factors", "scores", "unlearn"],
                                         models=["smallcnn"], attacks=["badnet"], defaults=["detector", "unlearner"])})
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"scaling-{args.mode}.json"), "w") as fh:
        json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
