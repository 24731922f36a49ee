"""Benchmark: the default ``run`` from a cold cache, this code beside an earlier checkout, in one sitting.

    python -m bench.cold_run --baseline-src /path/to/older/checkout [--dataset mnist5k] [--repeats 1]

Each repeat runs, in fresh processes and fresh caches, the older checkout's default run
and this checkout's (alternating, so drift on a shared machine hits both alike), then
this checkout's warm rerun on its now-full cache. Wall seconds are the whole process
(imports included), as a user waits for them. Writes ``bench/results/cold_run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_run(src: Path, cache: str, dataset: str, out: str) -> dict:
    cmd = [sys.executable, "-m", "deltainf_core", "run", "--dataset", dataset, "--seed", "0", "--quiet",
           "--cache-dir", cache, "--out", out]
    t, load = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"run in {src} failed: {proc.stderr[-1000:]}")
    r = json.loads(Path(out).read_text())
    return {"wall_s": wall, "load_average_before": load, "timings_s": r.get("timings_s"),
            "n_flagged": r["detection"]["n_flagged"], "flagged": sorted(r["detection"]["flagged"])}


def bad_path_seconds(src: Path, tmp: str) -> float:
    """Whole-process seconds until a ``--out`` under a regular file is refused (exit 2)."""
    blocker = os.path.join(tmp, "a-file")
    Path(blocker).write_text("x")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deltainf_core", "run", "--out", os.path.join(blocker, "r.json")],
                          cwd=src, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    if proc.returncode != 2:
        raise SystemExit(f"a bad --out was not refused: {proc.stderr[-500:]}")
    return time.perf_counter() - t


def git_head(src: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-src", required=True, help="an older checkout of this project to compare with")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    base = Path(args.baseline_src).resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            row = {}
            for name, src in (("baseline", base), ("current", ROOT)):
                cache = os.path.join(tmp, f"{name}-{i}")
                row[name] = timed_run(src, cache, args.dataset, os.path.join(tmp, f"{name}-{i}.json"))
                print(f"{name:8s} cold: {row[name]['wall_s']:.1f} s, {row[name]['n_flagged']} flagged", flush=True)
            row["current_warm"] = timed_run(ROOT, os.path.join(tmp, f"current-{i}"), args.dataset,
                                            os.path.join(tmp, f"warm-{i}.json"))
            print(f"current  warm: {row['current_warm']['wall_s']:.1f} s", flush=True)
            row["bad_out_path_s"] = bad_path_seconds(ROOT, tmp)
            print(f"bad --out path refused in {row['bad_out_path_s']:.2f} s", flush=True)
            rows.append(row)
    best = {k: min(r[k]["wall_s"] for r in rows) for k in ("baseline", "current", "current_warm")}
    from bench.provenance import provenance

    res = {"dataset": args.dataset, "runs": rows, "best_wall_s": best,
           "bad_out_path_s": min(r["bad_out_path_s"] for r in rows),
           "ratio_current_vs_baseline_cold": best["current"] / best["baseline"],
           "same_flagged_set": all(r["baseline"]["flagged"] == r["current"]["flagged"] for r in rows),
           "baseline_commit": git_head(base), "cpu_count": os.cpu_count(),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "provenance": provenance(stages=["poison", "train", "factors", "scores", "unlearn"], models=["smallcnn"],
                                    attacks=["badnet"], datasets=[args.dataset],
                                    defaults=["detector", "unlearner"])}
    print(f"cold run, current / baseline: {res['ratio_current_vs_baseline_cold']:.2f} "
          f"({best['current']:.1f} s vs {best['baseline']:.1f} s); warm rerun {best['current_warm']:.1f} s "
          f"(target < 10 s); same flagged set: {res['same_flagged_set']}")
    os.makedirs(ROOT / "bench" / "results", exist_ok=True)
    (ROOT / "bench" / "results" / "cold_run.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
