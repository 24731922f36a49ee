"""The detect → unlearn rounds (SPEC §4 finding 5), shared by the CLI and the app.

Each round looks for poisons with the latest model (the model under investigation first,
then the latest unlearned one), adds what it flags to the set removed so far and unlearns
that union from the model under investigation. Another round runs while an affected image
still shows the attack, the round found something new and rounds remain. Ground truth is
only used to report precision/recall, never to decide.

``Rounds`` holds that logic one step at a time, so the app (where the analyst approves
each round's set) and ``investigate`` (which approves everything) follow the same rule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..collapse import describe_checks
from ..config import Scenario
from ..detectors import DETECTORS
from ..errors import UnlearningError
from ..metrics import precision_recall, still_affected
from .artefacts import KeyedModel, UnlearnOutcome

if TYPE_CHECKING:
    from .stages import Pipeline


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class Rounds:
    """Where the rounds stand.

    base: the model under investigation (every round unlearns from it).
    max_rounds: at most this many rounds (``Scenario.max_rounds``).
    model: the model the current round looks with.
    removed: training indices removed by the earlier rounds (sorted).
    n: the current round, from 1.
    """

    base: KeyedModel
    max_rounds: int
    model: KeyedModel | None = None
    removed: np.ndarray = field(default_factory=_empty)
    n: int = 1

    def __post_init__(self) -> None:
        self.model = self.model or self.base

    def union(self, flagged: np.ndarray) -> np.ndarray:
        """What this round removes: the earlier rounds' set plus ``flagged``."""
        return np.union1d(self.removed, np.asarray(flagged, dtype=np.int64)).astype(np.int64)

    def new(self, flagged: np.ndarray) -> np.ndarray:
        """The part of ``flagged`` no earlier round removed."""
        return np.setdiff1d(np.asarray(flagged, dtype=np.int64), self.removed)

    def another_round(self, still_affected: int, forget: np.ndarray) -> bool:
        """After unlearning ``forget``: is another round warranted?"""
        found_new = self.n == 1 or self.new(forget).size > 0
        return still_affected > 0 and found_new and self.n < self.max_rounds

    def advance(self, forget: np.ndarray, outcome: KeyedModel) -> None:
        """Start the next round, looking with the unlearned model."""
        self.removed = self.union(forget)
        self.model = outcome
        self.n += 1


@dataclass
class Investigation:
    """What ``investigate`` found and did.

    affected_idx: indices into the attack's ``psr_set`` used as affected images (empty when the
        scenario names test images instead).
    affected_test_indices: the affected images' indices in the test set.
    flagged: union of every round's flagged training indices.
    outcome: the unlearned model after the last round (None if nothing was flagged).
    rounds: per-round summary (flag counts, precision/recall when known, PSR, accuracy).
    """

    affected_idx: np.ndarray
    affected_test_indices: np.ndarray
    flagged: np.ndarray
    outcome: UnlearnOutcome | None
    rounds: list[dict]
    precision: float | None
    recall: float | None
    timings: dict
    target: int | None = None
    """The class the affected images are explained as (the attack's target, or the model's prediction)."""


def investigate(pipe: Pipeline, scn: Scenario, affected_idx: np.ndarray | None = None) -> Investigation:
    """Detect → unlearn, round after round, approving everything the detector flags."""
    timings = {"factors": 0.0, "scores": 0.0, "detect": 0.0, "unlearn": 0.0}
    poisoned = pipe.poisoned(scn)
    truth = poisoned.poison_indices if len(poisoned.poison_indices) else None
    if affected_idx is None and scn.affected_test_index:
        # the analyst's picks: the target is the model's own prediction on them
        affected, target = pipe.affected_test_images(scn)
        affected_idx, test_idx = _empty(), np.asarray(scn.affected_test_index, dtype=np.int64)
    else:
        if affected_idx is None:
            affected_idx = pipe.default_affected(scn)
        affected = pipe.affected_set(scn, affected_idx)
        target = poisoned.target_class
        test_idx = np.asarray(poisoned.psr_source_indices)[np.asarray(affected_idx, dtype=np.int64)]
    rounds = Rounds(pipe.trained(scn), scn.max_rounds)
    records: list[dict] = []
    outcome: UnlearnOutcome | None = None
    flagged = _empty()
    uses_influence = DETECTORS.trait(scn.detect.detector, "needs_influence")
    while True:
        t = time.perf_counter()
        eng = None
        if uses_influence:
            eng = pipe.engine(scn, rounds.model)
            eng.fit_factors()
            timings["factors"] += time.perf_counter() - t
        t_det = time.perf_counter()
        detection = pipe.detect(scn, affected, target, rounds.model)
        spent = time.perf_counter() - t_det
        score_time = eng.score_seconds if eng is not None else 0.0
        timings["scores"] += score_time
        timings["detect"] += max(0.0, spent - score_time)
        new_flags = rounds.new(detection.flagged)
        flagged = rounds.union(detection.flagged)
        if flagged.size == 0:
            break
        precision, recall = precision_recall(flagged, truth)
        record = {"round": rounds.n, "n_flagged": int(flagged.size), "new_flags": int(new_flags.size),
                  "precision": precision, "recall": recall}
        record.update(describe_checks(detection.info))
        t_u = time.perf_counter()
        try:
            outcome = pipe.unlearn(scn, flagged)
        except UnlearningError as err:
            # e.g. the rule flagged a whole class: report the detection, say why nothing was unlearned
            records.append({**record, "unlearn_error": str(err)})
            break
        timings["unlearn"] += time.perf_counter() - t_u
        n_still = still_affected(outcome.model, affected, target)
        records.append({**record, "poison_success_rate": outcome.poison_success_rate,
                        "clean_accuracy": outcome.clean_accuracy, "affected_still_target": n_still,
                        "seconds": time.perf_counter() - t})
        if not rounds.another_round(n_still, flagged):
            break
        rounds.advance(flagged, outcome)
    precision, recall = precision_recall(flagged, truth)
    return Investigation(np.asarray(affected_idx), test_idx.astype(np.int64), flagged, outcome, records, precision,
                         recall, timings, target)
