"""App latency: toggling a transformation → redrawn scatter (50,000 points), and the collapse page's load.

1. *Toggle*: synthetic scores for 50,000 training images and 5 affected images
   (50 + 4 × 20 copies over the 7 transformations, 135 queries). One toggle is what the
   server does when the analyst clicks a transformation pill: filter the copy rows,
   recompute per-panel Δ and the pooled effect size, re-flag, build the WebGL figure
   and serialise it exactly as ``st.plotly_chart`` does (``plotly.io.to_json``).
   Target: < 1 s.
2. *Collapse page*: an ``AppTest`` session trains a tiny built-in scenario and computes
   its collapse once (cached on disk); then we time (a) opening the collapse page with
   the result in the browser session, and (b) a fresh browser session's "Compute" when factors and
   scores are already on disk (what a second visit costs).

    python -m bench.app_latency [--n-train 50000] [--repeats 7] [--out bench/results/app_latency.json]
    python -m bench.app_latency --scenario default --cache-dir cache   # the real default investigation
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TARGET_S = 1.0


def synthetic_collapse(n_train: int, seed: int = 0):
    """Scores shaped like a real 5-image collapse: 1% poisons collapse, the rest is noise."""
    import torch

    from deltainf_core import TRANSFORMS, CollapseQueries, ImageSet

    transforms = TRANSFORMS.names()

    rng = np.random.default_rng(seed)
    image_of, is_orig, names = [], [], []
    for k in range(5):
        image_of.append(k)
        is_orig.append(True)
        names.append("")
        n = 50 if k == 0 else 20
        for t in rng.integers(0, len(transforms), size=n):
            image_of.append(k)
            is_orig.append(False)
            names.append(transforms[int(t)])
    q = len(image_of)
    scale = np.exp(rng.normal(8, 2, size=n_train)).astype(np.float32)  # heavy-tailed magnitudes like EK-FAC
    scores = (rng.standard_normal((q, n_train)).astype(np.float32) * scale)
    poisons = rng.choice(n_train, size=n_train // 100, replace=False)
    orig = np.flatnonzero(is_orig)
    scores[np.ix_(orig, poisons)] = np.abs(scores[np.ix_(orig, poisons)]) * 20
    copies = np.flatnonzero(~np.asarray(is_orig))
    scores[np.ix_(copies, poisons)] = -np.abs(scores[np.ix_(copies, poisons)])
    images = ImageSet(torch.zeros(q, 1, 2, 2), torch.zeros(q, dtype=torch.long), tuple(str(i) for i in range(10)))
    queries = CollapseQueries(images, np.asarray(image_of), np.asarray(is_orig), np.asarray(names, dtype=object))
    return scores, queries, np.sort(poisons)


def bench_toggle(n_train: int, repeats: int) -> dict:
    import plotly.io as pio

    from deltainf_core import TRANSFORMS, collapse_panels, collapse_stats, effect_size
    from deltainf_core.collapse.rules import candidates
    from deltainf_core.figures import collapse_figure

    every = TRANSFORMS.names()

    scores, queries, poisons = synthetic_collapse(n_train)
    t = time.perf_counter()
    stats = collapse_stats(scores, queries)  # once per scoring pass (the app keeps it in the session)
    stats_s = time.perf_counter() - t
    subsets = [list(every)] + [[t for t in every if t != off] for off in every]
    parts = {"reduce_s": [], "figure_s": [], "serialise_s": [], "total_s": []}
    payload = 0
    for r in range(repeats):
        subset = subsets[r % len(subsets)]
        t0 = time.perf_counter()
        panels = collapse_panels(stats, subset)
        d = effect_size(stats, subset)
        flagged = candidates(d, 2.0)
        t1 = time.perf_counter()
        fig = collapse_figure(panels, d, "d", "effect size d", 2.0, poisons, flagged)
        t2 = time.perf_counter()
        spec = pio.to_json(fig, validate=False)  # what st.plotly_chart sends
        t3 = time.perf_counter()
        payload = len(spec)
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            parts[key].append(value)
    out = {k: {"median": statistics.median(v), "max": max(v)} for k, v in parts.items()}
    points = sum(len(t.x) for t in fig.data)
    median = out["total_s"]["median"]
    return {
        "n_train": n_train, "n_queries": int(scores.shape[0]), "panels": 1 + len(subsets[0]),
        "points_drawn": int(points), "payload_mb": round(payload / 2**20, 2), "repeats": repeats,
        "stats_once_per_result_s": round(stats_s, 4),
        "median_s": round(median, 4), "max_s": round(out["total_s"]["max"], 4),
        "breakdown_median_s": {k: round(v["median"], 4) for k, v in out.items() if k != "total_s"},
        "target_s": TARGET_S, "ratio_to_target": round(median / TARGET_S, 3), "meets_target": median < TARGET_S,
    }


@functools.cache
def app_driver():
    """The app tests' driver: their tiny scenario and the navigation fix AppTest needs (one
    definition each; copies here had drifted and the page benchmark no longer ran)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_driver", ROOT / "tests" / "app" / "app_driver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_collapse_page(cache_dir: str, repeats: int, scenario: str = "tiny") -> dict:
    os.environ["DELTAINF_CACHE"] = cache_dir
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    driver = app_driver()
    tiny = dict(driver.TINY) if scenario == "tiny" else {}

    def session() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
        for k, v in tiny.items():
            at.session_state[k] = v
        at.run()
        at.button(key="scn_train").click().run()
        at.switch_page("pages/affected_image.py").run()
        return at

    def check(at: AppTest) -> None:
        if at.exception or at.error:
            raise SystemExit(f"app failed: {[e.value for e in (*at.exception, *at.error)]}")

    st.cache_resource.clear()
    t0 = time.perf_counter()
    at = session()
    at.switch_page("pages/influence_collapse.py").run()
    at.button(key="col_compute").click().run()
    check(at)
    first = time.perf_counter() - t0
    result = at.session_state["session"].collapse.value
    n_train = int(result.scores.shape[1])

    warm = []
    for _ in range(repeats):
        at.switch_page("pages/triage.py").run()
        t = time.perf_counter()
        at.switch_page("pages/influence_collapse.py").run()
        warm.append(time.perf_counter() - t)
        check(at)

    toggles = []
    present = result.queries.transforms_present()
    for r in range(repeats):
        at.session_state["col_transforms"] = [t for t in present if t != present[r % len(present)]]
        t = time.perf_counter()
        at.run()
        toggles.append(time.perf_counter() - t)
        check(at)

    # a fresh server process (cold memos) whose factors and scores are on disk already
    st.cache_resource.clear()
    at2 = session()
    at2.switch_page("pages/influence_collapse.py").run()
    t = time.perf_counter()
    at2.button(key="col_compute").click().run()
    cold_cached = time.perf_counter() - t
    check(at2)
    return {
        "scenario": tiny or "app defaults (mnist5k, 4,000 images, EK-FAC, 5 affected images)", "n_train": n_train,
        "n_queries": int(result.scores.shape[0]), "first_path_s": round(first, 2),
        "page_load_warm_s": {"median": round(statistics.median(warm), 3), "max": round(max(warm), 3)},
        "page_toggle_rerun_s": {"median": round(statistics.median(toggles), 3), "max": round(max(toggles), 3)},
        "compute_with_cached_scores_s": round(cold_cached, 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--cache-dir", help="artefact cache for the page benchmark (default: a temporary one)")
    p.add_argument("--skip-page", action="store_true", help="only the toggle benchmark")
    p.add_argument("--scenario", choices=("tiny", "default"), default="tiny",
                   help="page benchmark on the tiny scenario, or on the app's defaults (give a warm --cache-dir)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "app_latency.json"))
    a = p.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    result: dict = {"cpu_count": os.cpu_count()}
    toggle = bench_toggle(a.n_train, a.repeats)
    result["toggle"] = toggle
    print(f"toggle → redrawn scatter, {toggle['n_train']:,} points × {toggle['panels']} panels: "
          f"median {toggle['median_s']:.3f}s, max {toggle['max_s']:.3f}s "
          f"({toggle['ratio_to_target']:.2f}× the {TARGET_S:g}s target; payload {toggle['payload_mb']} MB)")
    print(f"  breakdown: {toggle['breakdown_median_s']}; per-result statistics once: "
          f"{toggle['stats_once_per_result_s']:.3f}s")
    if not a.skip_page:
        with tempfile.TemporaryDirectory() as tmp, app_driver().app_py_runs_every_time():
            page = bench_collapse_page(a.cache_dir or tmp, max(3, a.repeats // 2), a.scenario)
        result["collapse_page" if a.scenario == "tiny" else "collapse_page_default"] = page
        print(f"collapse page ({page['n_train']} training images, cached scores): load "
              f"{page['page_load_warm_s']['median']:.3f}s, toggle rerun {page['page_toggle_rerun_s']['median']:.3f}s, "
              f"fresh session compute from disk {page['compute_with_cached_scores_s']:.3f}s "
              f"(first path incl. training {page['first_path_s']:.0f}s)")
    from bench.provenance import provenance, stale_parts

    result["provenance"] = provenance(stages=["poison", "train", "factors", "scores"], models=["smallcnn"],
                                      attacks=["badnet"], detectors=["delta"], datasets=["mnist5k"])
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    if os.path.exists(a.out):  # keep the other scenario's page numbers from an earlier run on this code
        try:
            with open(a.out) as fh:
                earlier = json.load(fh)
            if "provenance" in earlier and not stale_parts(earlier["provenance"]):
                result = {**earlier, **result}
        except (OSError, json.JSONDecodeError):
            pass
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
