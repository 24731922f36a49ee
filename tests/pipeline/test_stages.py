"""The cached stages on a tiny scenario: keys handed on, cache reuse, killed runs, bad training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from deltainf_core import Pipeline, Store, TrainConfig, delta_scores
from deltainf_core.errors import ConfigError, TrainingError
from deltainf_core.influence import ClassificationTask
from deltainf_core.pipeline import run_results


@pytest.fixture(scope="module")
def trained(pipeline, tiny_scenario):
    return pipeline.trained(tiny_scenario)


def test_poisoned_set_keeps_ground_truth_apart(pipeline, tiny_scenario):
    p = pipeline.poisoned(tiny_scenario)
    clean = pipeline.dataset(tiny_scenario.data).train
    assert len(p.poison_indices) == round(tiny_scenario.attack.poison_frac * 800)
    assert (p.train.labels[p.poison_indices] == p.target_class).all()
    assert (clean.labels[p.poison_indices] == p.victim_class).all()
    untouched = np.setdiff1d(np.arange(len(clean)), p.poison_indices)
    assert torch.equal(p.train.images[untouched], clean.images[untouched])
    assert (p.psr_set.labels == p.victim_class).all()


def test_trained_model_is_evaluated(trained):
    assert 0.5 < trained.clean_accuracy <= 1.0
    assert 0.0 <= trained.poison_success_rate <= 1.0


def test_collapse_scores_every_query_in_one_pass(pipeline, tiny_scenario, trained):
    cands = pipeline.affected_candidates(tiny_scenario)
    if cands.size == 0:
        pytest.skip("tiny model did not implant the trigger")
    affected = pipeline.affected_set(tiny_scenario, cands[:2])
    k = len(affected)
    cr = pipeline.collapse(tiny_scenario, affected)
    n_q = k + tiny_scenario.collapse.n_copies + (k - 1) * tiny_scenario.collapse.n_copies_extra
    assert cr.scores.shape == (n_q, 800) and cr.scores.dtype == np.float32
    assert np.isfinite(cr.scores).all()
    # scoring one query on its own gives the same row as scoring it inside the batch
    eng = pipeline.engine(tiny_scenario)
    alone = eng.scores(cr.queries.queries.subset([0]))
    assert np.allclose(alone[0], cr.scores[0], rtol=1e-3, atol=1e-3 * np.abs(cr.scores[0]).max())
    delta, _rows = delta_scores(cr.scores, cr.queries)
    assert delta.shape == (n_q - k, 800)
    assert (cr.queries.queries.labels[:1] == cr.target_class).all() and (cr.affected.labels == cr.target_class).all()
    assert cr.predicted.shape == (n_q,) and cr.key == eng.score_key


def test_artefacts_carry_the_keys_later_stages_build_on(pipeline, tiny_scenario, trained, monkeypatch):
    """Weights and images are hashed by no stage after the one that made them."""
    from deltainf_core import influence

    poisoned = pipeline.poisoned(tiny_scenario)
    assert poisoned.key == pipeline.poison_key(tiny_scenario) and trained.key == pipeline.model_key(tiny_scenario)

    def no_hashing(*args, **kwargs):
        raise AssertionError("a stage re-hashed weights or images")

    monkeypatch.setattr(influence, "model_fingerprint", no_hashing)
    monkeypatch.setattr(influence, "data_fingerprint", no_hashing)
    fresh = Pipeline(pipeline.store)  # no memo: every key is rebuilt from configs and handed-on keys
    eng = fresh.engine(tiny_scenario)
    assert eng.key == pipeline.engine(tiny_scenario).key  # the same content key, handed on, not re-hashed
    damped = fresh.engine(replace(tiny_scenario, influence=replace(tiny_scenario.influence, damping=1e-3)))
    assert damped.key == eng.key and damped.score_key != eng.score_key  # damping: same factors, new scores
    capped = fresh.engine(replace(tiny_scenario, influence=replace(tiny_scenario.influence, lambda_max_examples=7)))
    assert capped.key != eng.key


def test_unknown_method_parameters_are_refused_before_any_work(pipeline, tiny_scenario):
    bad_attack = replace(tiny_scenario, attack=replace(tiny_scenario.attack, params={"sise": 4}))
    with pytest.raises(ConfigError, match="unknown attack 'badnet' parameter.*sise"):
        pipeline.trained(bad_attack)
    bad_unlearner = replace(tiny_scenario, unlearn=replace(tiny_scenario.unlearn, params={"alpha": 3}))
    with pytest.raises(ConfigError, match="unknown unlearner 'eu' parameter.*alpha"):
        pipeline.unlearn(bad_unlearner, [0, 1])


def test_views_share_memos_but_not_progress(pipeline, tiny_scenario, trained):
    seen = []
    view = pipeline.with_progress(lambda stage, frac, msg: seen.append(stage))
    assert view.trained(tiny_scenario) is trained  # the shared memo
    assert view.store is pipeline.store and pipeline.progress is not view.progress
    view.engine(tiny_scenario).progress(1.0, "done")
    assert seen == ["influence"]


def test_second_pipeline_reuses_every_stage(pipeline, tiny_scenario, trained, cache_dir):
    first = run_results(pipeline, tiny_scenario)
    again = Pipeline(Store(cache_dir))
    tm = again.trained(tiny_scenario)
    assert tm.cached
    assert torch.equal(next(iter(tm.model.state_dict().values())).cpu(),
                       next(iter(trained.model.state_dict().values())).cpu())
    second = run_results(again, tiny_scenario)
    assert second["detection"]["flagged"] == first["detection"]["flagged"]
    assert second["unlearned"] == first["unlearned"]


def test_killed_training_leaves_nothing_half_written(tiny_scenario, cache_dir):
    scn = replace(tiny_scenario, train=replace(tiny_scenario.train, seed=11))

    def kill(stage, frac, msg):
        if stage == "train" and frac > 0.5:
            raise KeyboardInterrupt

    store = Store(cache_dir)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(store, kill).trained(scn)
    pipe = Pipeline(store)
    key = pipe.model_key(scn)
    assert key not in store  # no torn entry
    assert pipe.store.get(pipe.poison_key(scn)) is not None  # the finished stage survived
    tm = pipe.trained(scn)
    assert not tm.cached and key in store


def test_diverging_training_is_one_sentence(pipeline, tiny_scenario):
    scn = replace(tiny_scenario, train=TrainConfig(epochs=1, lr=1e9, seed=5))
    with pytest.raises(TrainingError, match="loss became .*lower the learning rate"):
        pipeline.trained(scn)


def test_training_is_deterministic_on_cpu(tiny_scenario, tmp_path):
    scn = replace(tiny_scenario, train=replace(tiny_scenario.train, epochs=1, seed=3))
    a = Pipeline(Store(str(tmp_path / "a"))).trained(scn).model.state_dict()
    b = Pipeline(Store(str(tmp_path / "b"))).trained(scn).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_loss_is_float64():
    """Finding 1: float32 rounds p-1 to 0 for well-fit poisons; the task must use float64."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    batch = (torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    task = ClassificationTask()
    assert task.compute_train_loss(batch, model).dtype == torch.float64
    assert task.compute_measurement(batch, model).dtype == torch.float64


def test_model_key_follows_the_poisons(pipeline, tiny_scenario, monkeypatch):
    """Changing what an attack produces (code version or parameters) must not reuse a model."""
    from deltainf_core import store as store_mod

    key = pipeline.model_key(tiny_scenario)
    other = replace(tiny_scenario, attack=replace(tiny_scenario.attack, params={"size": 5}))
    assert pipeline.model_key(other) != key
    monkeypatch.setitem(store_mod.STAGE_VERSIONS, "poison", store_mod.STAGE_VERSIONS["poison"] + 1)
    assert pipeline.model_key(tiny_scenario) != key


@pytest.mark.parametrize("batch_size, changed", [(64, False), (133, True)])
def test_only_a_training_whose_batches_changed_gets_a_new_cache_key(pipeline, tiny_scenario, monkeypatch,
                                                                   batch_size, changed):
    """Equal batches replaced a last batch of a handful of images; models cached before it stay valid (and
    are reused) wherever the batches are the old ones: 800 images in 64s end on 32, in 133s on 2."""
    import deltainf_core.pipeline.stages as stages

    scn = replace(tiny_scenario, train=replace(tiny_scenario.train, batch_size=batch_size))
    now = pipeline.model_key(scn), pipeline.unlearn_key(scn, np.arange(17), "eu", "base")
    monkeypatch.setattr(stages, "batching_key", lambda n, batch_size: ())  # the key before equal batches
    before = pipeline.model_key(scn), pipeline.unlearn_key(scn, np.arange(17), "eu", "base")
    assert (now[0] != before[0]) is changed
    # 783 retained images: 64s end on 15 (changed), 133s on 118 (as before)
    assert (now[1] != before[1]) is not changed
