"""Where a model was trained travels with it: on the CPU torch's thread count changes the weights."""

from __future__ import annotations

import pytest
import torch

from deltainf_core import Pipeline, Store
from deltainf_core.pipeline.results import run_results
from deltainf_core.training import cached_model_note, training_environment


def test_the_cpu_environment_names_the_thread_count():
    env = training_environment("cpu")
    assert env == {"device": "cpu", "threads": torch.get_num_threads()}
    assert cached_model_note(env, "cpu") == "model from cache"
    assert cached_model_note(None, "cpu") == "model from cache"  # an entry from before it was recorded
    other = {"device": "cpu", "threads": torch.get_num_threads() + 3}
    said = cached_model_note(other, "cpu")
    assert f"threads {other['threads']}" in said and "can differ" in said


@pytest.mark.skipif(torch.cuda.is_available(), reason="the pipeline trains on the GPU there; threads matter on the CPU")
def test_a_cached_model_says_it_was_trained_with_another_thread_count(tiny_scenario, tmp_path):
    before = torch.get_num_threads()
    messages: list[str] = []
    try:
        torch.set_num_threads(1)
        first = Pipeline(Store(str(tmp_path))).trained(tiny_scenario)
        assert not first.cached and first.trained_on == {"device": "cpu", "threads": 1}
        torch.set_num_threads(2)
        pipe = Pipeline(Store(str(tmp_path)), progress=lambda stage, frac, msg: messages.append(msg))
        again = pipe.trained(tiny_scenario)
        assert again.cached and again.trained_on == {"device": "cpu", "threads": 1}
        assert any("trained with device cpu, threads 1" in m and "threads 2" in m for m in messages), messages
    finally:
        torch.set_num_threads(before)


def test_the_run_json_records_where_the_model_was_trained(pipeline, tiny_scenario):
    out = run_results(pipeline, tiny_scenario)
    assert out["poisoned"]["trained_on"]["device"] == pipeline.device.type
    assert out["poisoned"]["environment_here"] == training_environment(pipeline.device)
