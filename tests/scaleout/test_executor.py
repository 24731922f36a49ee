"""Where work runs never changes what a key says: the local engine keeps today's keys, the ray engine shares
them, and only a training of more than one process adds its world size (to the model's and EU's keys)."""

from __future__ import annotations

import argparse

import pytest

from deltainf_core.config import ComputeConfig, stable_hash
from deltainf_core.errors import ConfigError
from deltainf_core.flags import add_compute_flags, compute_from_args
from deltainf_core.models import architecture_key
from deltainf_core.pipeline import Pipeline
from deltainf_core.scaleout.executor import LOCAL, Executor, executor_for
from deltainf_core.training import batching_key
from deltainf_core.unlearning import UNLEARNERS


def test_the_local_engine_keeps_todays_keys(pipeline, tiny_scenario):
    scn = tiny_scenario
    assert pipeline.executor is LOCAL and LOCAL.world_key() == () and LOCAL.runner is None
    poisoned = pipeline.poisoned(scn)
    batching = batching_key(len(poisoned.train), scn.train.batch_size)
    today = pipeline.store.key("train", pipeline.poison_key(scn), scn.train, architecture_key(scn.train.model_spec()),
                               *batching)
    assert pipeline.model_key(scn) == today  # the formula of every key cached before the executor existed
    forget = [3, 1]
    cfg = scn.unlearn_config()
    retain_batching = batching_key(len(poisoned.train) - 2, scn.train.batch_size)
    assert pipeline.unlearn_key(scn, forget) == pipeline.store.key(
        "unlearn", today, [1, 3], cfg, scn.train, UNLEARNERS.version(cfg.method),
        *retain_batching)


def test_the_ray_engine_shares_every_key(pipeline, tiny_scenario):
    ray = Pipeline(pipeline.store, executor=Executor(ComputeConfig(engine="ray"), runner=object()))  # type: ignore[arg-type]
    assert ray.model_key(tiny_scenario) == pipeline.model_key(tiny_scenario)
    assert ray.unlearn_key(tiny_scenario, [5]) == pipeline.unlearn_key(tiny_scenario, [5])
    assert ray.engine(tiny_scenario).key == pipeline.engine(tiny_scenario).key  # factor and score names


def test_a_distributed_training_keys_its_world_size(pipeline, tiny_scenario):
    two = Pipeline(pipeline.store, executor=Executor(ComputeConfig(train_workers=2)))
    assert two.executor.world_key() == ("world-size", 2)
    assert two.model_key(tiny_scenario) != pipeline.model_key(tiny_scenario)
    base = stable_hash("some model")
    assert two.unlearn_key(tiny_scenario, [5], "eu", base) != pipeline.unlearn_key(tiny_scenario, [5], "eu", base)
    # an unlearner that fine-tunes in this process is the same computation whatever the world size
    assert two.unlearn_key(tiny_scenario, [5], "cf", base) == pipeline.unlearn_key(tiny_scenario, [5], "cf", base)


def _parse(*argv: str) -> ComputeConfig:
    parser = argparse.ArgumentParser()
    flags = add_compute_flags(parser)
    return compute_from_args(parser.parse_args(list(argv)), flags)


def test_compute_flags_come_from_the_config():
    assert _parse() == ComputeConfig()
    assert _parse("--engine", "ray", "--ray-address", "10.0.0.5:6379", "--unit-cpus", "2", "--train-workers", "4") \
        == ComputeConfig("ray", "10.0.0.5:6379", 2, 4)
    with pytest.raises(ConfigError, match="needs the ray engine"):
        _parse("--ray-address", "10.0.0.5:6379")
    with pytest.raises(ConfigError, match="train_workers must be at least 1"):
        _parse("--train-workers", "0")


def test_local_with_one_worker_is_todays_executor(tmp_path):
    ex = executor_for(ComputeConfig(), str(tmp_path))
    assert ex.runner is None and ex.launcher is None and ex.world_size() == 1
    torchrun = executor_for(ComputeConfig(train_workers=2), str(tmp_path))
    assert torchrun.runner is None and type(torchrun.launcher).__name__ == "TorchrunLauncher"
    assert torchrun.world_size("cf") == 1 and torchrun.world_size("eu") == 2
