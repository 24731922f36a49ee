"""``python -m deltainf_core run|compare ...`` (or ``deltainf``): the headless pipeline with terminal progress.

Both commands take the same scenario flags, generated from the configs (``flags``).
Bad input ends in one line on stderr and a non-zero status — never a traceback
(``--debug`` shows one). Finished stages stay cached when a run is interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Only light modules at import time: main() checks the paths on the command line before
# torch, torchvision and kronfluence are loaded (seconds), so a bad path fails at once.
from .errors import ConfigError, DeltaInfError
from .paths import check_cache_dir, check_paths_in_argv, check_run_outputs

if TYPE_CHECKING:
    from .flags import Flag
    from .registry import Registry


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the contract for bad input)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see --help)\n")


class TerminalProgress:
    """One updating line per stage on a terminal; one line per finished stage otherwise."""

    def __init__(self, stream=sys.stderr, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.stage = None
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, stage: str, frac: float, msg: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if stage != self.stage and self.stage is not None:
                self.stream.write("\n")
            bar = "#" * int(20 * min(max(frac, 0.0), 1.0))
            self.stream.write(f"\r[{now - self.start:7.1f}s] {stage:<9} [{bar:<20}] {msg[:70]:<70}")
            self.stream.flush()
        elif frac >= 1.0 or stage != self.stage or now - self.last > 10:
            self.stream.write(f"[{now - self.start:7.1f}s] {stage:<9} {100 * frac:5.1f}% {msg}\n")
            self.stream.flush()
            self.last = now
        self.stage = stage

    def close(self) -> None:
        if self.enabled and self.tty and self.stage is not None:
            self.stream.write("\n")


def _common(p: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> list[Flag]:
    from .flags import add_compute_flags, add_scenario_flags

    p.add_argument("--seed", type=int, default=0,
                   help="seed for poisons, training, copies and unlearning unless a stage's own seed is given")
    p.add_argument("--cache-dir", help="artefact cache (default: ./cache or $DELTAINF_CACHE)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(compute_flags=add_compute_flags(p))
    return add_scenario_flags(p, exclude)


def _pipeline(args: argparse.Namespace, cache: str, progress: TerminalProgress):
    """The pipeline on the engine the compute flags name: a Ray cluster is joined here, before any work."""
    from .flags import compute_from_args
    from .pipeline import Pipeline
    from .scaleout.executor import executor_for
    from .store import Store

    executor = executor_for(compute_from_args(args, args.compute_flags), cache)  # before the store is opened
    return Pipeline(Store(cache), progress, executor=executor)


def build_parser() -> argparse.ArgumentParser:
    from .attacks import ATTACKS
    from .config import UnlearnConfig

    parser = OneLineParser(prog="deltainf",
                           description="Δ-Influence: trace a poisoning attack to its training images and unlearn them.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="scenario → model → Δ-Influence → unlearning, as JSON")
    run.set_defaults(flags=_common(run))
    run.add_argument("--out", help="write results JSON here (default: print to stdout)")
    run.add_argument("--report", help="also write a self-contained HTML report for stakeholders here")
    cmp = sub.add_parser("compare", help="detectors × attacks (× unlearners) table")
    cmp.set_defaults(flags=_common(cmp, exclude=("attack.attack", "detect.detector", "unlearn.method")))
    cmp.add_argument("--attacks", default=",".join(ATTACKS.names(has_success_rate=True)),
                     help="comma list or 'all' (the attacks with a success rate)")
    cmp.add_argument("--detectors", default="all", help="comma list or 'all'")
    cmp.add_argument("--unlearners", default=UnlearnConfig().method,
                     help="comma list or 'all' (Figure 4 on Δ-Influence's set)")
    cmp.add_argument("--brew-targets", type=int, default=1,
                     help="targets per cell of a per-target attack (attack seeds seed..seed+K-1); PSR = share hit")
    cmp.add_argument("--out-dir", default="results", help="where compare-*.json, .md and .png go")
    return parser


def _names(text: str, registry: Registry) -> list[str]:
    if text == "all":
        return registry.names()
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        registry.entry(n)
    return names


def _write(path: str, text: str) -> None:
    """Atomically: a reader never sees half a file, and a failure leaves nothing behind."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _run(args: argparse.Namespace, progress: TerminalProgress) -> int:
    # Every path is checked before any work: a bad one costs a second, not a training run.
    from .flags import scenario_from_args
    from .pipeline.results import run_results
    from .store import default_cache_dir

    out, report = check_run_outputs(args.out, args.report)
    cache = check_cache_dir(args.cache_dir or default_cache_dir())
    if report is not None:
        from .report import collect, write_report  # imported now: a broken install fails before the work
    scn = scenario_from_args(args, args.flags)
    pipe = _pipeline(args, cache, progress)
    result = run_results(pipe, scn)
    text = json.dumps(result, indent=2)
    if out is None:
        progress.close()
        print(text)
    else:
        _write(out, text)
    if report is not None:
        write_report(collect(pipe, scn, result), report)
    progress.close()
    if out is not None:
        _summary(result, sys.stderr)
    if report is not None:
        print(f"wrote the report {report}", file=sys.stderr)
    return 0


def _compare(args: argparse.Namespace, progress: TerminalProgress) -> int:
    from .attacks import ATTACKS
    from .compare import run_comparison
    from .detectors import DETECTORS
    from .flags import scenario_from_args
    from .store import default_cache_dir
    from .unlearning import UNLEARNERS

    attacks = [a for a in _names(args.attacks, ATTACKS) if ATTACKS.trait(a, "has_success_rate")]
    if not attacks:
        raise ConfigError("choose at least one attack with a success rate "
                          f"({', '.join(ATTACKS.names(has_success_rate=True))})")
    out_dir = check_cache_dir(args.out_dir, "--out-dir")
    cache = check_cache_dir(args.cache_dir or default_cache_dir())
    base = scenario_from_args(args, args.flags, strict=False)
    result = run_comparison(base, attacks, _names(args.detectors, DETECTORS), _names(args.unlearners, UNLEARNERS),
                            progress, out_dir, _pipeline(args, cache, progress),
                            brew_targets=args.brew_targets)
    progress.close()
    print(result["markdown"])
    print(f"wrote {result['json_path']} and {result['figure_png']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        check_paths_in_argv(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = TerminalProgress(enabled=not args.quiet)
    try:
        return _run(args, progress) if args.command == "run" else _compare(args, progress)
    except DeltaInfError as err:
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        if args.debug:
            raise
        return 2
    except KeyboardInterrupt:
        progress.close()
        print("error: interrupted; finished stages are cached and will be reused", file=sys.stderr)
        return 130
    except Exception as err:
        progress.close()
        if args.debug:
            raise
        print(f"error: unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
              "(rerun with --debug for details)", file=sys.stderr)
        return 1


def _summary(r: dict, stream) -> None:
    from .collapse import CHECK_SENTENCES  # imported late, like everything that pulls in torch

    p, d, u = r["poisoned"], r["detection"], r["unlearned"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [f"poisoned: accuracy {pct(p['clean_accuracy'])}, PSR {pct(p['poison_success_rate'])}, "
             f"{p['n_poisons']} poisons in {p['n_train']}",
             f"detection ({d['method']}): {d['n_flagged']} flagged, precision {pct(d['precision'])}, "
             f"recall {pct(d['recall'])}"]
    lines += [f"round {rec['round']}: {rec[k]}" for rec in r.get("rounds") or []
              for k in CHECK_SENTENCES if rec.get(k)]  # what a rule's second check did
    if r.get("unlearn_error"):
        lines.append(f"not unlearned: {r['unlearn_error']}")
    if u:
        oracle = ("" if u["oracle_clean_accuracy"] is None else "; oracle retrain without the true poisons: "
                  f"accuracy {pct(u['oracle_clean_accuracy'])}, PSR {pct(u.get('oracle_poison_success_rate'))}")
        lines.append(f"unlearned ({u['method']}): accuracy {pct(u['clean_accuracy'])}, "
                     f"PSR {pct(u['poison_success_rate'])}{oracle}")
        if u.get("recipe_note"):
            lines.append(u["recipe_note"])
    stream.write("\n".join(lines) + "\n")

