"""Which recorded figures came from a training whose batches ``training.epoch_batches`` changed.

Equal batches replaced a last mini-batch of fewer than a quarter of ``batch_size`` images;
every other training is bit-identical, so a recorded result is affected only where one of
its trainings had such a set size. The sizes are read from what each result records: the
training set (``n_train``, or the dataset's size), and every set a retrain left out of it
(``n_flagged``/``flagged``/``n_forget`` for EU, ``n_poisons`` for the oracle, ``narrowing`` for
delta_heldout's rounds, ``retained`` where given). Unlearners that do not train (SSD,
SCRUB, ...) are skipped; scores-only flag counts are listed too, so a hit is "possibly
affected" until the result says an EU ran on it.

    .venv/bin/python studies/batching_audit.py bench/results/*.json studies/results/*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deltainf_core.config import TrainConfig  # noqa: E402
from deltainf_core.training import equal_batches  # noqa: E402

TRAIN_SIZES = {"mnist5k": 4_000, "cifar10-subset": 1_905, "cifar": 1_905}
"""Training-set sizes of the built-in benchmark datasets (the CIFAR subset's train split)."""

TRAINERS = {"eu", "cf", "ngd"}
"""Unlearners that train on the retain set with the recipe's batches."""

BATCH_SIZE = TrainConfig().batch_size
"""The recipe's default: every audited benchmark trained with it."""


def dataset_size(name: object) -> int | None:
    text = str(name)
    return next((n for key, n in TRAIN_SIZES.items() if key in text), None)


def trainings(obj: object, n_train: int | None, path: str = "") -> Iterator[tuple[str, int]]:
    """(where, images trained on) for every training the result records a size for."""
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from trainings(v, n_train, f"{path}[{i}]")
        return
    if not isinstance(obj, dict):
        return
    if isinstance(obj.get("n_train"), int):
        n_train = obj["n_train"]
        yield f"{path}/n_train", n_train
    for key in ("dataset", "scenario"):
        if n_train is None and obj.get(key) is not None:
            n_train = dataset_size(obj[key])
    unlearner = obj.get("unlearner")
    trains = not isinstance(unlearner, str) or unlearner in TRAINERS
    if n_train is not None and trains:
        for key in ("n_flagged", "flagged", "n_poisons", "n_forget"):
            if isinstance(obj.get(key), int) and not isinstance(obj.get(key), bool):
                yield f"{path}/{key}", n_train - obj[key]
        if isinstance(obj.get("today"), list) and obj["today"] and isinstance(obj["today"][0], int):
            yield f"{path}/today", n_train - obj["today"][0]
        for i, k in enumerate(obj.get("narrowing") or []):
            yield f"{path}/narrowing[{i}]", n_train - k
    if isinstance(obj.get("retained"), int):
        yield f"{path}/retained", obj["retained"]
    for key, value in obj.items():
        if isinstance(value, dict | list):
            yield from trainings(value, n_train, f"{path}/{key}")


def audit(path: Path) -> dict:
    data = json.loads(path.read_text())
    top = dataset_size(data.get("dataset")) if isinstance(data, dict) else None
    found = list(trainings(data, top))
    hits = [(where, n) for where, n in found if equal_batches(n, BATCH_SIZE)]
    return {"file": path.name, "trainings": len(found), "changed": hits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--detail", action="store_true", help="list every changed training")
    args = ap.parse_args()
    print("| result | trainings with a recorded size | batches changed |")
    print("|---|---|---|")
    for path in args.results:
        out = audit(path)
        print(f"| {out['file']} | {out['trainings']} | {len(out['changed'])} |")
        if args.detail:
            for where, n in out["changed"]:
                print(f"|   {where} | {n} images | |")


if __name__ == "__main__":
    main()
