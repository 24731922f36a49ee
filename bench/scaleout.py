"""Benchmark: the ray engine against the local one on real CIFAR-10 images, at equal cores.

    python -m bench.scaleout --sizes 20000,0 [--data-dir ../shared/data/cifar10] [--workers 2]
        [--base-cache DIR] [--out bench/results/scaleout-cifar10.json]

For each size N, the default scenario (BadNet 1 %, SmallCNN, the default recipe, the default
detector) on the first N training images (``DataConfig(data_dir, max_train=N)``):

1. ``prepare``: data, attack and training once, with the local engine on W torch threads, in a
   shared cache (training is the same computation on both engines: the driver trains);
2. ``measure``, each in a fresh process and a fresh cache holding only that poisoned set and
   model: the influence stages the engine distributes — the factor fit (covariance partitions,
   eigendecomposition, lambda partitions), the collapse's one score pass, the default detector —
   with the local engine on W threads, then with the ray engine on a local cluster of
   W one-thread workers (``ray.init(num_cpus=W)``, ``--unit-cpus 1``).

Prints seconds per stage and the overhead ratio ray / local of factors + scores at equal cores
(goal ≤ 1.1), checks that both engines flag the same images, and writes the JSON with
provenance, the cluster's start-up time (not in the ratio) and the local run's seconds per
unit (what BENCHMARKS' extrapolation to 1,000,000 images uses). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
CIFAR10 = os.path.join(ROOT, "..", "shared", "data", "cifar10")


def scenario(data_dir: str, n: int):
    """The default scenario on the first ``n`` training images (0: all of them). The folder is named as given,
    as the cache keys it, so ``--base-cache`` can serve a model another run trained on the same folder."""
    from deltainf_core import DataConfig, Scenario

    return Scenario(data=DataConfig(data_dir=data_dir, max_train=n or None), max_rounds=1)


def prepare(data_dir: str, n: int, cache: str, workers: int) -> dict:
    """Data, attack and the trained model in ``cache`` (local engine, ``workers`` threads)."""
    import torch

    from deltainf_core import Pipeline, Store

    torch.set_num_threads(workers)
    scn = scenario(data_dir, n)
    pipe = Pipeline(Store(cache))
    t0 = time.perf_counter()
    trained = pipe.trained(scn)
    return {"train_s": time.perf_counter() - t0, "cached": trained.cached, "clean_accuracy": trained.clean_accuracy,
            "poison_success_rate": trained.poison_success_rate, "n_train": len(pipe.poisoned(scn).train)}


def _unit_timer() -> dict:
    """Seconds of every factor unit and score chunk this process computes (the local run's per-unit costs)."""
    from deltainf_core.influence import InfluenceEngine

    costs: dict = {"factor_units": {}, "score_chunks": []}
    fit_unit, score_chunk = InfluenceEngine.fit_unit, InfluenceEngine.score_chunk

    def timed_fit(self, plan, step, data):
        t0 = time.perf_counter()
        fit_unit(self, plan, step, data)
        costs["factor_units"][step] = {"seconds": time.perf_counter() - t0, "images": plan.images(step)}

    def timed_score(self, queries, key, start, stop, on_batch):
        t0 = time.perf_counter()
        out = score_chunk(self, queries, key, start, stop, on_batch)
        costs["score_chunks"].append({"seconds": time.perf_counter() - t0, "images": stop - start,
                                      "queries": len(queries)})
        return out

    InfluenceEngine.fit_unit, InfluenceEngine.score_chunk = timed_fit, timed_score
    return costs


def measure(data_dir: str, n: int, base: str, cache: str, engine: str, workers: int) -> dict:
    """The influence stages on ``engine`` in a fresh ``cache`` seeded with ``base``'s poisoned set and model."""
    import numpy as np
    import torch

    from deltainf_core import Pipeline, Store
    from deltainf_core.config import ComputeConfig
    from deltainf_core.scaleout.executor import executor_for

    torch.set_num_threads(workers if engine == "local" else 1)
    scn = scenario(data_dir, n)
    src, dst = Pipeline(Store(base)), Store(cache)
    for key in (src.poison_key(scn), src.model_key(scn)):
        dst.set(key, src.store.get(key))
    connect_s = 0.0
    costs = _unit_timer() if engine == "local" else None
    if engine == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=workers, log_to_driver=False)
        executor = executor_for(ComputeConfig(engine="ray", unit_cpus=1), cache)  # the probe starts a worker
        connect_s = time.perf_counter() - t0
    else:
        executor = executor_for(ComputeConfig(), cache)
    pipe = Pipeline(dst, executor=executor)
    trained = pipe.trained(scn)
    assert trained.cached, "the model should come from the prepared cache"
    affected = pipe.affected_set(scn, pipe.default_affected(scn))
    collapse = pipe.collapse(scn, affected)
    t0 = time.perf_counter()
    detection = pipe.detect(scn, affected)
    detect_s = time.perf_counter() - t0
    return {"engine": engine, "workers": workers, "torch_threads": torch.get_num_threads(), "connect_s": connect_s,
            "factors_s": collapse.factor_seconds, "scores_s": collapse.score_seconds, "detect_s": detect_s,
            "n_queries": len(collapse.queries.queries), "n_flagged": len(detection.flagged),
            "flagged": [int(i) for i in np.asarray(detection.flagged)], "unit_costs": costs}


def _child(work: str, *args: str) -> dict:
    """Run one step in a fresh process (its own kronfluence state and Ray driver); its JSON from stdout.

    The decoded images are shared by every step through ``DELTAINF_CACHE`` (default: under ``work``),
    so each fresh cache does not decode the ImageFolder again."""
    env = {**os.environ, "DELTAINF_CACHE": os.environ.get("DELTAINF_CACHE", os.path.join(work, "decoded"))}
    out = subprocess.run([sys.executable, "-m", "bench.scaleout", *args], cwd=ROOT, capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"step {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: list[int], data_dir: str, workers: int, out_path: str, work: str, base_cache: str | None = None) -> dict:
    from bench.provenance import provenance

    results = []
    for n in sizes:
        base = base_cache or os.path.join(work, f"base-{n}")
        common = ("--n", str(n), "--data-dir", data_dir, "--workers", str(workers))
        prep = _child(work, "prepare", *common, "--cache", base)
        runs = {}
        for engine in ("local", "ray"):
            cache = os.path.join(work, f"{engine}-{n}-{int(time.time())}")
            runs[engine] = _child(work, "measure", *common, "--base", base, "--cache", cache, "--engine", engine)
        local, ray = runs["local"], runs["ray"]
        ratio = (ray["factors_s"] + ray["scores_s"]) / (local["factors_s"] + local["scores_s"])
        row = {"n_train": prep["n_train"], "prepare": prep, "local": local, "ray": ray, "overhead_ratio": ratio,
               "same_flagged": local["flagged"] == ray["flagged"]}
        results.append(row)
        print(f"{prep['n_train']:>7} images: local ({workers} threads) factors {local['factors_s']:.1f}s scores "
              f"{local['scores_s']:.1f}s | ray ({workers} x 1 thread) factors {ray['factors_s']:.1f}s scores "
              f"{ray['scores_s']:.1f}s (+{ray['connect_s']:.0f}s cluster start) | ratio {ratio:.3f} "
              f"(goal <= 1.1) | same flagged set: {row['same_flagged']}", flush=True)
    import platform

    doc = {"benchmark": "scaleout", "data_dir": os.path.abspath(data_dir), "workers": workers,
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "results": results,
           "provenance": provenance(stages=["poison", "train", "factors", "scores"], models=["smallcnn"],
                                    attacks=["badnet"], defaults=["detector"])}
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(f"wrote {out_path}")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", nargs="?", default="run", choices=["run", "prepare", "measure"])
    ap.add_argument("--sizes", default="20000,0", help="comma-separated training-set sizes (0: the whole set)")
    ap.add_argument("--data-dir", default=CIFAR10, help="ImageFolder root (train/<class>, test/<class>)")
    ap.add_argument("--workers", type=int, default=2, help="cores: local threads = Ray one-thread workers")
    ap.add_argument("--out", default=os.path.join(RESULTS, "scaleout-cifar10.json"))
    ap.add_argument("--work", default=None, help="where the caches go (default: a temporary folder)")
    ap.add_argument("--base-cache", default=None, help="train (or find) each size's model in this cache instead "
                    "of a fresh one under --work, e.g. the paper grid's, which holds the whole set's BadNet model")
    ap.add_argument("--n", type=int)
    ap.add_argument("--cache")
    ap.add_argument("--base")
    ap.add_argument("--engine", choices=["local", "ray"])
    args = ap.parse_args()
    if args.step == "prepare":
        print(json.dumps(prepare(args.data_dir, args.n, args.cache, args.workers)))
    elif args.step == "measure":
        print(json.dumps(measure(args.data_dir, args.n, args.base, args.cache, args.engine, args.workers)))
    else:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        if args.work:
            run(sizes, args.data_dir, args.workers, args.out, args.work, args.base_cache)
        else:
            with tempfile.TemporaryDirectory(prefix="scaleout-") as work:
                run(sizes, args.data_dir, args.workers, args.out, work, args.base_cache)


if __name__ == "__main__":
    main()
