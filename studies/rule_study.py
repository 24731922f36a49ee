"""Flagging-rule study (issue 17): collect Δ score matrices once, then evaluate any rule on them in seconds.

Three steps, each resumable (every heavy stage is cached in the pipeline's Store and
every collected scenario is one ``.npz``):

    # 1. score matrices (train, EK-FAC, 155 collapse queries) for every scenario
    DELTAINF_CACHE=$PWD/cache .venv/bin/python studies/rule_study.py collect --datasets mnist5k,cifar
    # 2. EU retrain on the flagged sets of the chosen rule (and today's), plus the oracle, on CIFAR
    DELTAINF_CACHE=$PWD/cache .venv/bin/python studies/rule_study.py unlearn --datasets cifar
    # 3. the table: every rule on every saved matrix; writes studies/results/rule_study.json
    .venv/bin/python studies/rule_study.py table

A scenario is (dataset, attack, seed); ``seed`` goes to the attack, the training, the
collapse queries and the unlearning, like the CLI's ``--seed``. Each saved matrix has
the five-affected-image query set (50 copies of the first image, 20 of each other);
the one-image case is the rows of the first image, which ``build_queries`` draws
identically whatever the number of images. Witches' Brew cells follow ``compare
--seed 0 --brew-targets 3`` on the CIFAR subset (victim seed 0, attack seeds 1 and 2:
the targets that were hit while the oracle retrain is not).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from deltainf_core.metrics import still_affected

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))  # rule_candidates

from deltainf_core import (  # noqa: E402
    AttackConfig,
    CollapseConfig,
    DataConfig,
    Pipeline,
    Scenario,
    Store,
    TrainConfig,
    UnlearnConfig,
)
from deltainf_core.collapse.queries import CollapseQueries  # noqa: E402
from deltainf_core.errors import DeltaInfError  # noqa: E402

CIFAR_DIR = str(ROOT.parent / "shared" / "data" / "cifar10-subset")
DATASETS = {"mnist5k": DataConfig(), "cifar": DataConfig(data_dir=CIFAR_DIR)}
RESULTS = ROOT / "studies" / "results"


def default_matrix_dir() -> Path:
    cache = os.environ.get("DELTAINF_CACHE", str(ROOT / "cache"))
    return Path(cache) / "rule_study"


def scenario(dataset: str, attack: str, seed: int, train_seed: int | None = None) -> Scenario:
    """Like the CLI's ``--seed``: one seed for attack, training, collapse and unlearning."""
    ts = seed if train_seed is None else train_seed
    return Scenario(data=DATASETS[dataset], attack=AttackConfig(attack=attack, seed=seed),
                    train=TrainConfig(seed=ts), collapse=CollapseConfig(seed=ts),
                    unlearn=UnlearnConfig(seed=ts))


def cells(datasets: list[str], attacks: list[str], seeds: list[int]) -> list[tuple[str, str, int, int | None]]:
    """Seed-major, so a partial collection already spans datasets and attacks."""
    out = [(ds, attack, s, None) for s in seeds for ds in datasets for attack in attacks if attack != "witches_brew"]
    if "witches_brew" in attacks and "cifar" in datasets:
        out += [("cifar", "witches_brew", s, 0) for s in (1, 2)]
    return out


def cell_name(dataset: str, attack: str, seed: int, train_seed: int | None) -> str:
    tail = "" if train_seed is None else f"-victim{train_seed}"
    return f"{dataset}-{attack}-seed{seed}{tail}"


def collect_one(pipe: Pipeline, scn: Scenario, path: Path) -> dict:
    """Score the default query set once and save everything a rule (or its evaluation) needs."""
    tm = pipe.trained(scn)
    poisoned = pipe.poisoned(scn)
    meta = {"clean_accuracy": tm.clean_accuracy, "psr": tm.poison_success_rate}
    try:
        affected_idx = pipe.default_affected(scn)
    except DeltaInfError as err:
        meta["error"] = str(err)
        np.savez_compressed(path, meta=json.dumps(meta))
        return meta
    affected = pipe.affected_set(scn, affected_idx)
    res = pipe.collapse(scn, affected, poisoned.target_class)
    q = res.queries
    np.savez_compressed(
        path, scores=res.scores.astype(np.float32), image_of=q.image_of, is_original=q.is_original,
        transform=q.transform.astype(str), predicted=res.predicted, query_labels=q.queries.labels.numpy(),
        poison_indices=np.asarray(poisoned.poison_indices, dtype=np.int64),
        train_labels=poisoned.train.labels.numpy(), target_class=poisoned.target_class,
        affected_idx=np.asarray(affected_idx), meta=json.dumps({**meta, "n_affected": len(affected_idx)}),
    )
    return meta


def collect(args: argparse.Namespace) -> None:
    out = Path(args.matrix_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(Store())
    for ds, attack, seed, ts in cells(args.datasets, args.attacks, args.seeds):
        path = out / f"{cell_name(ds, attack, seed, ts)}.npz"
        if path.exists():
            continue
        t0 = time.time()
        meta = collect_one(pipe, scenario(ds, attack, seed, ts), path)
        print(f"{path.name}: {meta} ({time.time() - t0:.0f} s)", flush=True)


# -- loading saved matrices ---------------------------------------------------------------

class Saved:
    """One collected scenario; ``view(n_images)`` gives the query rows of the first n affected images."""

    def __init__(self, path: Path) -> None:
        z = np.load(path, allow_pickle=False)
        self.name = path.stem
        self.meta = json.loads(str(z["meta"]))
        self.ok = "scores" in z.files
        if not self.ok:
            return
        self.scores = z["scores"].astype(np.float64)  # saved as float32 (the engine's precision), halves the file
        self.image_of = z["image_of"]
        self.is_original = z["is_original"]
        self.transform = z["transform"].astype(object)
        self.predicted = z["predicted"]
        self.poisons = z["poison_indices"]
        self.train_labels = z["train_labels"]
        self.target = int(z["target_class"])
        self.affected_idx = z["affected_idx"]

    @property
    def n_affected(self) -> int:
        return int(self.is_original.sum()) if self.ok else 0

    def view(self, n_images: int) -> tuple[np.ndarray, CollapseQueries, np.ndarray]:
        rows = np.flatnonzero(self.image_of < n_images)
        q = CollapseQueries(None, self.image_of[rows], self.is_original[rows], self.transform[rows])  # type: ignore[arg-type]
        return self.scores[rows], q, self.predicted[rows]


def load_all(matrix_dir: Path) -> list[Saved]:
    return [Saved(p) for p in sorted(matrix_dir.glob("*.npz"))]


def parse_name(name: str) -> tuple[str, str, int, int | None]:
    """Inverse of ``cell_name``."""
    parts = name.split("-")
    ts = int(parts[-1][len("victim"):]) if parts[-1].startswith("victim") else None
    if ts is not None:
        parts = parts[:-1]
    return parts[0], "-".join(parts[1:-1]), int(parts[-1][len("seed"):]), ts


def eu_path(matrix_dir: Path) -> Path:
    return matrix_dir / "eu.json"


def unlearn(args: argparse.Namespace) -> None:
    """EU retrain without each rule's flagged set, and the oracle (without exactly the poisons); cached.

    Order: oracle and the new rule with five images first (the default investigation),
    then one image, then today's rule; results are appended to ``eu.json`` as they come.
    """
    from rule_candidates import CANDIDATES

    matrix_dir = Path(args.matrix_dir)
    path = eu_path(matrix_dir)
    done = json.loads(path.read_text()) if path.exists() else {}
    pipe = Pipeline(Store())
    saved = [sv for sv in load_all(matrix_dir) if sv.ok and parse_name(sv.name)[0] in args.datasets
             and (not args.cells or sv.name in args.cells)]
    if args.cells:
        saved.sort(key=lambda sv: args.cells.index(sv.name))
    rules = [] if args.rules == "none" else args.rules.split(",") if args.rules else ["profile", "today"]
    if args.cells:  # cell by cell: the oracle and every rule of one cell before the next cell
        jobs = [job for sv in saved for job in [(sv, None, None)] + [(sv, rule, n) for n in args.images
                                                                     for rule in rules if n <= sv.n_affected]]
    else:
        jobs = [(sv, None, None) for sv in saved]
        jobs += [(sv, rule, n) for n in args.images for rule in rules for sv in saved if n <= sv.n_affected]
    for sv, rule, n in jobs:
        key = f"{sv.name}|oracle" if rule is None else f"{sv.name}|{rule}|{n}"
        if key in done:
            continue
        scn = scenario(*parse_name(sv.name))
        t0 = time.time()
        if rule is None:
            out = pipe.oracle(scn)
            forget = sv.poisons
        else:
            fn = CANDIDATES[rule]
            extra = {"label_check": pipe.label_check(scn)} if getattr(fn, "needs_model", False) else {}
            forget, _, _ = fn(*sv.view(n), sv.target, **extra)
            if len(forget) == 0:
                done[key] = {"n_forget": 0}
                continue
            out = pipe.unlearn(scn, forget)
        tm = pipe.trained(scn)
        still = still_affected(out.model, pipe.affected_set(scn, sv.affected_idx[:n or 5]), sv.target)
        done[key] = {"n_forget": len(forget), "clean_accuracy": out.clean_accuracy, "psr": out.poison_success_rate,
                     "acc_before": tm.clean_accuracy, "psr_before": tm.poison_success_rate, "still_target": int(still)}
        merged = json.loads(path.read_text()) if path.exists() else {}  # another unlearn job may share the file
        merged[key] = done[key]
        path.write_text(json.dumps(merged, indent=1))
        print(f"{key}: {done[key]} ({time.time() - t0:.0f} s)", flush=True)


def same_poisons(pipe: Pipeline, scn: Scenario, poisons: np.ndarray, name: str) -> None:
    """Refuse a saved matrix whose poisons today's attack would not pick (its model would be another)."""
    if set(np.asarray(pipe.poisoned(scn).poison_indices).tolist()) != set(np.asarray(poisons).tolist()):
        raise SystemExit(f"{name}: today's attack picks other poisons than the saved matrix")


def auc_within_target(stat: np.ndarray, is_poison: np.ndarray, labels: np.ndarray, target: int) -> float | None:
    """ROC AUC of a statistic for the poisons against clean images labelled as the target: 1.0 = some cut
    separates them, 0.5 = nothing in it does (ground truth used only here)."""
    from sklearn.metrics import roc_auc_score

    sel = labels == target
    y = is_poison[sel]
    return float(roc_auc_score(y, np.nan_to_num(stat[sel]))) if 0 < y.sum() < y.size else None


def separability(scores: np.ndarray, q: CollapseQueries, pred: np.ndarray, sv: Saved) -> float | None:
    """``auc_within_target`` of the broken-copy ``d``."""
    from deltainf_core.collapse import CollapseEvidence, effect_size

    ev = CollapseEvidence(scores, q, pred, sv.target)
    d = np.clip(effect_size(ev.stats, kept_only=True), -1e12, 1e12)
    return auc_within_target(d, np.isin(np.arange(len(d)), sv.poisons), sv.train_labels, sv.target)


def evaluate(saved: list[Saved], rules: dict, n_images: tuple[int, ...] = (1, 5)) -> list[dict]:
    """Every rule on every saved matrix (one and five affected images): flagged, precision, recall.

    A rule marked ``needs_model`` (it checks labels with the model) gets the scenario's
    ``label_check``: the model is trained, or read from the cache, by the pipeline."""
    rows = []
    pipe = Pipeline(Store()) if any(getattr(r, "needs_model", False) for r in rules.values()) else None
    for sv in saved:
        if not sv.ok:
            rows.append({"scenario": sv.name, "error": sv.meta.get("error")})
            continue
        truth = set(sv.poisons.tolist())
        extra = {}
        if pipe is not None:
            scn = scenario(*parse_name(sv.name))
            same_poisons(pipe, scn, sv.poisons, sv.name)
            extra = {"label_check": pipe.label_check(scn)}
        for n in n_images:
            if n > sv.n_affected:
                continue
            scores, q, pred = sv.view(n)
            row = {"scenario": sv.name, "n_images": n, "n_poisons": len(truth), "psr": sv.meta.get("psr"),
                   "clean_accuracy": sv.meta.get("clean_accuracy"),
                   "auc_d_within_target_class": separability(scores, q, pred, sv)}
            for name, rule in rules.items():
                flagged, _, info = rule(scores, q, pred, sv.target, **(extra if getattr(rule, "needs_model", False)
                                                                       else {}))
                tp = len(truth & set(np.asarray(flagged).tolist()))
                row[name] = {"flagged": len(flagged), "precision": tp / len(flagged) if len(flagged) else 0.0,
                             "recall": tp / len(truth) if truth else None,
                             "indices": np.asarray(flagged, dtype=int).tolist()}
                if "label_check_used" in (info or {}):
                    row[name]["label_check"] = {k: info[k] for k in ("label_check_used", "breaking_transforms",
                                                                     "agreement", "agreement_p") if k in info}
            rows.append(row)
    return rows


def print_table(rows: list[dict], names: list[str]) -> None:
    head = f"{'scenario':34s} n  " + "  ".join(f"{n:>16s}" for n in names)
    print(head)
    for r in rows:
        if "error" in r:
            print(f"{r['scenario']:34s} –  {r['error']}")
            continue
        cells = [f"{r[n]['flagged']:4d} {r[n]['precision']:.2f} {r[n]['recall']:.2f}" for n in names]
        print(f"{r['scenario']:34s} {r['n_images']}  " + "  ".join(f"{c:>16s}" for c in cells))
    ok = [r for r in rows if "error" not in r]
    for label, sel in (("mean", ok), ("mean badnet/smooth", [r for r in ok if "witches" not in r["scenario"]])):
        if not sel:
            continue
        cells = []
        for n in names:
            p = np.mean([r[n]["precision"] for r in sel])
            rec = np.mean([r[n]["recall"] for r in sel])
            low = sum(r[n]["recall"] < 0.98 for r in sel)
            cells.append(f"P{p:.2f} R{rec:.2f} <{low}")
        print(f"{label:34s}    " + "  ".join(f"{c:>16s}" for c in cells))


PRE_MERGE = "8eda777 (before the collapse-statistics redesign; AttackConfig.name)"
"""Matrices written before this branch merged main's redesign were collected by that code."""
MERGED_AT = 1795635780  # 2026-11-25 19:43 UTC, the merge of main into this branch


def collected_by(path: Path) -> str:
    return PRE_MERGE if path.stat().st_mtime < MERGED_AT else "fa7a1b4 or later (after the redesign)"


def summary(rows: list[dict], names: list[str]) -> dict:
    """Per rule over the badnet/smooth rows: mean precision, min recall, runs under recall 0.98."""
    sel = [r for r in rows if "error" not in r and "witches" not in r["scenario"]]
    out = {}
    for n in names:
        rec = [r[n]["recall"] for r in sel]
        out[n] = {"runs": len(sel), "mean_precision": float(np.mean([r[n]["precision"] for r in sel])) if sel else None,
                  "min_recall": float(min(rec)) if rec else None, "runs_below_0.98": int(sum(x < 0.98 for x in rec)),
                  "meets_bar": bool(sel and min(rec) >= 0.98 and np.mean([r[n]["precision"] for r in sel]) >= 0.5)}
    return out


def table(args: argparse.Namespace) -> None:
    from rule_candidates import CANDIDATES

    from bench.provenance import provenance

    names = args.rules.split(",") if args.rules else list(CANDIDATES)
    matrix_dir = Path(args.matrix_dir)
    rows = evaluate(load_all(matrix_dir), {n: CANDIDATES[n] for n in names})
    for r in rows:
        r["collected_by"] = collected_by(matrix_dir / f"{r['scenario']}.npz")
    print_table(rows, names)
    if args.out:
        eu = json.loads(eu_path(matrix_dir).read_text()) if eu_path(matrix_dir).exists() else {}
        out = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rules": names,
               "command": "python studies/rule_study.py " + " ".join(sys.argv[1:]),
               "bar": "recall >= 0.98 on every badnet/smooth run and mean precision >= 0.5",
               "summary": summary(rows, names),
               "summary_by_attack": {a: summary([r for r in rows if f"-{a}-" in r["scenario"]], names)
                                     for a in ("badnet", "smooth")},
               "rows": rows, "eu": eu,
               "provenance": provenance(stages=["poison", "train", "factors", "scores", "unlearn"],
                                        models=["smallcnn"], attacks=["badnet", "smooth"],
                                        detectors=["delta", "delta_profile", "delta_label"], unlearners=["eu"],
                                        datasets=["mnist5k"])}
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
    if args.markdown:
        print(markdown(rows, names))


def refresh(args: argparse.Namespace) -> None:
    """Re-read the EU results and re-stamp provenance in an existing ``--out`` file (no re-evaluation)."""
    from bench.provenance import provenance

    path = Path(args.out)
    out = json.loads(path.read_text())
    matrix_dir = Path(args.matrix_dir)
    out["eu"] = json.loads(eu_path(matrix_dir).read_text()) if eu_path(matrix_dir).exists() else {}
    versions = out["provenance"]["versions"]
    out["provenance"] = provenance(**{f"{family}s": list(names) for family, names in versions.items()})
    path.write_text(json.dumps(out, indent=1))
    print(f"refreshed {path}")


def markdown(rows: list[dict], names: list[str]) -> str:
    """The BENCHMARKS.md table: one row per (scenario, affected images), flagged / P / R per rule."""
    head = "| data | attack | seed | images | AUC of d | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (5 + len(names))]
    for r in rows:
        if "error" in r:
            continue
        ds, attack, seed, _ = parse_name(r["scenario"])
        data = "CIFAR subset" if ds == "cifar" else ds
        cells = [f"{r[n]['flagged']} / {r[n]['precision']:.2f} / {r[n]['recall']:.2f}" for n in names]
        auc = r.get("auc_d_within_target_class")
        auc_text = "–" if auc is None else f"{auc:.2f}"
        lines.append(f"| {data} | {attack} | {seed} | {r['n_images']} | {auc_text} | " + " | ".join(cells) + " |")
    summ = summary(rows, names)
    lines.append("| **mean precision** | | | | | "
                 + " | ".join(f"**{summ[n]['mean_precision']:.2f}**" for n in names) + " |")
    lines.append("| **runs with recall < 0.98** | | | | | "
                 + " | ".join(f"**{summ[n]['runs_below_0.98']} of {summ[n]['runs']}**" for n in names) + " |")
    for attack in ("badnet", "smooth"):
        part = summary([r for r in rows if "error" not in r and f"-{attack}-" in r["scenario"]], names)
        cells = [f"{part[n]['mean_precision']:.2f}, {part[n]['runs_below_0.98']} of {part[n]['runs']}" for n in names]
        lines.append(f"| {attack} only: mean precision, runs with recall < 0.98 | | | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("collect", "unlearn", "table", "refresh"))
    p.add_argument("--datasets", default="mnist5k,cifar")
    p.add_argument("--attacks", default="badnet,smooth,witches_brew")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--matrix-dir", default=str(default_matrix_dir()))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cifar", default=CIFAR_DIR, help="the CIFAR subset's ImageFolder on this machine")
    p.add_argument("--rules", help="comma list of candidate rules (default: all in studies/rule_candidates.py)")
    p.add_argument("--out", help="write the table as JSON here")
    p.add_argument("--markdown", action="store_true", help="table: also print the BENCHMARKS.md table")
    p.add_argument("--images", default="5,1", help="unlearn: affected-image counts, in this order")
    p.add_argument("--cells", default="", help="unlearn: only these scenarios (comma list of matrix names), in order")
    args = p.parse_args(argv)
    args.datasets = args.datasets.split(",")
    args.attacks = args.attacks.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.images = [int(n) for n in args.images.split(",")]
    args.cells = [c for c in args.cells.split(",") if c]
    DATASETS["cifar"] = DataConfig(data_dir=args.cifar)
    import torch

    torch.set_num_threads(args.threads)
    if args.step == "collect":
        collect(args)
    elif args.step == "unlearn":
        unlearn(args)
    elif args.step == "table":
        table(args)
    elif args.step == "refresh":
        refresh(args)


if __name__ == "__main__":
    main()
