"""Smooth trigger, Witches' Brew and Gaussian poisoning on tiny data: budgets, labels, determinism."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from deltainf_core.attacks import ATTACKS, smooth, witches_brew
from deltainf_core.config import AttackConfig, DataConfig, TrainConfig
from deltainf_core.data import load_dataset
from deltainf_core.errors import ConfigError
from deltainf_core.training import no_progress

TINY_TRAIN = TrainConfig(epochs=2, batch_size=64)
FAST_BREW = {"steps": 4, "restarts": 2}


@pytest.fixture(scope="module")
def tiny():
    return load_dataset(DataConfig(max_train=300, max_test=100))


def run(splits, name, params=None, seed=0, frac=0.03, train=TINY_TRAIN, **kw):
    cfg = AttackConfig(name, poison_frac=frac, params=dict(params or {}), seed=seed, **kw)
    return ATTACKS.get(name)(splits, cfg.resolved(splits.train.num_classes), train, no_progress)


# -- smooth trigger ---------------------------------------------------------------------------
def test_smooth_poisons_are_relabelled_and_within_budget(tiny):
    budget = 40 / 255
    scn = run(tiny, "smooth", {"budget": budget})
    idx = scn.poison_indices
    assert len(idx) == round(0.03 * len(tiny.train))
    assert (tiny.train.labels[idx] == scn.victim_class).all()
    assert (scn.train.labels[idx] == scn.target_class).all()
    diff = scn.train.images - tiny.train.images
    assert diff[idx].abs().max() <= budget + 1e-6
    assert diff[idx].abs().max() > 0.5 * budget  # the trigger is really there
    clean = np.setdiff1d(np.arange(len(tiny.train)), idx)
    assert torch.equal(scn.train.images[clean], tiny.train.images[clean])
    assert torch.equal(scn.train.labels[clean], tiny.train.labels[clean])
    assert scn.train.images.min() >= 0 and scn.train.images.max() <= 1
    # psr set: every victim-class test image, triggered, with its true label
    assert (scn.psr_set.labels == scn.victim_class).all()
    assert len(scn.psr_set) == int((tiny.test.labels == scn.victim_class).sum())
    assert torch.allclose(scn.psr_set.images, scn.trigger(tiny.test.images[scn.psr_source_indices]))


def test_smooth_pattern_is_low_frequency_and_flip_symmetric():
    p = smooth.low_frequency_pattern((3, 32, 32), 0.2, cutoff=4, seed=3)
    assert p.abs().max() == pytest.approx(0.2, rel=1e-5)
    assert torch.allclose(p, p.flip(-1), atol=1e-6)
    assert p.mean(dim=(1, 2)).abs().max() < 1e-6  # no constant (brightness) term
    spectrum = torch.fft.fft2(p.double()).abs()
    ky = torch.fft.fftfreq(32, d=1 / 32).abs()
    band = torch.maximum(ky.view(-1, 1), ky.view(1, -1))
    assert spectrum[:, band > 4].max() < 1e-6 * spectrum.max()


def test_smooth_is_deterministic_and_pickles(tiny):
    a, b = run(tiny, "smooth", seed=4), run(tiny, "smooth", seed=4)
    assert np.array_equal(a.poison_indices, b.poison_indices)
    assert torch.equal(a.train.images, b.train.images)
    other = run(tiny, "smooth", seed=5)
    assert not torch.equal(a.trigger_fn.pattern, other.trigger_fn.pattern)
    back = pickle.loads(pickle.dumps(a))
    x = tiny.test.images[:5]
    assert torch.equal(back.trigger(x), a.trigger(x))
    assert back.info == a.info


@pytest.mark.parametrize("params", [{"budget": 0}, {"budget": 1.5}, {"cutoff": 0}, {"cutoff": 100},
                                    {"cutoff": 2.5}, {"radius": 3}])
def test_smooth_rejects_bad_params(tiny, params):
    with pytest.raises(ConfigError):
        run(tiny, "smooth", params)


# -- Witches' Brew ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brew(tiny):
    return run(tiny, "witches_brew", {**FAST_BREW, "eps": 16 / 255}, seed=1)


def test_brew_is_clean_label_and_eps_bounded(tiny, brew):
    adversarial = brew.target_class
    assert torch.equal(brew.train.labels, tiny.train.labels)
    assert (tiny.train.labels[brew.poison_indices] == adversarial).all()
    assert len(brew.poison_indices) == round(0.03 * len(tiny.train))
    diff = brew.train.images - tiny.train.images
    assert diff.abs().max() <= 16 / 255 + 1e-6
    assert diff[brew.poison_indices].abs().amax(dim=(1, 2, 3)).min() > 0  # every poison was perturbed
    clean = np.setdiff1d(np.arange(len(tiny.train)), brew.poison_indices)
    assert torch.equal(brew.train.images[clean], tiny.train.images[clean])
    assert brew.train.images.min() >= 0 and brew.train.images.max() <= 1


def test_brew_target_is_one_test_image_with_its_true_label(tiny, brew):
    t = brew.info["target_index"]
    assert brew.psr_source_indices.tolist() == [t]
    assert len(brew.psr_set) == 1 and torch.equal(brew.psr_set.images[0], tiny.test.images[t])
    assert int(brew.psr_set.labels[0]) == int(tiny.test.labels[t]) == brew.victim_class
    assert brew.victim_class != brew.target_class
    assert -1.0 <= brew.info["final_alignment"] <= 1.0
    assert brew.trigger_fn is None


def test_brew_is_deterministic_and_pickles(tiny, brew):
    again = run(tiny, "witches_brew", {**FAST_BREW, "eps": 16 / 255}, seed=1)
    assert torch.equal(again.train.images, brew.train.images)
    assert again.info["target_index"] == brew.info["target_index"]
    back = pickle.loads(pickle.dumps(brew))
    assert torch.equal(back.train.images, brew.train.images) and back.info == brew.info


def test_brew_honours_target_index(tiny):
    t = int(np.flatnonzero(tiny.test.labels.numpy() == 7)[0])
    scn = run(tiny, "witches_brew", {"steps": 1, "target_index": t}, target_class=3)
    assert scn.info["target_index"] == t and scn.victim_class == 7 and scn.target_class == 3


def test_crafting_raises_gradient_alignment(tiny):
    from deltainf_core.models import build_model
    from deltainf_core.training import train_model

    torch.manual_seed(0)
    model = build_model("smallcnn", tiny.train.image_shape, 10, tiny.mean, tiny.std)
    train_model(model, tiny.train, TINY_TRAIN, augment_flip=False)
    model.eval()
    poisons = np.flatnonzero(tiny.train.labels.numpy() == 1)[:6]
    x, y = tiny.train.images[poisons], tiny.train.labels[poisons]
    target = int(np.flatnonzero(tiny.test.labels.numpy() == 7)[0])
    grad = witches_brew.target_gradient(model, tiny.test.images[target], 1)
    before = 1 - float(witches_brew.alignment_loss(model, x, y, grad, create_graph=False))
    delta, after = witches_brew.craft([model], x, y, [grad], eps=32 / 255, steps=10, restarts=1, augment=False,
                                      flip=False, seed=0, progress=no_progress)
    assert delta.abs().max() <= 32 / 255 + 1e-6
    assert (1 - after) < 0.9 * (1 - before)  # the cosine gap to the target gradient shrank


def test_weakest_target_and_gradient_norm_poisons(tiny):
    """The attacker's choices: a low-margin target, the adversarial-class images that still move the weights."""
    import torch.nn.functional as F

    from deltainf_core.models import build_model
    from deltainf_core.training import predict_logits, train_model

    torch.manual_seed(0)
    model = build_model("smallcnn", tiny.train.image_shape, 10, tiny.mean, tiny.std)
    train_model(model, tiny.train, TINY_TRAIN, augment_flip=False)
    model.eval()
    victims = np.flatnonzero(tiny.test.labels.numpy() == 0)
    logits = predict_logits(model, tiny.test.images[victims])
    correct = victims[(logits.argmax(1) == 0).numpy()]
    margin = {int(i): float(m) for i, m in zip(victims, logits[:, 0] - logits[:, 1], strict=True)}
    picks = {witches_brew.choose_target(tiny, model, 0, 1, s, None, "weakest") for s in range(5)}
    assert picks <= set(correct.tolist())
    assert len(picks) == min(5, max(1, len(correct) // 4))  # successive seeds, successive targets
    cut = sorted(margin[int(i)] for i in correct)[max(1, len(correct) // 4) - 1]
    assert all(margin[t] <= cut for t in picks)  # only the lowest-margin quarter is drawn from

    # over every class but the adversarial one: the target's own class is its victim class
    others = np.flatnonzero(tiny.test.labels.numpy() != 1)
    logits = predict_logits(model, tiny.test.images[others])
    true = tiny.test.labels[others]
    ok = (logits.argmax(1) == true).numpy()
    gap = (logits.gather(1, true[:, None])[:, 0] - logits[:, 1]).numpy()[ok]
    any_pick = witches_brew.choose_target(tiny, model, 0, 1, 0, None, "weakest_any_class")
    assert any_pick in set(others[ok].tolist()) and int(tiny.test.labels[any_pick]) != 1
    assert gap[others[ok].tolist().index(any_pick)] == pytest.approx(gap.min(), abs=1e-5)  # seed 0: the weakest

    # an ensemble ranks targets by its mean logits (weak for several initialisations, not one)
    torch.manual_seed(1)
    other = build_model("smallcnn", tiny.train.image_shape, 10, tiny.mean, tiny.std)
    train_model(other, tiny.train, replace(TINY_TRAIN, seed=1), augment_flip=False)
    mean = (predict_logits(model, tiny.test.images[others]) + predict_logits(other, tiny.test.images[others])) / 2
    ok = (mean.argmax(1) == true).numpy()
    gap = (mean.gather(1, true[:, None])[:, 0] - mean[:, 1]).numpy()
    pick = witches_brew.choose_target(tiny, [model, other], 0, 1, 0, None, "weakest_any_class")
    assert ok[others.tolist().index(pick)]
    assert gap[others.tolist().index(pick)] == pytest.approx(gap[ok].min(), abs=1e-5)

    chosen = witches_brew.choose_poison_images(tiny.train, model, 1, 0.03, 0, "gradient_norm")
    ones = np.flatnonzero(tiny.train.labels.numpy() == 1)
    assert len(chosen) == round(0.03 * len(tiny.train)) and set(chosen) <= set(ones)

    def norm(j):
        x, y = tiny.train.images[j : j + 1], tiny.train.labels[j : j + 1]
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        return float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))

    rest = np.setdiff1d(ones, chosen)
    assert min(norm(j) for j in chosen) >= max(norm(j) for j in rest) - 1e-6


def test_brew_with_two_surrogates_records_its_choices(tiny):
    # every class's images are candidates: the tiny ensemble gets few class-0 test images right
    scn = run(tiny, "witches_brew", {"steps": 2, "surrogates": 2, "target_choice": "weakest_any_class",
                                     "poison_choice": "gradient_norm"}, seed=1)
    assert scn.info["surrogates"] == 2 and scn.info["target_choice"] == "weakest_any_class"
    assert scn.info["poison_choice"] == "gradient_norm"
    assert (tiny.train.labels[scn.poison_indices] == scn.target_class).all()


@pytest.mark.parametrize("params", [{"eps": 0}, {"eps": 2}, {"steps": 0}, {"restarts": 1.5},
                                    {"target_index": 10_000}, {"strength": 1}, {"surrogates": 0},
                                    {"target_choice": "easiest"}, {"poison_choice": "largest"}])
def test_brew_rejects_bad_params(tiny, params):
    with pytest.raises(ConfigError):
        run(tiny, "witches_brew", {"steps": 1, **params})


def test_brew_rejects_a_target_of_the_adversarial_class(tiny):
    t = int(np.flatnonzero(tiny.test.labels.numpy() == 1)[0])
    with pytest.raises(ConfigError):
        run(tiny, "witches_brew", {"steps": 1, "target_index": t}, target_class=1)


# -- Gaussian poisoning -------------------------------------------------------------------------
def test_gaussian_adds_recorded_unclamped_noise(tiny):
    scn = run(tiny, "gaussian", {"sigma": 0.2}, frac=0.2)
    idx = scn.poison_indices
    assert scn.noise is not None and scn.noise.shape == (len(idx), *tiny.train.image_shape)
    assert torch.allclose(scn.train.images[idx], tiny.train.images[idx] + scn.noise)
    assert torch.equal(scn.train.labels, tiny.train.labels)
    assert float(scn.noise.std()) == pytest.approx(0.2, rel=0.05)
    assert scn.train.images.min() < 0  # not clamped: the test statistic relies on exact noise
    clean = np.setdiff1d(np.arange(len(tiny.train)), idx)
    assert torch.equal(scn.train.images[clean], tiny.train.images[clean])
    assert len(scn.psr_set) == 0 and scn.target_class is None
    again = run(tiny, "gaussian", {"sigma": 0.2}, frac=0.2)
    assert torch.equal(again.noise, scn.noise)
    back = pickle.loads(pickle.dumps(scn))
    assert torch.equal(back.noise, scn.noise)


@pytest.mark.parametrize("params", [{"sigma": 0}, {"sigma": -1}, {"sigma": "big"}, {"std": 0.1}])
def test_gaussian_rejects_bad_params(tiny, params):
    with pytest.raises(ConfigError):
        run(tiny, "gaussian", params)
