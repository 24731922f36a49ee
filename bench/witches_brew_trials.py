"""Witches' Brew crafting choices: does the target flip on a victim trained from scratch?

Each trial crafts poisons with the given attack params (surrogates cached per seed under
``--work``), trains the victim with the default ``TrainConfig`` (seed 0, another seed than
any surrogate) on the poisoned set, and records the victim's p(adversarial) on the target.
Results append to ``bench/results/witches_brew_trials.jsonl`` (one JSON line per trial).

    python -m bench.witches_brew_trials --dataset mnist5k \
        --trials '[{"frac": 0.01, "params": {"target_choice": "weakest"}}]'
    python -m bench.witches_brew_trials --data-dir ../shared/data/cifar10-subset --trials '[...]'

Trial keys: ``frac`` (poison budget), ``victim``/``adv`` (classes, default 0/1), ``seed``
(attack seed), ``params`` (``AttackConfig.params``), ``victims`` (victim training seeds,
default ``[0]``; the first fills ``vic_p_adv``/``hit``) and ``clean`` (also train a clean
victim of each seed: how far the poisons moved the target).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from deltainf_core.attacks import witches_brew as wb
from deltainf_core.config import AttackConfig, DataConfig, TrainConfig
from deltainf_core.data import load_dataset
from deltainf_core.models import build_model
from deltainf_core.training import train_model


def victim_outcome(splits, train, tcfg: TrainConfig, target: int, adv: int) -> dict:
    """Train a victim from scratch on ``train`` and read its prediction on the target."""
    torch.manual_seed(tcfg.seed)
    victim = build_model(tcfg.model, splits.train.image_shape, splits.train.num_classes, splits.mean, splits.std)
    train_model(victim, train, tcfg, augment_flip=splits.augment_flip)
    with torch.no_grad():
        prob = F.softmax(victim(splits.test.images[target][None]), 1)[0]
    return {"p_adv": round(float(prob[adv]), 4), "pred": int(prob.argmax()), "hit": int(prob.argmax()) == adv}


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "witches_brew_trials.jsonl")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", default="mnist5k")
    data.add_argument("--data-dir")
    p.add_argument("--trials", required=True, help="JSON list of trials")
    p.add_argument("--work", default="cache/bench-witches-brew", help="where surrogates are cached")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args()
    name = os.path.basename(os.path.normpath(args.data_dir)) if args.data_dir else args.dataset
    splits = load_dataset(DataConfig(dataset=args.dataset, data_dir=args.data_dir))
    tcfg = TrainConfig()
    os.makedirs(args.work, exist_ok=True)
    train_surrogates = wb.train_surrogates

    def cached_surrogates(splits_, train_cfg, attack_seed, count, progress):
        """Trials on one attack seed share its surrogates (the attack's own code trains them)."""
        models = []
        for k in range(count):
            seed = wb.surrogate_seed(train_cfg, attack_seed, k)
            path = os.path.join(args.work, f"surrogate-{name}-{seed}.pt")
            if os.path.exists(path):
                models.append(torch.load(path, weights_only=False))
                continue
            model = train_surrogates(splits_, replace(train_cfg, seed=seed - 1 - attack_seed), attack_seed, 1,
                                     progress)[0]
            torch.save(model, path)
            models.append(model)
        return models

    wb.train_surrogates = cached_surrogates
    for trial in json.loads(args.trials):
        acfg = AttackConfig("witches_brew", trial.get("frac", 0.01), trial.get("victim", 0), trial.get("adv", 1),
                            dict(trial.get("params", {})), trial.get("seed", 0))
        t0 = time.perf_counter()
        scn = wb.attack(splits, acfg, tcfg, lambda _f, _m: None)
        attack_s = time.perf_counter() - t0
        info = scn.info
        target, adv = info["target_index"], info["adversarial_class"]
        victims = []
        for seed in trial.get("victims", [tcfg.seed]):
            v = {"seed": seed, **victim_outcome(splits, scn.train, replace(tcfg, seed=seed), target, adv)}
            if trial.get("clean"):
                v["clean_p_adv"] = victim_outcome(splits, splits.train, replace(tcfg, seed=seed), target, adv)["p_adv"]
            victims.append(v)
        record = {"data": name, **trial, "target": target, "target_class": info["target_true_class"],
                  "align": info["final_alignment"], "sur_p_true": info["surrogate_target_prob_true"],
                  "sur_p_adv": info["surrogate_target_prob_adversarial"],
                  "vic_p_adv": victims[0]["p_adv"], "vic_pred": victims[0]["pred"], "hit": victims[0]["hit"],
                  "attack_s": round(attack_s, 1), "total_s": round(time.perf_counter() - t0, 1)}
        if len(victims) > 1 or trial.get("clean"):
            record["victim_runs"] = victims
        print(json.dumps(record), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
