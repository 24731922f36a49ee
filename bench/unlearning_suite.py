"""Figure 4 re-measured: every unlearner on Δ-Influence's own flagged set, as the app runs it.

For each dataset × attack × seed, the scenario is the CLI's default one
(``python -m deltainf_core run --dataset D --attack A --seed S --rounds 1``): the
poisoned model, the affected images, the default flagging rule's flagged set (round 1)
and the oracle retrain (EU without exactly the true poisons) come from the pipeline and
its cache; EU is the pipeline's own unlearning stage, every other method is run on the
same model and flagged set with its registered defaults.

Judged as the issue states it (SPEC §3): the methods whose papers report poison removal
(registry trait ``claims_poison_removal``: EU, CF, Potion) pass when PSR < 5 % — or at
or below the oracle's own PSR where that floor is higher — with accuracy within
``tolerance`` of the oracle retrain (2 points on mnist5k, 3 on the 380-image CIFAR test
set); the others are reported as measured and must stay within 5 points of the
poisoned model's accuracy. Seconds are wall time on whatever machine ran it
(indicative only on a shared CPU); passes count work in training-set passes.

    DELTAINF_CACHE=$PWD/cache OMP_NUM_THREADS=1 .venv/bin/python bench/unlearning_suite.py

Writes ``bench/results/unlearning_suite.json`` (rows, the table, provenance). Rows are
also kept in ``$DELTAINF_CACHE/unlearning_suite_rows.jsonl`` keyed by scenario, method,
method version and parameters, so an interrupted run resumes and a changed method re-runs
alone. ``--datasets/--attacks/--seeds/--methods`` narrow it; narrowed runs write to
``--out`` only when given one. On a GPU, shards run side by side (one process per
dataset and attack) and ``--combine SHARD...`` writes them as one result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.provenance import provenance  # noqa: E402
from deltainf_core.config import (  # noqa: E402
    stable_hash,
)
from deltainf_core.metrics import clean_accuracy, poison_success_rate, precision_recall  # noqa: E402
from deltainf_core.pipeline import Pipeline, Scenario  # noqa: E402
from deltainf_core.store import Store  # noqa: E402
from deltainf_core.unlearning import UNLEARNERS, UnlearnContext, unlearning_verdict  # noqa: E402

CIFAR_SUBSET = (ROOT.parent / "shared" / "data" / "cifar10-subset").resolve()
TOLERANCE = {"mnist5k": 0.02, "cifar10-subset": 0.03}
"""Accuracy allowed below the oracle retrain (the issue's bar; wider on the 380-image test set)."""
KEEP_ACCURACY = 0.05
"""Methods not held to removal must stay within this of the poisoned model's accuracy."""
DEFAULT_OUT = ROOT / "bench" / "results" / "unlearning_suite.json"
STAGES = ("poison", "train", "factors", "scores", "unlearn")
"""The store's stage versions the rows depend on (the oracle is an ``unlearn`` entry)."""


def scenario(dataset: str, attack: str, seed: int, cifar_subset: Path = CIFAR_SUBSET) -> Scenario:
    """``run --dataset D --attack A --seed S --rounds 1`` as the CLI itself parses it (so the same
    cache keys, and no copy of the CLI's defaults here to drift from it)."""
    from deltainf_core.cli import build_parser
    from deltainf_core.flags import scenario_from_args

    where = ["--data-dir", str(cifar_subset)] if dataset == "cifar10-subset" else ["--dataset", dataset]
    args = build_parser().parse_args(["run", *where, "--attack", attack, "--seed", str(seed), "--rounds", "1"])
    return scenario_from_args(args, args.flags)


def flagged_scenario(pipe: Pipeline, scn: Scenario) -> dict:
    """Poisoned model and the default rule's flagged set for the default affected images (round 1)."""
    tm = pipe.trained(scn)
    poisoned = pipe.poisoned(scn)
    affected = pipe.affected_set(scn, pipe.default_affected(scn))
    detection = pipe.detect(scn, affected, poisoned.target_class)
    precision, recall = precision_recall(detection.flagged, poisoned.poison_indices)
    return {"tm": tm, "poisoned": poisoned, "splits": pipe.dataset(scn.data),
            "flagged": np.asarray(detection.flagged, dtype=np.int64), "precision": precision, "recall": recall}


def judge(row: dict, base: dict, tolerance: float) -> None:
    """Fill ``row["pass"]`` and ``row["why"]`` from the issue's bar (see module doc)."""
    floor = max(0.05, base["oracle_psr"])
    removed = row["psr"] < 0.05 or row["psr"] <= base["oracle_psr"]
    if base["poisoned_psr"] < 0.5:
        row["pass"], row["why"] = None, "attack failed (poisoned PSR < 50%)"
        return
    if row["claims_poison_removal"]:
        close = row["accuracy"] >= base["oracle_accuracy"] - tolerance
        row["pass"] = bool(removed and close)
        why = []
        if not removed:
            why.append(f"PSR {100 * row['psr']:.1f}% >= {100 * floor:.1f}%")
        if not close:
            why.append(f"accuracy {100 * (row['accuracy'] - base['oracle_accuracy']):+.1f} pt vs oracle")
        row["why"] = "; ".join(why)
    else:
        kept = row["accuracy"] >= base["poisoned_accuracy"] - KEEP_ACCURACY
        row["pass"] = bool(kept)
        row["removed"] = bool(removed)
        row["why"] = "" if kept else f"accuracy {100 * (row['accuracy'] - base['poisoned_accuracy']):+.1f} pt"


def row_key(dataset: str, attack: str, seed: int, method: str, flagged: np.ndarray, model_key: str) -> str:
    entry = UNLEARNERS.entry(method)
    return stable_hash(dataset, attack, seed, method, entry.version, entry.param_defaults(), model_key,
                       flagged.tolist())


def run_scenario(pipe: Pipeline, dataset: str, attack: str, seed: int, methods: list[str],
                 done: dict, rows_file: Path, cifar_subset: Path = CIFAR_SUBSET) -> dict:
    scn = scenario(dataset, attack, seed, cifar_subset)
    t0 = time.perf_counter()
    sc = flagged_scenario(pipe, scn)
    tm, poisoned, splits, flagged = sc["tm"], sc["poisoned"], sc["splits"], sc["flagged"]
    base = {"dataset": dataset, "attack": attack, "seed": seed, "n_train": len(poisoned.train),
            "n_test": len(splits.test), "n_poisons": len(poisoned.poison_indices), "n_flagged": int(flagged.size),
            "precision": sc["precision"], "recall": sc["recall"], "poisoned_accuracy": tm.clean_accuracy,
            "poisoned_psr": tm.poison_success_rate, "recipe_epochs": scn.train.epochs_for(len(poisoned.train)),
            "setup_seconds": time.perf_counter() - t0}
    print(f"{dataset} {attack} seed {seed}: poisoned acc {100 * base['poisoned_accuracy']:.1f} "
          f"PSR {100 * base['poisoned_psr']:.1f}; flagged {flagged.size} "
          f"(P {sc['precision']:.2f} R {sc['recall']:.2f})", flush=True)
    measured = []
    # Cheap methods first, retraining last: an interrupted run has the informative rows.
    for method in sorted(methods, key=lambda m: UNLEARNERS.trait(m, "from_scratch")):
        key = row_key(dataset, attack, seed, method, flagged, tm.key)
        if key in done:
            row = done[key]
        else:
            if method == "eu":
                out = pipe.unlearn(scn, flagged, "eu")  # the pipeline's own (cached) stage: the product path
                model, seconds, passes, info = out.model, out.seconds, out.passes, out.info
            else:
                ctx = UnlearnContext(tm.model, poisoned.train, flagged, lambda: pipe.new_model(scn), scn.train,
                                     splits.augment_flip, replace(scn.unlearn, method=method), device=pipe.device)
                result = UNLEARNERS.get(method)(ctx)
                model, seconds, passes, info = result.model, result.seconds, result.passes, result.info
            psr = poison_success_rate(model, poisoned)
            acc = clean_accuracy(model, splits.test)
            row = {"key": key, "dataset": dataset, "attack": attack, "seed": seed, "method": method,
                   "version": UNLEARNERS.version(method), "psr": psr, "accuracy": acc,
                   "seconds": seconds, "passes": passes,
                   "claims_poison_removal": UNLEARNERS.trait(method, "claims_poison_removal"),
                   "info": {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None}}
            with rows_file.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            done[key] = row
            print(f"  {method:7s} PSR {100 * psr:5.1f}  acc {100 * acc:5.1f}  {passes:6.2f} passes", flush=True)
        measured.append(row)
    oracle = pipe.oracle(scn)
    base.update(oracle_accuracy=oracle.clean_accuracy, oracle_psr=oracle.poison_success_rate)
    print(f"  oracle  PSR {100 * base['oracle_psr']:5.1f}  acc {100 * base['oracle_accuracy']:5.1f}", flush=True)
    rows = []
    for row in sorted(measured, key=lambda r: methods.index(r["method"])):
        method = row["method"]
        row = dict(row, accuracy_vs_oracle=row["accuracy"] - base["oracle_accuracy"],
                   accuracy_vs_poisoned=row["accuracy"] - base["poisoned_accuracy"])
        row["verdict"] = unlearning_verdict(method, row["info"], row["psr"], base["poisoned_psr"], base["oracle_psr"],
                                            row["accuracy_vs_poisoned"])["text"]
        judge(row, base, TOLERANCE.get(dataset, 0.02))
        rows.append(row)
        mark = {True: "ok", False: "FAIL", None: "n/a"}[row["pass"]]
        print(f"  {method:7s} PSR {100 * row['psr']:5.1f}  acc {100 * row['accuracy']:5.1f} "
              f"({100 * row['accuracy_vs_oracle']:+5.1f} vs oracle)  {row['passes']:6.2f} passes "
              f"{row['seconds']:7.1f}s  {mark} {row['why']}  | {row['verdict']}", flush=True)
    return {**base, "methods": rows}


def table(runs: list[dict], methods: list[str]) -> str:
    """Figure-4 style markdown: one line per method × dataset × attack, seeds side by side.

    "held to" says which bar applies: removal (PSR and accuracy vs the oracle) for the
    methods whose papers claim it, accuracy kept (within 5 points of the poisoned model)
    for the rest, whose removal is reported beside it.
    """
    lines = ["| method | data | attack | PSR after % (by seed) | acc vs oracle, pt | passes | seconds* | result |",
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        for row in run["methods"]:
            groups.setdefault((row["method"], run["dataset"], run["attack"]), []).append(row)
    for method in methods:
        for (m, data, attack), rows in groups.items():
            if m != method:
                continue
            rows = sorted(rows, key=lambda r: r["seed"])
            psr = " / ".join(f"{100 * r['psr']:.1f}" for r in rows)
            acc = " / ".join(f"{100 * r['accuracy_vs_oracle']:+.1f}" for r in rows)
            passes = f"{np.mean([r['passes'] for r in rows]):.2f}"
            secs = f"{np.mean([r['seconds'] for r in rows]):.0f}"
            counted = [r for r in rows if r["pass"] is not None]
            ok = sum(r["pass"] for r in counted)
            if rows[0]["claims_poison_removal"]:
                result = f"{ok}/{len(counted)} pass"
            else:
                removed = sum(r.get("removed", False) for r in counted)
                result = f"removed {removed}/{len(counted)}, accuracy kept {ok}/{len(counted)}"
            lines.append(f"| {method} | {data} | {attack} | {psr} | {acc} | {passes} | {secs} | {result} |")
    return "\n".join(lines)


def result_json(every: list[dict], methods: list[str], device: str, argv: str, gpu: str | None = None,
                prov: dict | None = None) -> dict:
    """The results file: scenarios measured so far, the table, the settings and provenance (this
    checkout's, unless ``prov`` says what ran)."""
    return {
        "benchmark": "unlearning_suite",
        "command": "DELTAINF_CACHE=$PWD/cache OMP_NUM_THREADS=1 .venv/bin/python bench/unlearning_suite.py " + argv,
        "complete": len({(r["dataset"], r["attack"], r["seed"]) for r in every}) == 12,
        "tolerance": TOLERANCE, "keep_accuracy": KEEP_ACCURACY, "device": device,
        "gpu": gpu,
        "params": {m: UNLEARNERS.entry(m).param_defaults() for m in methods},
        "provenance": prov or provenance(
            stages=STAGES, models=["smallcnn"], attacks=sorted({r["attack"] for r in every}),
            unlearners=methods,
            datasets=sorted({r["dataset"] for r in every} - {"cifar10-subset"}), defaults=["detector"]),
        "scenarios": [f"{r['dataset']} {r['attack']} seed {r['seed']}" for r in every],
        "runs": every, "table": table(every, methods),
    }


def combine(parts: list[Path], out_path: Path) -> None:
    """One results file from shards run side by side (e.g. one process per dataset and attack
    on a GPU): their scenarios must not overlap and must come from one kind of device."""
    loaded = [json.loads(p.read_text()) for p in parts]
    devices = {(d["device"], d.get("gpu")) for d in loaded}
    if len(devices) != 1:
        raise SystemExit(f"shards come from different devices: {sorted(map(str, devices))}")
    every = sorted((r for d in loaded for r in d["runs"]), key=lambda r: (r["dataset"], r["attack"], r["seed"]))
    seen = [(r["dataset"], r["attack"], r["seed"]) for r in every]
    if len(seen) != len(set(seen)):
        raise SystemExit("shards measure the same scenario twice")
    methods = [m for m in UNLEARNERS.names() if any(m in d["params"] for d in loaded)]
    # what ran, not the checkout combining them: the union of the shards' versions, which must agree
    versions: dict[str, dict[str, int]] = {}
    for d in loaded:
        for family, entries in d["provenance"]["versions"].items():
            for name, version in entries.items():
                if versions.setdefault(family, {}).setdefault(name, version) != version:
                    raise SystemExit(f"shards ran different versions of {family} {name}")
    commits = {(d["provenance"]["git_commit"], d["provenance"]["git_dirty"]) for d in loaded}
    if len(commits) != 1:
        raise SystemExit(f"shards ran on different commits: {sorted(map(str, commits))}")
    (commit, dirty), = commits
    result = result_json(every, methods, loaded[0]["device"], "--combine " + " ".join(p.name for p in parts),
                         loaded[0].get("gpu"), {"git_commit": commit, "git_dirty": dirty, "versions": versions})
    result["shard_commands"] = [d["command"] for d in loaded]
    out_path.write_text(json.dumps(result, indent=1, default=float))
    print(result["table"])
    print(f"wrote {out_path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "cifar10-subset"])
    ap.add_argument("--attacks", nargs="+", default=["badnet", "smooth"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=UNLEARNERS.names(), choices=UNLEARNERS.names())
    ap.add_argument("--out", type=Path, help=f"result file (default {DEFAULT_OUT.relative_to(ROOT)} for a full run)")
    ap.add_argument("--cifar-subset", type=Path, default=CIFAR_SUBSET,
                    help="the real CIFAR subset's ImageFolder (default ../shared/data/cifar10-subset)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other scenarios already in --out (replace only those run now)")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="SHARD",
                    help="only combine results files written by narrowed runs into --out (or the default file)")
    args = ap.parse_args()
    if args.combine:
        combine(args.combine, args.out or DEFAULT_OUT)
        return
    torch.set_num_threads(1)
    pipe = Pipeline(Store())
    rows_file = Path(pipe.store.directory) / "unlearning_suite_rows.jsonl"
    done: dict = {}
    if rows_file.exists():
        for line in rows_file.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    full = (args.datasets == ["mnist5k", "cifar10-subset"] and args.attacks == ["badnet", "smooth"]
            and args.seeds == [0, 1, 2] and args.methods == UNLEARNERS.names())
    out_path = args.out or (DEFAULT_OUT if full else None)
    kept: list[dict] = []
    if args.merge and out_path and out_path.exists():
        kept = json.loads(out_path.read_text()).get("runs", [])
    runs: list[dict] = []
    for dataset in args.datasets:
        for attack in args.attacks:
            for seed in args.seeds:
                runs.append(run_scenario(pipe, dataset, attack, seed, args.methods, done, rows_file,
                                         args.cifar_subset))
                now = {(r["dataset"], r["attack"], r["seed"]) for r in runs}
                every = [r for r in kept if (r["dataset"], r["attack"], r["seed"]) not in now] + runs
                every.sort(key=lambda r: (r["dataset"], r["attack"], r["seed"]))
                result = result_json(every, args.methods, str(pipe.device), " ".join(sys.argv[1:]),
                                     torch.cuda.get_device_name() if pipe.device.type == "cuda" else None)
                if out_path:
                    out_path.parent.mkdir(parents=True, exist_ok=True)
                    out_path.write_text(json.dumps(result, indent=1, default=float))
    print(table(every, args.methods))
    if out_path:
        print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
