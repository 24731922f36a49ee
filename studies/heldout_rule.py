"""delta_heldout against delta on the rule study's saved score matrices (issue 17), EU after each.

The matrices are ``studies/rule_study.py collect``'s (40 runs: mnist5k and the CIFAR subset,
BadNet and smooth, seeds 0-4, one and five affected images). ``cell`` applies both rules
to one scenario's saved scores, with ``delta_heldout``'s retrains and EU run by the
pipeline on this machine (a GPU when present), and the oracle retrain beside them;
``combine`` gathers the cells into one results file with provenance. ``replay`` applies
today's rule to the recorded cells without retraining: each retrain it asks for is answered
from a recorded round that held out exactly the same images (a change to the rule's net
would need new retrains, and is refused); where today's set differs from the recorded one,
``--retrain`` runs its EU and the oracle on this machine, side by side.

    # one process per scenario (on a GPU machine, all twenty side by side: studies/heldout_rule_gpu.sh)
    DELTAINF_CACHE=/tmp/cache/c .venv/bin/python studies/heldout_rule.py cell mnist5k:badnet:0 \\
        --matrices $DELTAINF_CACHE/rule_study --cifar ../shared/data/cifar10-subset --out /tmp/heldout
    .venv/bin/python studies/heldout_rule.py combine /tmp/heldout/*.json --out studies/results/rule_heldout.json
    # a change to the fallback, on the recorded rounds (EU of changed sets retrained here)
    .venv/bin/python studies/heldout_rule.py replay /tmp/heldout/heldout-*.json --matrices M --cifar C \
        --out /tmp/replayed --retrain
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
sys.path.insert(0, str(ROOT / "studies"))

from rule_study import same_poisons, scenario  # noqa: E402  (the study's scenarios: one seed for every stage)

from deltainf_core import DataConfig, Pipeline, Scenario, Store  # noqa: E402
from deltainf_core.collapse import RULES, CollapseEvidence  # noqa: E402
from deltainf_core.collapse.heldout import HeldOutAnswer, HeldOutRetrain  # noqa: E402
from deltainf_core.collapse.queries import CollapseQueries  # noqa: E402
from deltainf_core.metrics import precision_recall  # noqa: E402
from deltainf_core.training import predict_logits  # noqa: E402


class RecordedRetrain(HeldOutRetrain):
    """The pipeline's held-out retrains, each round written down (which images, what the model said of them,
    its softmax probability of their training label, which clean test images of the target class it
    mislabelled), so fallbacks and soft scores can be studied offline without retraining."""

    def __init__(self, base: HeldOutRetrain) -> None:
        def keep(exclude: np.ndarray) -> torch.nn.Module:  # the round's model, kept for its probabilities
            self.last_model = base.retrain(exclude)
            return self.last_model

        super().__init__(keep, base.train, base.test)
        self.rounds: list[dict] = []
        self.last_model: torch.nn.Module | None = None

    def disagreement(self, exclude: np.ndarray, target_class: int) -> HeldOutAnswer:
        answer = super().disagreement(exclude, target_class)
        disagree, wrong, model = answer.disagree, answer.test_wrong, self.last_model
        probs = predict_logits(model, self.train.pixels[torch.as_tensor(exclude)]).softmax(1).numpy()
        label = self.train.labels[exclude].numpy()
        self.rounds.append({"exclude": np.asarray(exclude).tolist(), "disagree": disagree.tolist(),
                            "p_label": probs[np.arange(len(label)), label].round(4).tolist(),
                            "p_target": probs[:, target_class].round(4).tolist(),
                            "test_wrong": None if wrong is None else wrong.astype(int).tolist(),
                            "target_error": None if wrong is None else float(wrong.mean())})
        return answer


def scenario_here(pipe: Pipeline, name: str, cifar: str, z: np.lib.npyio.NpzFile | None = None) -> Scenario:
    """The study's scenario of a cell ("dataset:attack:seed"), its CIFAR subset where it lies on this
    machine; refused when today's attack poisons other images than the saved matrix ``z`` holds."""
    ds, attack, seed = name.split(":")
    scn = scenario(ds, attack, int(seed))
    if ds == "cifar":
        scn = replace(scn, data=DataConfig(data_dir=cifar))
    if z is not None:
        same_poisons(pipe, scn, z["poison_indices"], name)
    return scn


def evidence_of(z: np.lib.npyio.NpzFile, n_images: int, heldout: HeldOutRetrain) -> CollapseEvidence:
    """The saved scores of the first ``n_images`` affected images, with held-out retrains to ask."""
    rows = np.flatnonzero(z["image_of"] < n_images)
    q = CollapseQueries(None, z["image_of"][rows], z["is_original"][rows], z["transform"].astype(object)[rows])
    return CollapseEvidence(z["scores"][rows].astype(np.float64), q, z["predicted"][rows], int(z["target_class"]),
                            None, heldout)


def cell(args: argparse.Namespace) -> None:
    ds, attack, seed = args.cell.split(":")
    z = np.load(Path(args.matrices) / f"{ds}-{attack}-seed{seed}.npz", allow_pickle=False)
    pipe = Pipeline(Store())
    scn = scenario_here(pipe, args.cell, args.cifar, z)
    truth = np.asarray(z["poison_indices"])
    tm = pipe.trained(scn)
    oracle = pipe.oracle(scn)
    res = {"cell": args.cell, "device": str(pipe.device), "poisoned": [tm.clean_accuracy, tm.poison_success_rate],
           "oracle": [oracle.clean_accuracy, oracle.poison_success_rate]}
    base = pipe.heldout(scn)
    for n in (5, 1):
        t0 = time.time()
        held = RecordedRetrain(base)
        ev = evidence_of(z, n, held)
        new = RULES.get("delta_heldout")(ev, RULES.parse_params("delta_heldout", {}))
        old = RULES.get("delta")(ev, RULES.parse_params("delta", {}))
        eu = pipe.unlearn(scn, new.flagged)
        eu_old = eu if np.array_equal(new.flagged, old.flagged) else pipe.unlearn(scn, old.flagged)
        net = held.rounds[0]["exclude"] if held.rounds else []
        eu_net = pipe.unlearn(scn, np.asarray(net)) if len(net) else None  # round 1's retrain: cached
        p_new, r_new = precision_recall(new.flagged, truth)
        p_old, r_old = precision_recall(old.flagged, truth)
        res[str(n)] = {"flagged": int(new.flagged.size), "precision": p_new, "recall": r_new,
                       "indices": new.flagged.tolist(), "info": new.info,
                       "eu": [eu.clean_accuracy, eu.poison_success_rate],
                       "today": [int(old.flagged.size), p_old, r_old], "today_indices": old.flagged.tolist(),
                       "eu_today": [eu_old.clean_accuracy, eu_old.poison_success_rate],
                       "eu_net": None if eu_net is None else [eu_net.clean_accuracy, eu_net.poison_success_rate],
                       "rounds": held.rounds, "seconds": time.time() - t0}
        (Path(args.out) / f"heldout-{ds}-{attack}-{seed}.json").write_text(json.dumps(res, default=float))
    print(args.cell, "done", flush=True)


class ReplayedRetrain(HeldOutRetrain):
    """Answers each retrain from a recorded round that held out exactly the same images."""

    def __init__(self, rounds: list[dict]) -> None:
        super().__init__(self._refuse, None, None)
        self.recorded = {tuple(r["exclude"]): r for r in rounds}

    @staticmethod
    def _refuse(exclude: np.ndarray) -> torch.nn.Module:
        raise SystemExit(f"no recorded round held out these {len(exclude)} images: run `cell` (retrains)")

    def disagreement(self, exclude: np.ndarray, target_class: int) -> HeldOutAnswer:
        r = self.recorded.get(tuple(np.asarray(exclude).tolist()))
        if r is None:
            self._refuse(exclude)
        wrong = None if r["test_wrong"] is None else np.asarray(r["test_wrong"], dtype=bool)
        called = np.full(len(r["exclude"]), -1)  # not recorded: only Triage's captions use it
        return HeldOutAnswer(called, np.asarray(r["disagree"], dtype=bool), wrong)


def replay(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(Store()) if args.retrain else None
    for path in sorted(args.files):
        rec = json.loads(Path(path).read_text())
        ds, attack, seed = rec["cell"].split(":")
        z = np.load(Path(args.matrices) / f"{ds}-{attack}-seed{seed}.npz", allow_pickle=False)
        truth = z["poison_indices"]
        res = {**rec, "replayed_from": Path(path).name}
        scn = None
        for n in ("5", "1"):
            t0 = time.time()
            r = dict(rec[n])
            ev = evidence_of(z, int(n), ReplayedRetrain(r["rounds"]))
            new = RULES.get("delta_heldout")(ev, RULES.parse_params("delta_heldout", {}))
            p_new, r_new = precision_recall(new.flagged, truth)
            same = np.array_equal(new.flagged, np.asarray(r["indices"]))
            r.update(flagged=int(new.flagged.size), precision=p_new, recall=r_new, indices=new.flagged.tolist(),
                     info=new.info, same_as_recorded=same)
            if not same:  # its EU was never measured: here, beside the oracle on the same machine
                r["eu"], r["eu_device"] = None, None
                if pipe is not None:
                    if scn is None:
                        scn = scenario_here(pipe, rec["cell"], args.cifar, z)
                        oracle = pipe.oracle(scn)
                        res["oracle_here"] = [oracle.clean_accuracy, oracle.poison_success_rate]
                    eu = pipe.unlearn(scn, new.flagged)
                    r["eu"], r["eu_device"] = [eu.clean_accuracy, eu.poison_success_rate], str(pipe.device)
                    r["oracle_same_device"] = res["oracle_here"]
            r["seconds_replay"] = time.time() - t0
            res[n] = r
        (out / Path(path).name).write_text(json.dumps(res, default=float))
        print(rec["cell"], " | ".join(f"n{n}: {res[n]['flagged']} {res[n]['precision']:.2f} {res[n]['recall']:.2f}"
                                      + ("" if res[n]["same_as_recorded"] else f" (changed; EU {res[n]['eu']})")
                                      for n in ("5", "1")), flush=True)


def combine(args: argparse.Namespace) -> None:
    from provenance import provenance

    previous = {}  # an earlier version of the rule on the same matrices: (cell, images) -> its result
    for path in args.previous or []:
        d = json.loads(Path(path).read_text())
        for n in ("5", "1"):
            r = d[n]
            previous[(d["cell"], n)] = {"flagged": r["flagged"], "precision": r["precision"], "recall": r["recall"],
                                        "heldout_used": r["info"]["heldout_used"],
                                        "estimated_precision": r["info"].get("estimated_precision"), "eu": r["eu"]}
    rows = []
    for path in sorted(args.files):
        d = json.loads(Path(path).read_text())
        for n in ("5", "1"):
            r = d[n]
            here = r.get("eu_device")  # replayed: this set's EU (and its oracle) retrained on another machine
            rows.append({"scenario": d["cell"], "n_images": int(n), "device": here or d["device"],
                         "oracle": r["oracle_same_device"] if here else d["oracle"],
                         "same_as_recorded": r.get("same_as_recorded", True),
                         "poisoned": d["poisoned"], **{k: r[k] for k in ("flagged", "precision", "recall", "info",
                                                                         "eu", "today", "seconds")},
                         **({"previous_version": previous[(d["cell"], n)]} if (d["cell"], n) in previous else {})})
    summary = {}
    for part in ("mnist5k", "cifar", ""):
        sel = [r for r in rows if r["scenario"].startswith(part)]
        summary[part or "all"] = {
            "runs": len(sel),
            "heldout": {"mean_precision": float(np.mean([r["precision"] for r in sel])),
                        "recall_below_098": sum(r["recall"] < 0.98 for r in sel),
                        "used": sum(bool(r["info"]["heldout_used"]) for r in sel)},
            "delta": {"mean_precision": float(np.mean([r["today"][1] for r in sel])),
                      "recall_below_098": sum(r["today"][2] < 0.98 for r in sel)},
            "eu_vs_oracle_points": [round(100 * (r["eu"][0] - r["oracle"][0]), 1) for r in sel]}
        prev = [r["previous_version"] for r in sel if "previous_version" in r]
        if prev:
            summary[part or "all"]["previous_version"] = {
                "mean_precision": float(np.mean([p["precision"] for p in prev])),
                "recall_below_098": sum(p["recall"] < 0.98 for p in prev), "used": sum(p["heldout_used"] for p in prev)}
    out = {"benchmark": "heldout_rule", "command": " ".join(sys.argv), "summary": summary, "rows": rows,
           "device_name": args.device_name,
           "note": args.note,
           "provenance": provenance(stages=["poison", "train", "factors", "scores", "unlearn"], models=["smallcnn"],
                                    attacks=["badnet", "smooth"], detectors=["delta", "delta_heldout"],
                                    unlearners=["eu"], datasets=["mnist5k"])}
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps(summary, indent=1))
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    """The BENCHMARKS.md table: delta, the previous version (when given) and this one on the same scores."""
    prev = any("previous_version" in r for r in rows)
    head = "| data | attack | seed | images | delta | " + ("previous delta_heldout | " if prev else "") \
        + "delta_heldout | held-out check (estimated precision) | EU after it vs the oracle retrain (points) |"
    lines = [head, "|" + "---|" * (8 + prev)]

    def cell(n: int, p: float, r: float) -> str:
        return f"{n} / {p:.2f} / {r:.2f}"

    for r in sorted(rows, key=lambda r: (r["scenario"], -r["n_images"])):
        ds, attack, seed = r["scenario"].split(":")
        info = r["info"]
        est = info.get("estimated_precision")
        check = ("used, " + " → ".join(str(k) for k in info["narrowing"]) if info["heldout_used"] else "fell back") \
            + ("" if est is None else f" ({est:.2f})")
        old = r.get("previous_version")
        old_text = "–" if not old else (cell(old["flagged"], old["precision"], old["recall"])
                                        + ("" if old["heldout_used"] else " (fell back)"))
        lines.append(f"| {'CIFAR subset' if ds == 'cifar' else ds} | {attack} | {seed} | {r['n_images']} | "
                     f"{cell(*r['today'])} | " + (f"{old_text} | " if prev else "")
                     + f"{cell(r['flagged'], r['precision'], r['recall'])} | {check} | "
                     f"{100 * (r['eu'][0] - r['oracle'][0]):+.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cell")
    c.add_argument("cell", help="dataset:attack:seed (dataset mnist5k or cifar)")
    c.add_argument("--matrices", required=True, help="rule_study.py collect's folder of .npz")
    c.add_argument("--cifar", required=True, help="the CIFAR subset's ImageFolder")
    c.add_argument("--out", required=True)
    m = sub.add_parser("combine")
    m.add_argument("files", nargs="+")
    m.add_argument("--out", required=True)
    m.add_argument("--note", default="")
    m.add_argument("--device-name", default="", help="the machine the cells ran on, in words")
    m.add_argument("--previous", nargs="*", help="cell files of an earlier version of the rule on the same matrices")
    r = sub.add_parser("replay")
    r.add_argument("files", nargs="+", help="cell files written by `cell`")
    r.add_argument("--matrices", required=True)
    r.add_argument("--cifar", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--retrain", action="store_true", help="run EU (and the oracle) of each changed set here")
    args = ap.parse_args()
    {"cell": cell, "combine": combine, "replay": replay}[args.command](args)


if __name__ == "__main__":
    main()
