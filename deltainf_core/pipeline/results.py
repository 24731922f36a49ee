"""The results JSON of ``python -m deltainf_core run`` (the SPEC §3 contract).

Everything here reads artefacts the stages made; nothing is computed twice. Extra
keys beyond the contract (rounds, oracle PSR, attack info, timings per stage) are
what the benchmarks and the Compare page read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..config import Scenario
from ..training import training_environment
from ..unlearning import UNLEARNERS
from ..unlearning.verdict import unlearning_verdict
from .artefacts import TrainedModel, UnlearnOutcome, jsonable
from .rounds import investigate

if TYPE_CHECKING:
    from .stages import Pipeline


def run_results(pipe: Pipeline, scn: Scenario) -> dict:
    """Train (or load), investigate, unlearn and report, as one JSON-able dict."""
    t0 = time.perf_counter()
    tm = pipe.trained(scn)
    poisoned = pipe.poisoned(scn)
    timings = {"train": time.perf_counter() - t0}
    result: dict = {
        "scenario": {**scenario_summary(pipe, scn), "config": scn.as_dict()},
        "poisoned": {
            "clean_accuracy": tm.clean_accuracy,
            "poison_success_rate": tm.poison_success_rate,
            "n_train": len(poisoned.train),
            "n_poisons": len(poisoned.poison_indices),
            "attack_info": jsonable(poisoned.info),
            "gaussian": pipe.gaussian_check(scn, tm.model),
            "trained_on": tm.trained_on,
            "environment_here": training_environment(pipe.device),
        },
        "device": str(pipe.device),
    }
    if poisoned.noise is not None and len(poisoned.psr_set) == 0:
        # Gaussian poisoning has no affected image: unlearn the known noisy images and report
        # the statistic, which shows whether their trace is gone.
        t = time.perf_counter()
        out = pipe.unlearn(scn, poisoned.poison_indices)
        timings.update({"factors": 0.0, "scores": 0.0, "detect": 0.0, "unlearn": time.perf_counter() - t})
        result.update({"affected_test_index": None, "affected_test_indices": [],
                       "detection": {"method": "known (gaussian audit)", "flagged": poisoned.poison_indices.tolist(),
                                     "n_flagged": len(poisoned.poison_indices), "precision": 1.0, "recall": 1.0},
                       "rounds": [], "unlearned": unlearned_json(out, tm, None)})
    else:
        inv = investigate(pipe, scn)
        timings.update(inv.timings)
        result.update({
            "affected_test_index": int(inv.affected_test_indices[0]),
            "affected_test_indices": [int(i) for i in inv.affected_test_indices],
            "affected_target_class": inv.target,
            "detection": {
                "method": scn.detect.detector, "flagged": inv.flagged.tolist(), "n_flagged": int(inv.flagged.size),
                "flagged_fraction": float(inv.flagged.size / len(poisoned.train)),
                "precision": inv.precision, "recall": inv.recall,
            },
            "rounds": inv.rounds,
            "unlearned": None,
        })
        if inv.rounds and "unlearn_error" in inv.rounds[-1]:
            result["unlearn_error"] = inv.rounds[-1]["unlearn_error"]
        if inv.outcome is not None:
            t = time.perf_counter()
            oracle = pipe.oracle(scn)
            timings["oracle"] = time.perf_counter() - t
            result["unlearned"] = unlearned_json(inv.outcome, tm, oracle)
            result["unlearned"].update(recipe_json(pipe, scn, inv.outcome.method))
    result["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    result["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
    return result


def unlearned_json(out: UnlearnOutcome, tm: TrainedModel, oracle: UnlearnOutcome | None) -> dict:
    """The unlearning run with its verdict in words (SPEC §3), so a surviving attack is never just a number."""
    verdict = unlearning_verdict(out.method, out.info, out.poison_success_rate, tm.poison_success_rate,
                                 None if oracle is None else oracle.poison_success_rate,
                                 out.clean_accuracy - tm.clean_accuracy)
    return {
        "method": out.method, "clean_accuracy": out.clean_accuracy,
        "poison_success_rate": out.poison_success_rate,
        "oracle_clean_accuracy": None if oracle is None else oracle.clean_accuracy,
        "oracle_poison_success_rate": None if oracle is None else oracle.poison_success_rate,
        "accuracy_change": out.clean_accuracy - tm.clean_accuracy,
        "seconds": out.seconds, "passes": out.passes, "info": jsonable(out.info),
        "gaussian": out.gaussian, "version": UNLEARNERS.version(out.method),
        "retrains_from_scratch": bool(UNLEARNERS.trait(out.method, "from_scratch")),
        "removed": verdict["removed"], "verdict": verdict["text"], "note": out.info.get("note"),
    }


def recipe_json(pipe: Pipeline, scn: Scenario, method: str) -> dict:
    """How the unlearner trained: this tool's recipe, which for a loaded checkpoint is not the one that made it."""
    cfg = scn.train
    recipe = {"architecture": cfg.model, "epochs": cfg.epochs_for(len(pipe.poisoned(scn).train)),
              "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": "SGD with Nesterov momentum, one-cycle"}
    out: dict = {"recipe": recipe}
    if scn.checkpoint:
        how = "retrained from scratch" if UNLEARNERS.trait(method, "from_scratch") else "fine-tuned"
        out["recipe_note"] = (f"{method} {how} the checkpoint's architecture ({cfg.model}) with this tool's training "
                              "recipe on the given data, not with the recipe that produced the checkpoint")
    return out


def scenario_summary(pipe: Pipeline, scn: Scenario) -> dict:
    """The options a reader looks for first, by their CLI names (the full configs follow)."""
    acfg = pipe.attack_config(scn)
    epochs = scn.train.epochs_for(len(pipe.dataset(scn.data).train))
    return {
        "dataset": scn.data.dataset if not scn.data.data_dir else None,
        "data_dir": scn.data.data_dir, "model": scn.train.model, "attack": acfg.attack,
        "poison_frac": acfg.poison_frac, "victim_class": acfg.victim_class,
        "target_class": acfg.target_class, "epochs": epochs, "seed": scn.train.seed,
        "detector": scn.detect.detector, "unlearn": scn.unlearn.method, "checkpoint": scn.checkpoint,
    }
