"""What any cut could do: the smallest flagged set that reaches recall 0.98 on a statistic.

A flagging rule that cuts one per-training-image statistic can flag, at recall ≥ 0.98, no
fewer images than the top *k* of that statistic among the images labelled as the target (a
rule may read the training labels; a dirty-label poison carries the target's) that first
holds that share of the poisons. That top *k* is the "ceiling": found with the ground truth,
it is a bound, not a rule. Where its precision is below the issue-17 bar, no cut on that
statistic meets the bar, however it is chosen.

    # the ceiling of the broken-copy d on saved score matrices (studies/rule_study.py collect)
    .venv/bin/python studies/rule_ceiling.py table --matrix-dir M [--matrix-dir M2] \\
        --out studies/results/rule_ceiling.json
    # other statistics for cells whose poisoned model the cache holds (or trains): the same copies scored
    # with the target label kept, and influence on clean test images of every class
    DELTAINF_CACHE=C .venv/bin/python studies/rule_ceiling.py signals M/cifar-smooth-seed5.npz ... \
        --cifar ../shared/data/cifar10-subset --signal-dir S --out studies/results/rule_signals-cifar-cpu.json

Ground truth is read only to score the statistics (AUC, ceiling), never to choose a set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))

from rule_study import CIFAR_DIR, DATASETS, Saved, auc_within_target, load_all, parse_name, same_poisons, scenario  # noqa: E402

from deltainf_core.collapse import CollapseEvidence, effect_size  # noqa: E402
from deltainf_core.config import DataConfig  # noqa: E402

RECALL = 0.98
"""The issue-17 bar's recall."""


def ceiling(stat: np.ndarray, is_poison: np.ndarray, labels: np.ndarray, target: int, recall: float = RECALL) -> dict:
    """The top-k of ``stat`` among images labelled as the target that first holds ``recall`` of the poisons:
    k and its precision. (A rule may use the training labels; a dirty-label poison carries the target's.)"""
    need = int(np.ceil(recall * is_poison.sum()))
    stat = np.where(labels == target, np.nan_to_num(stat, nan=-np.inf), -np.inf)
    order = np.argsort(-stat, kind="stable")
    k = int(np.searchsorted(np.cumsum(is_poison[order]), need) + 1)
    return {"flagged": k, "precision": need / k}


def broken_d(sv: Saved, scores: np.ndarray, n_images: int) -> np.ndarray:
    """``d`` over the broken copies of the first ``n_images`` affected images (the default rule's statistic)."""
    _, q, pred = sv.view(n_images)
    rows = np.flatnonzero(sv.image_of < n_images)
    return effect_size(CollapseEvidence(scores[rows], q, pred, sv.target).stats, kept_only=True)


def rule_cells(sv: Saved, n_images: int, is_poison: np.ndarray) -> dict:
    from rule_candidates import CANDIDATES

    scores, q, pred = sv.view(n_images)
    out = {}
    for name in ("today", "tail"):
        flagged = np.asarray(CANDIDATES[name](scores, q, pred, sv.target)[0], dtype=int)
        tp = int(is_poison[flagged].sum())
        out[name] = {"flagged": len(flagged), "precision": tp / len(flagged) if len(flagged) else 0.0,
                     "recall": tp / int(is_poison.sum())}
    return out


def table(args: argparse.Namespace) -> None:
    rows = []
    for matrix_dir in args.matrix_dir:
        for sv in load_all(Path(matrix_dir)):
            if not sv.ok or "witches" in sv.name:
                continue
            is_poison = np.isin(np.arange(len(sv.train_labels)), sv.poisons)
            for n in (1, 5):
                if n > sv.n_affected:
                    continue
                d = broken_d(sv, sv.scores, n)
                rows.append({"scenario": sv.name, "matrices": str(matrix_dir), "n_images": n,
                             "n_poisons": int(is_poison.sum()),
                             "auc_d_within_target_class": auc_within_target(d, is_poison, sv.train_labels, sv.target),
                             "ceiling_d": ceiling(d, is_poison, sv.train_labels, sv.target),
                             **rule_cells(sv, n, is_poison)})
    for r in rows:
        c = r["ceiling_d"]
        print(f"{r['scenario']:28s} n={r['n_images']} AUC {r['auc_d_within_target_class']:.2f}  ceiling "
              f"{c['flagged']:4d} ({c['precision']:.2f})  today {r['today']['flagged']:4d} "
              f"({r['today']['precision']:.2f}/{r['today']['recall']:.2f})  tail {r['tail']['flagged']:4d} "
              f"({r['tail']['precision']:.2f}/{r['tail']['recall']:.2f})")
    groups = {}
    for r in rows:
        ds, attack, _, _ = parse_name(r["scenario"])
        groups.setdefault(f"{ds} {attack} {r['n_images']} image(s)", []).append(r["ceiling_d"]["precision"])
    summary = {g: {"runs": len(p), "ceiling_precision_min": min(p), "ceiling_precision_mean": float(np.mean(p)),
                   "runs_ceiling_below_0.5": int(sum(x < 0.5 for x in p))} for g, p in groups.items()}
    for g, s in summary.items():
        print(f"{g}: {s}")
    write(args.out, {"statistic": "d over broken copies (the default rule's)", "recall": RECALL,
                     "rows": rows, "summary": summary}, ["scores"])


# -- other statistics, scored for cells whose model the cache holds -----------------------------------------------
def signal_scores(sv: Saved, signal_dir: Path, per_class: int) -> dict:
    """Score the saved copies with the target label kept, and clean test images of every class (cached on disk)."""
    import torch

    from deltainf_core.collapse.queries import as_target, build_queries
    from deltainf_core.data.base import ImageSet
    from deltainf_core.pipeline import Pipeline
    from deltainf_core.store import Store

    path = signal_dir / f"{sv.name}.npz"
    if path.exists():
        return dict(np.load(path))
    pipe = Pipeline(Store())
    scn = scenario(*parse_name(sv.name))
    same_poisons(pipe, scn, sv.poisons, sv.name)
    q = build_queries(as_target(pipe.affected_set(scn, sv.affected_idx), sv.target), sv.target, scn.collapse)
    engine = pipe.engine(scn)
    engine.fit_factors()
    kept = engine.scores(ImageSet(q.queries.images, torch.full((len(q.is_original),), sv.target), q.queries.classes))
    orig = q.is_original
    scale = np.abs(sv.scores[orig]).max()
    if not np.allclose(kept[orig], sv.scores[orig], rtol=1e-3, atol=1e-3 * scale):
        raise SystemExit(f"{sv.name}: the cached model is not the one the saved matrix was scored on "
                         "(a model trained elsewhere, or with another thread count)")
    test = pipe.dataset(scn.data).test
    labels = test.labels.numpy()
    called = pipe.predict(scn, test)
    ctrl = np.concatenate([np.flatnonzero((labels == c) & (called == c))[:per_class] for c in range(test.num_classes)])
    controls = engine.scores(ImageSet(test.images[ctrl], torch.as_tensor(labels[ctrl]), test.classes))
    out = {"kept": kept.astype(np.float32), "controls": controls.astype(np.float32), "control_labels": labels[ctrl]}
    signal_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out



def signals(args: argparse.Namespace) -> None:
    rows = []
    for p in args.cells:
        sv = Saved(Path(p))
        t0 = time.time()
        extra = signal_scores(sv, Path(args.signal_dir), args.per_class)
        is_poison = np.isin(np.arange(len(sv.train_labels)), sv.poisons)
        ctrl, cl = extra["controls"].astype(np.float64), extra["control_labels"]
        spread = ctrl.std(0) + 1e-300
        support_target = ctrl[cl == sv.target].mean(0) / spread  # how much an image supports clean target images
        opposed = np.min([ctrl[cl == c].mean(0) / spread for c in np.unique(cl) if c != sv.target], axis=0)
        for n in (1, 5):
            stats = {"d (relabelled copies, broken)": broken_d(sv, sv.scores, n),
                     "d (target label kept, broken)": broken_d(sv, extra["kept"].astype(np.float64), n),
                     "low support of clean target-class test images": -support_target,
                     "opposition to the most opposed other class": -opposed}
            row = {"scenario": sv.name, "n_images": n, "controls": len(cl), "signals": {}}
            for name, s in stats.items():
                row["signals"][name] = {"auc_within_target_class": auc_within_target(s, is_poison, sv.train_labels,
                                                                                     sv.target),
                                        "ceiling": ceiling(s, is_poison, sv.train_labels, sv.target)}
            rows.append(row)
            print(f"{sv.name} n={n} ({time.time() - t0:.0f} s): " + "; ".join(
                f"{k}: AUC {v['auc_within_target_class']:.2f}, ceiling {v['ceiling']['flagged']} "
                f"({v['ceiling']['precision']:.2f})" for k, v in row["signals"].items()), flush=True)
    write(args.out, {"recall": RECALL, "controls_per_class": args.per_class, "rows": rows},
          ["poison", "train", "factors", "scores"])


def write(out: str | None, body: dict, stages: list[str]) -> None:
    if not out:
        return
    from bench.provenance import provenance

    body = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python studies/rule_ceiling.py " + " ".join(sys.argv[1:]), **body,
            "provenance": provenance(stages=stages, models=["smallcnn"], attacks=["badnet", "smooth"],
                                     detectors=["delta"], datasets=["mnist5k"])}
    Path(out).write_text(json.dumps(body, indent=1))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    t = sub.add_parser("table", help="the ceiling of the default statistic on saved matrices")
    t.add_argument("--matrix-dir", action="append", required=True)
    t.add_argument("--out")
    s = sub.add_parser("signals", help="other statistics for cells whose poisoned model the cache holds")
    s.add_argument("cells", nargs="+", help="saved matrices (rule_study.py collect) of the cells to measure")
    s.add_argument("--signal-dir", required=True, help="where the extra scores are kept between runs")
    s.add_argument("--per-class", type=int, default=12, help="clean test images of each class scored as controls")
    s.add_argument("--cifar", default=CIFAR_DIR)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out")
    args = p.parse_args(argv)
    if args.step == "table":
        table(args)
    else:
        import torch

        torch.set_num_threads(args.threads)
        DATASETS["cifar"] = DataConfig(data_dir=args.cifar)
        signals(args)


if __name__ == "__main__":
    main()
