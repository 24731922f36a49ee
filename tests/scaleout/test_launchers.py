"""One DistributedDataParallel loop, launched by torchrun (local engine) or Ray Train (ray engine): two processes
train a model that the investigation then runs on, and both launchers give the same weights.

Slow: each job starts two processes (torchrun) or a Ray cluster and two Ray Train workers.
The world size is recorded with the model and keys it; one process is today's loop and keys.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltainf_core.config import ComputeConfig
from deltainf_core.errors import ConfigError
from deltainf_core.pipeline import Pipeline
from deltainf_core.scaleout.executor import executor_for
from deltainf_core.scaleout.launchers import TorchrunLauncher
from deltainf_core.store import Store
from deltainf_core.training import Replica


def test_replicas_split_every_batch_into_contiguous_slices():
    parts = [Replica(r, 3).part(10).tolist() for r in range(3)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert Replica().part(5).tolist() == list(range(5)) and Replica.current() == Replica()


def test_a_batch_too_small_for_the_workers_is_refused(tmp_path, mnist_splits, tiny_scenario):
    launcher = TorchrunLauncher(str(tmp_path), 8)
    cfg = tiny_scenario.train.__class__(batch_size=16)
    with pytest.raises(ConfigError, match="8 training workers need a batch size of at least 32"):
        launcher(torch.nn.Linear(1, 1), mnist_splits.train, cfg)


def _investigate(scn, pipe: Pipeline) -> dict:
    trained = pipe.trained(scn)
    poisoned = pipe.poisoned(scn)
    affected = pipe.affected_set(scn, np.arange(3))
    detection = pipe.detect(scn, affected, target_class=poisoned.target_class)
    return {"trained": trained, "flagged": detection.flagged, "weights": trained.model.state_dict()}


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def torchrun_run(tiny_scenario, tmp_path_factory, one_thread):
    cache = str(tmp_path_factory.mktemp("torchrun"))
    pipe = Pipeline(Store(cache), executor=executor_for(ComputeConfig(train_workers=2), cache))
    return _investigate(tiny_scenario, pipe) | {"pipe": pipe}


@pytest.mark.slow
def test_torchrun_trains_a_model_the_investigation_runs_on(torchrun_run, pipeline, tiny_scenario):
    trained = torchrun_run["trained"]
    assert trained.trained_on["world_size"] == 2
    assert trained.key != pipeline.model_key(tiny_scenario)  # other arithmetic, another key
    assert trained.clean_accuracy > 0.5
    assert len(torchrun_run["flagged"]) > 0
    oracle = torchrun_run["pipe"].oracle(tiny_scenario)  # EU's retrain is the same two-process job
    poisons = torchrun_run["pipe"].poisoned(tiny_scenario).poison_indices
    assert oracle.key != pipeline.unlearn_key(tiny_scenario, poisons, "eu", trained.key)  # keyed by its world size
    assert oracle.clean_accuracy > 0.5


@pytest.mark.slow
def test_ray_train_gives_torchruns_weights(torchrun_run, tiny_scenario, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, log_to_driver=False)
    try:
        cache = str(tmp_path)
        pipe = Pipeline(Store(cache), executor=executor_for(ComputeConfig(engine="ray", train_workers=2), cache))
        got = _investigate(tiny_scenario, pipe)
    finally:
        ray.shutdown()
    assert got["trained"].trained_on["world_size"] == 2 and got["trained"].key == torchrun_run["trained"].key
    for name, t in torchrun_run["weights"].items():
        assert torch.equal(got["weights"][name], t), name  # one loop, whichever launcher started it
    np.testing.assert_array_equal(got["flagged"], torchrun_run["flagged"])
