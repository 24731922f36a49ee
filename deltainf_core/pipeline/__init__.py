"""The investigation as cached stages, split by job.

- ``stages``: ``Pipeline``, the cached stages (the only place that knows their order);
- ``artefacts``: what the stages hand on, each with its cache key;
- ``rounds``: ``investigate``, the detect → unlearn rounds shared by the CLI and the app;
- ``results``: ``run_results``, the results JSON of the CLI (SPEC §3);
- ``memo``: the bounded in-process memo.

The CLI and every page go through these and nothing deeper; ``stages`` never imports ``rounds``
or ``results`` (they build on it).
"""

from ..config import Scenario
from .artefacts import CollapseResult, KeyedModel, TrainedModel, UnlearnOutcome
from .results import run_results
from .rounds import Investigation, Rounds, investigate
from .stages import ORACLE_UNLEARNER, Pipeline, StageProgress, quiet

__all__ = [
    "ORACLE_UNLEARNER", "CollapseResult", "Investigation", "KeyedModel", "Pipeline", "Rounds", "Scenario",
    "StageProgress", "TrainedModel", "UnlearnOutcome", "investigate", "quiet", "run_results",
]
