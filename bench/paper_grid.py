"""The paper's grid on real data, cell by cell: attacks × seeds × affected images × detectors (each
unlearned with EU), plus the other unlearners on the default detector's set.

A cell is one default investigation (``run_results``, the CLI's ``run``) and is written to its own
file under ``--out`` the moment it finishes, with the device, threads, seconds per stage and code
versions; a grid can stop anywhere and the next invocation runs only the cells whose files are
missing. Cells share one artefact cache, so the poisoned model, factors and scores of an
(attack, seed) are computed once, and a flagged set equal to the true poisons shares the oracle's
retrain. Several workers may run at once (one per core, or a GPU beside a CPU): each takes a cell's
lock file before running it and skips cells another worker holds.

    python -m bench.paper_grid run --data-dir ../shared/data/cifar10 --attacks badnet,smooth --seeds 0 \
        --affected 5,1 --threads 1
    python -m bench.paper_grid table          # the Figure 3/4-shaped Markdown from the cell files

``--budget-s`` stops starting cells after that many seconds (a lent GPU's minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DETECTORS = ("delta", "delta_label", "activation_clustering", "spectral", "delta_profile", "delta_heldout")
"""Figure 3's rows, cheapest first: a grid cut short still has the default's cells."""
UNLEARNERS = ("cf", "potion")
"""Figure 4's extra rows, on the default detector's flagged set (EU is Figure 3's)."""
DEFAULT_OUT = ROOT / "bench" / "results" / "paper_grid"

PUBLISHED = {
    "badnet": "CIFAR-10, ResNet-18: precision 15 %, recall 100 %",
    "smooth": "CIFAR-100 (frequency trigger), ResNet-18: precision 3 %, recall 100 %",
    "witches_brew": "Imagenette, ResNet-18: precision 62 %, recall 93 %",
}
"""Li et al.'s published flagged sets (the paper's own data sets and models; SPEC §1)."""


@dataclass(frozen=True)
class Cell:
    """One investigation of the grid: everything that tells it apart from its neighbours."""

    attack: str
    seed: int
    affected: int
    detector: str
    unlearner: str = "eu"

    @property
    def id(self) -> str:
        return f"{self.attack}-s{self.seed}-a{self.affected}-{self.detector}-{self.unlearner}"


def plan(attacks: list[str], seeds: list[int], affected: list[int], detectors: list[str],
         unlearners: list[str]) -> list[Cell]:
    """The cells in the order they run: per seed and attack, each number of affected images, every
    detector with EU, then the unlearners on the default detector's set. A per-target attack
    (Witches' Brew) has one affected image, its target, so it gets one affected count."""
    from deltainf_core.attacks import ATTACKS
    from deltainf_core.config import DetectConfig

    default = DetectConfig().detector
    cells: list[Cell] = []
    for seed in seeds:
        for attack in attacks:
            counts = [1] if ATTACKS.trait(attack, "per_target") else affected
            for n in counts:
                cells += [Cell(attack, seed, n, d) for d in detectors]
                cells += [Cell(attack, seed, n, default, u) for u in unlearners if u != "eu"]
    return list(dict.fromkeys(cells))


def scenario(cell: Cell, base):
    """The default investigation of ``cell``: ``base`` (today's defaults plus the data) with the cell's
    attack, seed (every stage's, as ``--seed`` sets them), affected-image count, detector and unlearner.
    A method's parameters are its defaults; the attack keeps the ones in ``base`` that it takes."""
    from deltainf_core.attacks import ATTACKS
    from deltainf_core.config import DetectConfig, UnlearnConfig

    return replace(
        base,
        attack=replace(base.attack, attack=cell.attack, seed=cell.seed,
                       params=ATTACKS.accepted(cell.attack, base.attack.params)),
        train=replace(base.train, seed=cell.seed),
        collapse=replace(base.collapse, max_affected=cell.affected, seed=cell.seed),
        detect=DetectConfig(detector=cell.detector),
        unlearn=UnlearnConfig(method=cell.unlearner, seed=cell.seed),
    )


def base_scenario(data_dir: str | None, dataset: str, max_train: int | None = None, max_test: int | None = None,
                  epochs: int | None = None, poison_frac: float | None = None):
    """Today's defaults on the grid's data; the optional caps exist for tiny test grids only."""
    from deltainf_core.config import AttackConfig, DataConfig, Scenario, TrainConfig

    acfg = AttackConfig() if poison_frac is None else AttackConfig(poison_frac=poison_frac)
    return Scenario(data=DataConfig(dataset=dataset, data_dir=data_dir, max_train=max_train, max_test=max_test),
                    attack=acfg, train=TrainConfig(epochs=epochs))


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine() -> dict:
    """Where a cell ran: device, torch threads, cores this process may use, load when it started."""
    import platform

    import torch

    from deltainf_core.training import pick_device

    device = pick_device()
    out = {"device": str(device), "torch_threads": torch.get_num_threads(),
           "cores_allowed": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
           "load_avg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
           "torch": torch.__version__}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def run_cell(pipe, cell: Cell, scn) -> dict:
    """Investigate ``scn`` as ``run`` does and keep what the table needs, with the cost of each stage.

    ``timings_s`` is what this run spent (a stage read from the cache costs ~0); ``costs_s`` adds the
    seconds the cached artefacts recorded when they were made (training and unlearning), so a cell
    that reuses its neighbour's model still says what the model cost.
    """
    from bench.provenance import provenance
    from deltainf_core.errors import DeltaInfError
    from deltainf_core.pipeline import run_results

    started, cpu0 = time.perf_counter(), _cpu_seconds()
    record: dict = {"cell": asdict(cell), "id": cell.id, "machine": machine(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        tm = pipe.trained(scn)
        record["poisoned"] = {"clean_accuracy": tm.clean_accuracy, "poison_success_rate": tm.poison_success_rate,
                              "train_seconds": tm.seconds, "trained_on": tm.trained_on}
        if tm.poison_success_rate is not None and tm.poison_success_rate < 0.5:
            record["attack_failed"] = (f"the attack did not implant (PSR {tm.poison_success_rate:.0%} < 50 %): "
                                       "no detector is judged on it")
        else:
            res = run_results(pipe, scn)
            oracle = pipe.oracle(scn)
            record.update({
                "scenario": res["scenario"], "poisoned": {**record["poisoned"], **res["poisoned"]},
                "affected_test_indices": res["affected_test_indices"],
                "detection": res["detection"], "rounds": res["rounds"], "unlearned": res["unlearned"],
                "timings_s": res["timings_s"],
                "costs_s": {"train": tm.seconds,
                            "unlearn": None if res["unlearned"] is None else res["unlearned"]["seconds"],
                            "oracle": None if oracle is None else oracle.seconds},
            })
    except DeltaInfError as err:
        record["error"] = str(err)
    record["wall_s"] = time.perf_counter() - started
    record["cpu_s"] = _cpu_seconds() - cpu0
    record["provenance"] = provenance(stages=["poison", "train", "unlearn"], models=[scn.train.model],
                                      attacks=[cell.attack], detectors=[cell.detector],
                                      unlearners=sorted({cell.unlearner, "eu"}))
    return record


def write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def done(out: Path) -> dict[str, dict]:
    """Every finished cell under ``out`` by id (an unreadable file counts as not finished)."""
    cells = {}
    for path in sorted(out.glob("*.json")):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "id" in data:
                cells[data["id"]] = data
    return cells


def run_grid(cells: list[Cell], out: Path, base, budget_s: float | None = None,
             progress=print, pipe=None, runner=None) -> list[str]:
    """Run every cell of ``cells`` without a file under ``out`` on ``base`` (a Scenario); returns the ids
    run now. ``runner(pipe, cell, scenario)`` makes a cell's record (``run_cell``)."""
    from filelock import FileLock, Timeout

    from deltainf_core.pipeline import Pipeline

    pipe = pipe or Pipeline(progress=StageLog(progress))
    started = time.perf_counter()
    ran = []
    for i, cell in enumerate(cells):
        path = out / f"{cell.id}.json"
        if path.exists():
            continue
        if budget_s is not None and time.perf_counter() - started > budget_s:
            progress(f"budget of {budget_s:.0f}s spent: {len(cells) - i} cells left for the next run")
            break
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(out / f".{cell.id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            progress(f"{cell.id}: another worker holds it")
            continue
        try:
            if path.exists():  # finished by another worker between the check and the lock
                continue
            progress(f"cell {i + 1} of {len(cells)}: {cell.id}")
            t0 = time.perf_counter()
            record = (runner or run_cell)(pipe, cell, scenario(cell, base))
            write_atomic(path, record)
            ran.append(cell.id)
            progress(f"{cell.id}: {summary(record)} ({time.perf_counter() - t0:.0f}s)")
        finally:
            lock.release()
    return ran


class StageLog:
    """Pipeline progress as a log line when a stage starts or ends and once a minute in between."""

    def __init__(self, emit=print, every: float = 60.0) -> None:
        self.emit, self.every, self.stage, self.last = emit, every, None, 0.0

    def __call__(self, stage: str, frac: float, msg: str) -> None:
        now = time.perf_counter()
        if stage != self.stage or frac >= 1.0 or now - self.last > self.every:
            self.emit(f"  {stage}: {msg}")
            self.stage, self.last = stage, now


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def summary(r: dict) -> str:
    """One line of a cell: flagged set, PSR and accuracy before → after, against the oracle."""
    if "error" in r:
        return f"error: {r['error']}"
    p = r.get("poisoned", {})
    if "attack_failed" in r:
        return f"attack failed (PSR {_pct(p.get('poison_success_rate'))} %)"
    d, u = r["detection"], r.get("unlearned") or {}
    text = f"{d['n_flagged']} flagged"
    if d.get("precision") is not None:
        text += f", P {d['precision']:.2f} R {d['recall']:.2f}"
    text += f"; PSR {_pct(p.get('poison_success_rate'))} → {_pct(u.get('poison_success_rate'))} %"
    text += f", accuracy {_pct(p.get('clean_accuracy'))} → {_pct(u.get('clean_accuracy'))} %"
    if u.get("oracle_clean_accuracy") is not None:
        gap = 100 * (u["clean_accuracy"] - u["oracle_clean_accuracy"])
        text += f" ({gap:+.1f} vs the oracle's {_pct(u['oracle_clean_accuracy'])})"
    return text


def stage_costs(records: list[dict]) -> dict[tuple, dict]:
    """Seconds per stage for each (attack, seed): where each was computed rather than read from the cache.

    Training and the oracle come from the artefacts' own records; factors and scores from the cell
    that computed them (the largest time among the cells sharing them); detection and EU per cell.
    """
    out: dict[tuple, dict] = {}
    for r in records:
        if "timings_s" not in r:
            continue
        c = r["cell"]
        key = (c["attack"], c["seed"])
        row = out.setdefault(key, {"device": r["machine"]["device"], "threads": r["machine"]["torch_threads"]})
        costs, t = r["costs_s"], r["timings_s"]
        row["train"] = costs.get("train")
        row["oracle"] = costs.get("oracle")
        for stage in ("factors", "scores"):
            row[f"{stage}_a{c['affected']}"] = max(row.get(f"{stage}_a{c['affected']}", 0.0), t.get(stage, 0.0))
        if c["detector"] == "delta" and c["unlearner"] == "eu":
            row[f"detect_a{c['affected']}"] = t.get("detect")
            row[f"eu_a{c['affected']}"] = costs.get("unlearn")
    return out


def table(records: list[dict]) -> str:
    """Figure 3 (detectors, EU) and Figure 4 (unlearners on the default set) per attack × affected count,
    the paper's published sets beside them, and the seconds per stage."""
    from deltainf_core.config import DetectConfig

    default = DetectConfig().detector
    by_id = {r["id"]: r for r in records}
    cols = sorted({(r["cell"]["attack"], r["cell"]["seed"], r["cell"]["affected"]) for r in records},
                  key=lambda k: (k[1], k[0], -k[2]))
    head = [f"{a} s{s}, {n} img" for a, s, n in cols]
    lines = ["**Detectors, each unlearned with EU (Figure 3).** Flagged, precision/recall; PSR before → "
             "after EU; clean accuracy after EU and its gap to the oracle retrain (points).", "",
             "| detector | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    rows = list(dict.fromkeys(r["cell"]["detector"] for r in records if r["cell"]["unlearner"] == "eu"))
    for det in rows:
        cells = [_cell_text(by_id.get(Cell(a, s, n, det).id)) for a, s, n in cols]
        lines.append(f"| {det} | " + " | ".join(cells) + " |")
    lines.append("| published (Li et al.) | " + " | ".join(PUBLISHED.get(a, "") for a, _, _ in cols) + " |")
    unl = list(dict.fromkeys(r["cell"]["unlearner"] for r in records if r["cell"]["unlearner"] != "eu"))
    if unl:
        lines += ["", f"**Unlearners on `{default}`'s flagged set (Figure 4).** PSR before → after; clean "
                  "accuracy after (gap to the oracle retrain); seconds.", "",
                  "| unlearner | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
        for u in ["eu", *unl]:
            cells = [_cell_text(by_id.get(Cell(a, s, n, default, u).id), unlearn_only=True) for a, s, n in cols]
            lines.append(f"| {u} | " + " | ".join(cells) + " |")
    costs = stage_costs(records)
    if costs:
        lines += ["", "**Seconds per stage** (computed once per attack and seed; later cells read the cache).", "",
                  "| attack, seed | device, threads | train | factors | scores (most / fewest images) | EU | oracle |",
                  "|---|---|---|---|---|---|---|"]
        for (a, s), c in sorted(costs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            factors = max(v for k, v in c.items() if k.startswith("factors_"))
            scores = " / ".join(f"{c[k]:.0f}" for k in sorted((k for k in c if k.startswith("scores_a")),
                                                              key=lambda k: -int(k[8:])))
            eu = next((c[k] for k in sorted(c, reverse=True) if k.startswith("eu_a") and c[k]), None)
            lines.append(f"| {a} s{s} | {c['device']}, {c['threads']} | {_secs(c.get('train'))} | {_secs(factors)} | "
                         f"{scores} | {_secs(eu)} | {_secs(c.get('oracle'))} |")
    return "\n".join(lines) + "\n"


def _secs(x: float | None) -> str:
    return "–" if not x else f"{x:.0f}"


def _cell_text(r: dict | None, unlearn_only: bool = False) -> str:
    if r is None:
        return ""
    if "error" in r:
        return f"error: {r['error'][:60]}"
    p = r.get("poisoned", {})
    if "attack_failed" in r:
        return f"attack failed (PSR {_pct(p.get('poison_success_rate'))})"
    d, u = r["detection"], r.get("unlearned") or {}
    refused = next((x["unlearn_error"] for x in r.get("rounds") or [] if "unlearn_error" in x), None)
    if refused and not u:
        return f"{d['n_flagged']} flagged; not unlearned: {refused[:60]}"
    psr = f"PSR {_pct(p.get('poison_success_rate'))} → {_pct(u.get('poison_success_rate'))}"
    acc = _pct(u.get("clean_accuracy"))
    if u.get("oracle_clean_accuracy") is not None and u.get("clean_accuracy") is not None:
        acc += f" ({100 * (u['clean_accuracy'] - u['oracle_clean_accuracy']):+.1f})"
    if unlearn_only:
        return f"{psr}; {acc}; {_secs(u.get('seconds'))} s"
    quality = f"{d['n_flagged']}" + (f", P {d['precision']:.2f} R {d['recall']:.2f}" if d.get("precision") is not None
                                     else "")
    return f"{quality}; {psr}; {acc}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the cells whose files are missing")
    run.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    run.add_argument("--dataset", default="mnist5k", help="a registered dataset, used when --data-dir is ''")
    run.add_argument("--attacks", default="badnet,smooth,witches_brew")
    run.add_argument("--seeds", default="0,1,2")
    run.add_argument("--affected", default="5,1", help="affected-image counts (max_affected)")
    run.add_argument("--detectors", default=",".join(DETECTORS))
    run.add_argument("--unlearners", default=",".join(UNLEARNERS))
    run.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    run.add_argument("--budget-s", type=float, default=None, help="start no cell after this many seconds")
    run.add_argument("--max-train", type=int, default=None, help="tiny grids for tests only")
    run.add_argument("--max-test", type=int, default=None)
    run.add_argument("--epochs", type=int, default=None)
    run.add_argument("--poison-frac", type=float, default=None)
    run.add_argument("--out", default=None, help="cell folder (default bench/results/paper_grid/<data>)")
    tab = sub.add_parser("table", help="print the grid's tables from its cell files")
    tab.add_argument("--out", default=str(DEFAULT_OUT / "cifar10"))
    args = ap.parse_args(argv)
    if args.command == "table":
        print(table(list(done(Path(args.out)).values())), end="")
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir or None
    if data_dir and not os.path.isdir(data_dir):
        print(f"error: data folder {data_dir} does not exist", file=sys.stderr)
        return 2
    names = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    cells = plan(names(args.attacks), [int(s) for s in names(args.seeds)], [int(n) for n in names(args.affected)],
                 names(args.detectors), names(args.unlearners))
    slug = os.path.basename(os.path.normpath(data_dir)) if data_dir else args.dataset
    out = Path(args.out) if args.out else DEFAULT_OUT / slug

    base = base_scenario(data_dir, args.dataset, args.max_train, args.max_test, args.epochs, args.poison_frac)

    stamp = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    run_grid(cells, out, base, args.budget_s, stamp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
