"""Benchmark: each stage's own peak memory in the default ``run``, and how it grows per training image.

    python -m bench.memory_stages --data-dirs /path/c50k-5000,/path/c50k-20000 [--epochs 1] [--trace]
        For each folder, in a fresh process with its own cache (``--cache-root``/<folder name>,
        emptied first unless ``--keep-cache``): the default ``python -m deltainf_core run
        --data-dir DIR`` (the CLI's own parser and ``run_results``), with every pipeline stage
        and kronfluence call wrapped so that the kernel's high-water mark (VmHWM) is reset
        (``/proc/self/clear_refs``) on entering and leaving it. Each stage's *own* peak RSS
        excludes the stages it calls (``detect`` excludes ``scores``); ``incl`` includes them.
        Between sizes: the KB per training image each stage's peak grows by, and the peak
        extrapolated to 50,000 images. Epochs default to 1: memory does not depend on them.
        ``--trace`` adds tracemalloc's peak per stage (numpy and Python allocations, not torch;
        tracing itself adds ~150 MB of RSS, so compare its column only with itself).

    OMP_NUM_THREADS=1 python -m bench.memory_stages --data-dirs DIR-5000,DIR-50000 --out OUT.json
        The check that matters (issue 14): peak RSS at 50,000 images <= 2.5 GB and growth
        <= 20 KB per training image. The first run on a folder also decodes its images
        (the ``dataset`` stage), as a cold ``run`` does.

    python -m bench.memory_stages _one DIR CACHE EPOCHS TRACE
        One size in this process (what the above runs per folder); prints one JSON line.

Results go to ``bench/results/memory-stages.json``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PIPELINE_STAGES = ("dataset", "data_key", "poisoned", "trained", "gaussian_check", "default_affected",
                   "affected_set", "engine", "detect", "unlearn", "oracle", "still_affected")
ENGINE_CALLS = ("fit_factors", "scores")
TRAINING_CALLS = ("train_model", "clean_accuracy", "poison_success_rate")
WORK_CALLS = (*ENGINE_CALLS, *TRAINING_CALLS)
MEMO_HITS = ("dataset", "data_key", "poisoned", "trained", "engine", "gaussian_check")


def _status() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    d = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(d["VmRSS"].split()[0]) / 1024, int(d["VmHWM"].split()[0]) / 1024


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


class StageMeter:
    """Own and inclusive peak RSS per call path (``investigate>detect>scores``)."""

    def __init__(self, trace: bool) -> None:
        self.stack: list[str] = []
        self.rows: dict[str, dict] = {}
        self.trace = trace
        _reset_hwm()

    def _close_segment(self) -> None:
        rss, hwm = _status()
        traced = tracemalloc.get_traced_memory()[1] / 2**20 if self.trace else None
        for depth in range(len(self.stack) + 1):
            path = ">".join(self.stack[:depth]) or "(top)"
            row = self.rows.setdefault(path, {"own_peak_mb": 0.0, "incl_peak_mb": 0.0, "calls": 0})
            row["incl_peak_mb"] = max(row["incl_peak_mb"], hwm)
            if depth == len(self.stack):
                row["own_peak_mb"] = max(row["own_peak_mb"], hwm)
                row["rss_after_mb"] = rss
                if traced is not None:
                    row["tracemalloc_peak_mb"] = max(row.get("tracemalloc_peak_mb", 0.0), traced)
        _reset_hwm()
        if self.trace:
            tracemalloc.reset_peak()

    def wrap(self, owner: object, name: str, label: str | None = None) -> None:
        static = isinstance(inspect.getattr_static(owner, name), staticmethod)
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def measured(*args, **kwargs):
            self._close_segment()
            self.stack.append(label or name)
            self.rows.setdefault(">".join(self.stack), {"own_peak_mb": 0.0, "incl_peak_mb": 0.0, "calls": 0})
            self.rows[">".join(self.stack)]["calls"] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._close_segment()
                self.stack.pop()

        setattr(owner, name, staticmethod(measured) if static else measured)


def run_one(data_dir: str, cache: str, epochs: int, trace: bool) -> dict:
    """The CLI's default ``run`` on ``data_dir`` (epochs cut to ``epochs``), every stage measured."""
    start_rss = _status()[0]
    if trace:
        tracemalloc.start()
    import deltainf_core.pipeline.results as results
    import deltainf_core.pipeline.rounds as rounds
    import deltainf_core.pipeline.stages as stages
    import deltainf_core.unlearning.eu as eu
    from deltainf_core.cli import build_parser
    from deltainf_core.flags import scenario_from_args
    from deltainf_core.influence import InfluenceEngine
    from deltainf_core.pipeline import Pipeline
    from deltainf_core.store import Store

    imported_rss = _status()[0]
    meter = StageMeter(trace)
    for name in PIPELINE_STAGES:
        meter.wrap(Pipeline, name)
    for name in ENGINE_CALLS:
        meter.wrap(InfluenceEngine, name)
    for name in TRAINING_CALLS:  # in the modules that call them
        for mod in (stages, eu):
            if hasattr(mod, name):
                meter.wrap(mod, name)
    meter.wrap(rounds, "investigate")
    args = build_parser().parse_args(["run", "--data-dir", data_dir, "--epochs", str(epochs), "--cache-dir", cache])
    scn = scenario_from_args(args, args.flags)
    pipe = Pipeline(Store(cache))
    t = time.perf_counter()
    result = results.run_results(pipe, scn)
    meter._close_segment()
    outcome = _without_timings({k: result[k] for k in ("poisoned", "detection", "rounds", "unlearned")})
    digest = hashlib.sha256(json.dumps(outcome, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"data_dir": data_dir, "n_train": result["poisoned"]["n_train"], "epochs": epochs,
            "start_rss_mb": start_rss, "imported_rss_mb": imported_rss,
            "peak_rss_mb": max(r["incl_peak_mb"] for r in meter.rows.values()),
            "wall_s": time.perf_counter() - t, "n_flagged": result["detection"]["n_flagged"],
            "n_rounds": len(result["rounds"]), "results_digest": digest, "stages": meter.rows}


def _shown(path: str) -> bool:
    """Printed: the top-level stages and the calls that do work (memo hits stay in the JSON only)."""
    parts = path.split(">")
    return len(parts) == 1 or (len(parts) == 2 and parts[-1] not in MEMO_HITS) or parts[-1] in WORK_CALLS


def _without_timings(value: object) -> object:
    """A result with its seconds left out, so two runs of the same code give the same digest."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in ("seconds", "timings_s")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def slopes(rows: list[dict], target: int = 50_000) -> dict:
    """KB per training image that each stage's own and inclusive peak grows by, between consecutive sizes."""
    out = {}
    for a, b in itertools.pairwise(rows):
        dn = b["n_train"] - a["n_train"]
        per = {}
        for path in sorted(set(a["stages"]) & set(b["stages"])):
            sa, sb = a["stages"][path], b["stages"][path]
            per[path] = {k: round((sb[k] - sa[k]) * 1024 / dn, 2) for k in ("own_peak_mb", "incl_peak_mb")}
        kb = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024 / dn
        out[f"{a['n_train']}->{b['n_train']}"] = {
            "peak_kb_per_image": round(kb, 2),
            f"peak_at_{target}_mb": round(b["peak_rss_mb"] + kb * (target - b["n_train"]) / 1024, 1),
            "stages": per}
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        d, cache, epochs, trace = sys.argv[2:6]
        print(json.dumps(run_one(d, cache, int(epochs), trace == "1")))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dirs", required=True, help="comma-separated ImageFolder roots, smallest first")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cache-root", default=os.path.join("cache", "memory-stages"))
    ap.add_argument("--keep-cache", action="store_true", help="reuse each size's cache (a warm run)")
    ap.add_argument("--trace", action="store_true", help="also tracemalloc's peak per stage (slower)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "memory-stages.json"))
    args = ap.parse_args()
    rows = []
    for d in args.data_dirs.split(","):
        cache = os.path.join(args.cache_root, os.path.basename(os.path.normpath(d)))
        if not args.keep_cache:
            shutil.rmtree(cache, ignore_errors=True)
        proc = subprocess.run([sys.executable, "-m", "bench.memory_stages", "_one", d, cache, str(args.epochs),
                               "1" if args.trace else "0"], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"the run on {d} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['n_train']} images: peak {r['peak_rss_mb']:.0f} MB, after imports {r['imported_rss_mb']:.0f} MB",
              flush=True)
        for path, s in r["stages"].items():
            if not _shown(path):
                continue
            print(f"  {path:60s} own {s['own_peak_mb']:7.0f}  incl {s['incl_peak_mb']:7.0f}  calls {s['calls']}"
                  + (f"  tracemalloc {s['tracemalloc_peak_mb']:.0f}" if "tracemalloc_peak_mb" in s else ""))
    from bench.provenance import provenance

    res = {"runs": rows, "growth": slopes(rows), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "load_average": os.getloadavg()[0], "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "provenance": provenance(stages=["poison", "train", "factors", "scores", "unlearn"], models=["smallcnn"],
                                    attacks=["badnet"], defaults=["detector", "unlearner"])}
    for span, g in res["growth"].items():
        print(f"{span}: {g['peak_kb_per_image']} KB/image overall; own-peak KB/image per stage:")
        for path, s in g["stages"].items():
            if not _shown(path):
                continue
            print(f"  {path:60s} own {s['own_peak_mb']:7.2f}  incl {s['incl_peak_mb']:7.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
