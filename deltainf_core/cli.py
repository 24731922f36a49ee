"""``python -m deltainf_core run|compare ...``: the headless pipeline with terminal progress.

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

from .attacks import ATTACKS
from .config import AttackConfig, CollapseConfig, DataConfig, DetectConfig, TrainConfig, UnlearnConfig
from .data import DATASETS
from .detectors import DETECTORS
from .errors import ConfigError, DeltaInfError
from .models import MODELS
from .pipeline import Pipeline, Scenario
from .store import Store
from .unlearning import UNLEARNERS


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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"poison fraction must be in (0, 0.5], got {value}")
    return value


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _add_scenario_args(p: argparse.ArgumentParser) -> None:
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", default="mnist5k", choices=DATASETS.names(), help="registered dataset")
    data.add_argument("--data-dir", help="ImageFolder root with train/<class>/* and test/<class>/*")
    p.add_argument("--data-root", default="data", help="where torchvision datasets live / download to")
    p.add_argument("--max-train", type=int, help="keep at most this many training images")
    p.add_argument("--image-size", type=int, help="resize images to this side length")
    p.add_argument("--model", default="smallcnn", choices=MODELS.names())
    p.add_argument("--checkpoint", help="investigate this existing model file instead of training one")
    p.add_argument("--attack", default="badnet", choices=ATTACKS.names())
    p.add_argument("--poison-frac", type=_fraction, default=0.01, help="fraction of training images poisoned")
    p.add_argument("--victim-class", type=int)
    p.add_argument("--target-class", type=int)
    p.add_argument("--attack-param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="attack-specific parameter, e.g. pattern=dark4 (repeatable)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                   help="training epochs (default: auto, 12 or more on small sets)")
    p.add_argument("--seed", type=int, default=0, help="seed for poisons, training and transformations")
    p.add_argument("--detector", default="delta", choices=DETECTORS.names())
    p.add_argument("--effect-size", type=float, default=DetectConfig.effect_size,
                   help="delta: flag at pooled effect size >= this")
    p.add_argument("--copies", type=int, default=CollapseConfig.n_copies,
                   help="transformed copies of the first affected image")
    p.add_argument("--affected", type=int, default=CollapseConfig.max_affected,
                   help="use up to this many affected images")
    p.add_argument("--unlearn", default="eu", choices=UNLEARNERS.names())
    p.add_argument("--rounds", type=int, default=Scenario.max_rounds,
                   help="detect/unlearn rounds while an affected image still shows the attack")
    p.add_argument("--cache-dir", help="artefact cache (default: ./cache or $DELTAINF_CACHE)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def scenario_from_args(a: argparse.Namespace) -> Scenario:
    if a.epochs is not None and a.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {a.epochs}")
    if a.victim_class is not None and a.victim_class == a.target_class:
        raise ConfigError("victim class and target class must differ")
    data = DataConfig(dataset=a.dataset, data_dir=a.data_dir, data_root=a.data_root,
                      max_train=a.max_train, image_size=a.image_size)
    attack = AttackConfig(name=a.attack, poison_frac=a.poison_frac, victim_class=a.victim_class,
                          target_class=a.target_class, params=dict(a.attack_param), seed=a.seed)
    train = TrainConfig(model=a.model, epochs=a.epochs, seed=a.seed)
    collapse = CollapseConfig(n_copies=a.copies, max_affected=a.affected, seed=a.seed)
    detect = DetectConfig(method=a.detector, effect_size=a.effect_size)
    return Scenario(data=data, attack=attack, train=train, collapse=collapse, detect=detect,
                    unlearn=UnlearnConfig(method=a.unlearn, seed=a.seed),
                    checkpoint=a.checkpoint, max_rounds=a.rounds)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m deltainf_core",
                           description="Δ-Influence: trace a poisoning attack to its training images and unlearn them.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="scenario → model → Δ-Influence → unlearning, as JSON")
    _add_scenario_args(run)
    run.add_argument("--out", help="write results JSON here (default: print to stdout)")
    from .compare import add_compare_args

    add_compare_args(sub.add_parser("compare", help="detectors × attacks (× unlearners) table"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = TerminalProgress(enabled=not args.quiet)
    try:
        if args.command == "run":
            scn = scenario_from_args(args)
            pipe = Pipeline(Store(args.cache_dir), progress)
            result = pipe.run(scn)
            text = json.dumps(result, indent=2)
            if args.out:
                os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
                tmp = f"{args.out}.tmp"
                with open(tmp, "w") as fh:
                    fh.write(text + "\n")
                os.replace(tmp, args.out)
                progress.close()
                _summary(result, sys.stderr)
            else:
                progress.close()
                print(text)
            return 0
        from .compare import run_compare

        return run_compare(args, progress)
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
    p, d, u = r["poisoned"], r["detection"], r["unlearned"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [f"poisoned: accuracy {pct(p['clean_accuracy'])}, PSR {pct(p['poison_success_rate'])}, "
             f"{p['n_poisons']} poisons in {p['n_train']}",
             f"detection ({d['method']}): {d['n_flagged']} flagged, precision {pct(d['precision'])}, "
             f"recall {pct(d['recall'])}"]
    if r.get("unlearn_error"):
        lines.append(f"not unlearned: {r['unlearn_error']}")
    if u:
        lines.append(f"unlearned ({u['method']}): accuracy {pct(u['clean_accuracy'])}, "
                     f"PSR {pct(u['poison_success_rate'])}; oracle retrain without the true poisons: accuracy "
                     f"{pct(u['oracle_clean_accuracy'])}, PSR {pct(u.get('oracle_poison_success_rate'))}")
    stream.write("\n".join(lines) + "\n")
