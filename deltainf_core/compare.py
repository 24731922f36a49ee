"""Detectors × attacks (× unlearners) comparison — the paper's Figures 3 and 4 as live tables.

Every cell goes through the same cached ``Pipeline`` as the app, so a comparison
after an investigation reuses its models, factors and scores. Output: a JSON file
under ``results/``, a Markdown table and a PNG in the paper's style (PSR after
unlearning with ✓ when below 5%, clean accuracy).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from dataclasses import dataclass, replace

import numpy as np

from .attacks import ATTACKS
from .config import Scenario
from .detectors import DETECTORS
from .errors import ConfigError, DeltaInfError
from .figures.comparison_png import DEFAULT_DETECTOR, FIGURE3_UNLEARNER, comparison_png
from .metrics import SUCCESS_PSR
from .pipeline import Pipeline, StageProgress, investigate, quiet
from .unlearning import UNLEARNERS


def run_comparison(base: Scenario, attacks: list[str], detectors: list[str], unlearners: list[str],
                   progress: StageProgress = quiet, out_dir: str = "results",
                   pipeline: Pipeline | None = None, brew_targets: int = 1) -> dict:
    """Run every (attack, detector) with EU — and every unlearner on Δ-Influence's set.

    Rows whose cell fails (e.g. an attack that does not implant, so no affected image
    exists) are kept with an ``error`` sentence instead of aborting the table. A
    per-target attack (Witches' Brew) poisons one target image per run, so its cells run
    ``brew_targets`` attack seeds (each its own target and poisons) and report the share
    of targets hit. Each method keeps the parameters in ``base`` that it takes.
    """
    for name in attacks:
        ATTACKS.get(name)
    for name in detectors:
        DETECTORS.get(name)
    for name in unlearners:
        UNLEARNERS.get(name)
    if brew_targets < 1:
        raise ConfigError(f"Witches' Brew needs at least one target, got {brew_targets}")
    pipe = pipeline or Pipeline(progress=progress)
    rows: list[dict] = []
    cells = planned_cells(attacks, detectors, unlearners)
    started = time.perf_counter()
    for i, (attack, detector, unlearner) in enumerate(cells):
        progress("compare", i / len(cells), cell_message(i, len(cells), f"{attack} × {detector} × {unlearner}",
                                                          time.perf_counter() - started))
        scn = replace(base, attack=replace(base.attack, attack=attack,
                                           params=ATTACKS.accepted(attack, base.attack.params)),
                      detect=replace(base.detect, detector=detector,
                                     params=DETECTORS.accepted(detector, base.detect.params)),
                      unlearn=replace(base.unlearn, method=unlearner,
                                      params=UNLEARNERS.accepted(unlearner, base.unlearn.params)))
        row = {"attack": attack, "detector": detector, "unlearner": unlearner}
        if ATTACKS.trait(attack, "per_target"):
            # One target per attack seed: PSR is the share of targets misclassified.
            seeds = [base.attack.seed + k for k in range(brew_targets)]
            row.update(targets_cell([measure_cell(pipe, replace(scn, attack=replace(scn.attack, seed=s)))
                                     for s in seeds]))
        else:
            row.update(measure_cell(pipe, scn))
        rows.append(row)
    _add_relative_time(rows)
    result = {
        "dataset": base.data.data_dir or base.data.dataset, "model": base.train.model,
        "seed": base.train.seed, "attacks": attacks, "detectors": detectors, "unlearners": unlearners,
        "rows": rows, "seconds": time.perf_counter() - started,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    result["markdown"] = markdown_table(result)
    progress("compare", 1.0, f"{len(rows)} cells")
    return save_comparison(result, out_dir)


def planned_cells(attacks: list[str], detectors: list[str], unlearners: list[str]) -> list[tuple[str, str, str]]:
    """The (attack, detector, unlearner) cells ``run_comparison`` runs, in its order: every detector
    with EU (Figure 3), then every other unlearner on the default detector's set (Figure 4)."""
    eu = FIGURE3_UNLEARNER
    cells = [(a, d, eu) for a in attacks for d in detectors]
    return cells + [(a, DEFAULT_DETECTOR, u) for a in attacks for u in unlearners
                    if u != eu or DEFAULT_DETECTOR not in detectors]


def n_cells(attacks: list[str], detectors: list[str], unlearners: list[str]) -> int:
    """How many cells ``run_comparison`` runs for these choices (what "cell i of N" counts)."""
    return len(planned_cells(attacks, detectors, unlearners))


def cell_message(i: int, n: int, what: str, elapsed: float) -> str:
    """"cell 3 of 8: badnet × delta × eu · about 2m left" (the estimate once a cell has finished)."""
    text = f"cell {i + 1} of {n}: {what}"
    if i > 0:
        text += f" · about {duration(elapsed / i * (n - i))} left"
    return text


def duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Estimate:
    """What cells are likely to cost, from cells measured earlier on the same dataset.

    low: the unlearning alone (when the model, factors and scores are already cached, as after an
        investigation of the same scenario); high: the whole cell as measured (an empty cache).
    measured: how many of the cells had a measurement of that very (attack, detector, unlearner);
        the rest took the median of the dataset's cells with the same unlearner (or all its cells).
    """

    low: float
    high: float
    measured: int
    n: int


def estimate_cells(cells: list[tuple[str, str, str]], dataset: str, folders: list[str]) -> Estimate | None:
    """Per-cell costs measured in earlier comparisons on ``dataset`` (newest first), summed over
    ``cells``; None when none was measured there. A rough guide: other hardware, another load."""
    seen: dict[tuple[str, str, str], dict] = {}
    for _, data, _ in comparisons(folders):
        if _slug(str(data.get("dataset", ""))) != _slug(dataset):
            continue
        for r in data.get("rows") or []:
            key = (r.get("attack"), r.get("detector"), r.get("unlearner"))
            if isinstance(r.get("seconds"), (int, float)) and key not in seen:
                seen[key] = r
    if not seen or not cells:
        return None
    low = high = 0.0
    measured = 0
    for cell in cells:
        row = seen.get(cell)
        if row is not None:
            measured += 1
            rows = [row]
        else:
            rows = [r for k, r in seen.items() if k[2] == cell[2]] or list(seen.values())
        high += float(np.median([r["seconds"] for r in rows]))
        low += float(np.median([r.get("unlearn_seconds") or r["seconds"] for r in rows]))
    return Estimate(min(low, high), high, measured, len(cells))


def estimate_text(est: Estimate | None) -> str:
    """"about 75s–4 min (1 of 1 cells measured before …)" for the run form; "" without an estimate."""
    if est is None:
        return ""
    span = duration(est.high) if duration(est.low) == duration(est.high) else \
        f"{duration(est.low)}–{duration(est.high)}"
    basis = (f"{est.measured} of these {est.n} cell{'s' if est.n != 1 else ''} measured before on this dataset"
             if est.measured else f"no such cell measured before; {est.n} like it on this dataset")
    return (f"about {span}: the lower figure when the models, factors and scores are already cached, the "
            f"higher from an empty cache ({basis})")


def measure_cell(pipe: Pipeline, scn: Scenario) -> dict:
    """One scenario investigated: PSR and accuracy before/after, flagged-set quality, oracle."""
    row: dict = {}
    try:
        t0 = time.perf_counter()
        tm = pipe.trained(scn)
        # Recorded first, so a cell whose attack never took hold still shows its PSR.
        row.update({"psr_before": tm.poison_success_rate, "acc_before": tm.clean_accuracy})
        inv = investigate(pipe, scn)
        out = inv.outcome
        row.update({
            "psr_after": out.poison_success_rate if out else None,
            "acc_after": out.clean_accuracy if out else None,
            "n_flagged": int(inv.flagged.size), "precision": inv.precision, "recall": inv.recall,
            "rounds": len(inv.rounds), "unlearn_seconds": out.seconds if out else None,
            "seconds": time.perf_counter() - t0,
        })
        row["success"] = row["psr_after"] is not None and row["psr_after"] < SUCCESS_PSR
        if row["acc_after"] is not None:
            row["acc_change"] = row["acc_after"] - row["acc_before"]
        # Retraining without exactly the true poisons (cached, once per attack): how much
        # of an accuracy change is retraining noise rather than false positives (finding 8).
        oracle = pipe.oracle(scn)
        row["oracle_acc"] = None if oracle is None else oracle.clean_accuracy
        row["oracle_psr"] = None if oracle is None else oracle.poison_success_rate
    except DeltaInfError as err:
        row.update({"error": str(err), "success": False})
    if ATTACKS.trait(scn.attack.attack, "per_target"):
        row["attack_seed"] = scn.attack.seed
        with contextlib.suppress(DeltaInfError):  # the attack's own error is already in the row
            row["target_index"] = pipe.poisoned(scn).info.get("target_index")
    return row


def targets_cell(runs: list[dict]) -> dict:
    """Several one-target runs as one cell: shares of targets hit before and after unlearning.

    A target the attack never flipped needs no unlearning (it counts as not misclassified
    after); the cell succeeds when at least one target was hit and none stays hit after.
    Accuracy, flagged-set and cost columns are means over the hit targets.
    """
    hit = [r for r in runs if (r.get("psr_before") or 0) >= 0.5]
    measured = [r for r in hit if r.get("psr_after") is not None]
    row: dict = {"targets": runs, "n_targets": len(runs), "n_hit": len(hit)}
    if not runs or "psr_before" not in runs[0]:
        row.update({"error": runs[0].get("error", "no target measured") if runs else "no target measured",
                    "success": False})
        return row
    row["psr_before"] = len(hit) / len(runs)
    row["acc_before"] = float(np.mean([r["acc_before"] for r in runs if "acc_before" in r]))
    if len(measured) < len(hit):
        failed = next(r for r in hit if r.get("psr_after") is None)
        row.update({"error": failed.get("error", "unlearning did not run"), "success": False})
        return row
    row["psr_after"] = sum(r["psr_after"] >= 0.5 for r in measured) / len(runs)
    row["success"] = bool(hit) and row["psr_after"] < SUCCESS_PSR
    if not hit:
        row["error"] = f"the attack hit none of its {len(runs)} targets: nothing to trace"
        return row
    for key in ("acc_after", "acc_change", "n_flagged", "precision", "recall", "rounds", "unlearn_seconds",
                "seconds", "oracle_acc", "oracle_psr"):
        vals = [r[key] for r in measured if r.get(key) is not None]
        if vals:
            row[key] = float(np.mean(vals))
    if "n_flagged" in row:
        row["n_flagged"] = round(row["n_flagged"])
    return row


def _add_relative_time(rows: list[dict]) -> None:
    """Unlearning wall time relative to EU on the same flagged set (Figure 4's cost column)."""
    eu = {r["attack"]: r.get("unlearn_seconds") for r in rows
          if r["detector"] == DEFAULT_DETECTOR and r["unlearner"] == FIGURE3_UNLEARNER}
    for r in rows:
        base = eu.get(r["attack"])
        secs = r.get("unlearn_seconds")
        r["time_vs_eu"] = (secs / base) if base and secs is not None else None


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown_table(result: dict) -> str:
    """Figure 3 (detectors, EU) and Figure 4 (unlearners on Δ-Influence) as Markdown."""
    lines = [f"Dataset `{result['dataset']}`, model `{result['model']}`, seed {result['seed']}. "
             "PSR after unlearning (✓ when < 5%) / clean accuracy after (change vs the poisoned "
             "model, points), in %.", ""]

    def table(rows: list[dict], key: str) -> list[str]:
        attacks = result["attacks"]
        out = [f"| {key} | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks)]
        for name in dict.fromkeys(r[key] for r in rows):
            cells = []
            for a in attacks:
                r = next((x for x in rows if x[key] == name and x["attack"] == a), None)
                if r is None:
                    cells.append("")
                elif "error" in r:
                    hits = f" ({r['n_hit']}/{r['n_targets']} targets hit)" if "n_targets" in r else ""
                    cells.append(f"error: {r['error'][:60]}{hits}")
                else:
                    mark = "✓" if r["success"] else "×"
                    extra = f", {r['n_flagged']} flagged"
                    if "n_targets" in r:
                        extra = f", {r['n_hit']}/{r['n_targets']} targets hit" + extra
                    if r.get("recall") is not None:
                        extra += f", P {_pct(r['precision'])} R {_pct(r['recall'])}"
                    if key == "unlearner" and r.get("time_vs_eu") is not None:
                        extra += f", {r['time_vs_eu']:.2f}× EU time"
                    change = f" ({100 * r['acc_change']:+.1f})" if r.get("acc_change") is not None else ""
                    cells.append(f"{mark} {_pct(r['psr_after'])} / {_pct(r['acc_after'])}{change}{extra}")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        return out

    fig3 = [r for r in result["rows"] if r["unlearner"] == FIGURE3_UNLEARNER]
    lines += ["**Detection methods, each unlearned with EU (Figure 3)**", "", *table(fig3, "detector")]
    fig4 = [r for r in result["rows"] if r["detector"] == DEFAULT_DETECTOR]
    if len({r["unlearner"] for r in fig4}) > 1:
        lines += ["", "**Unlearning methods on Δ-Influence's flagged set (Figure 4)**", ""]
        lines += table(fig4, "unlearner")
    before = {r["attack"]: r for r in result["rows"] if "psr_before" in r}
    lines += ["", "Poisoned model: " + "; ".join(
        f"{a}: PSR {_pct(r['psr_before'])}"
        + (f" ({r['n_hit']} of {r['n_targets']} targets hit)" if "n_targets" in r else "")
        + f", accuracy {_pct(r['acc_before'])}"
        + (f" (oracle retrain without the true poisons: PSR {_pct(r.get('oracle_psr'))}, accuracy "
           f"{_pct(r['oracle_acc'])})" if r.get("oracle_acc") else "")
        for a, r in before.items())]
    return "\n".join(lines) + "\n"


def save_comparison(result: dict, out_dir: str) -> dict:
    """Write JSON, Markdown and PNG atomically; returns the result with the file paths."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"compare-{_slug(result['dataset'])}-{time.strftime('%Y%m%d-%H%M%S')}")
    png = f"{stem}.png"
    comparison_png(result, png)
    result["figure_png"] = png
    with open(f"{stem}.md", "w") as fh:
        fh.write(result["markdown"])
    tmp = f"{stem}.json.tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(tmp, f"{stem}.json")
    result["json_path"] = f"{stem}.json"
    return result


def latest_comparison(out_dir: str = "results") -> tuple[str, dict] | None:
    """``(path, result)`` of the newest ``compare-*.json`` under ``out_dir`` that parses into a
    result with a list of rows; None when there is none (unreadable files are skipped)."""
    for path, data, _ in comparisons([out_dir]):
        return path, data
    return None


def comparisons(folders: list[str]) -> list[tuple[str, dict, int]]:
    """Every readable comparison under ``folders`` as ``(path, result, folder position)``, newest
    first by the run's own ``created`` stamp (a fresh clone's files all share one mtime; a file
    without one counts from its mtime)."""
    found = []
    for pos, folder in enumerate(folders):
        for path in glob.glob(os.path.join(folder, "compare-*.json")):
            try:
                with open(path) as fh:
                    data = json.load(fh)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("rows"), list):
                mtime = os.path.getmtime(path)
                stamp = data.get("created") if isinstance(data.get("created"), str) else time.strftime(
                    "%Y-%m-%dT%H:%M:%S", time.localtime(mtime))
                found.append((stamp, mtime, path, data, pos))
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)
    return [(path, data, pos) for _, _, path, data, pos in found]


def reference_comparison(folder: str, dataset: str | None = None) -> tuple[str, dict] | None:
    """The shipped comparison a run here is read against: on ``dataset`` (any when None), the one
    with the most cells, the newest among equals; None when the folder holds none."""
    found = [(path, data) for path, data, _ in comparisons([folder])
             if dataset is None or _slug(str(data.get("dataset", ""))) == _slug(dataset)]
    return max(found, key=lambda pd: len(pd[1]["rows"])) if found else None  # max keeps the first: the newest


def figure_path(path: str, data: dict, root: str = ".") -> str | None:
    """The comparison's PNG: where its JSON says (relative paths from ``root``), else beside the
    JSON under the JSON's own name (how ``bench/results/`` ships them)."""
    named = data.get("figure_png")
    candidates = []
    if isinstance(named, str) and named.endswith(".png"):
        candidates += [named if os.path.isabs(named) else os.path.join(root, named),
                       os.path.join(os.path.dirname(path), os.path.basename(named))]
    candidates.append(os.path.splitext(path)[0] + ".png")
    return next((c for c in candidates if os.path.isfile(c)), None)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in os.path.basename(os.path.normpath(text)))
