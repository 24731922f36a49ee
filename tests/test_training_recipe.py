"""How many epochs a training run gets, and that EU repeats the original recipe."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from deltainf_core.config import AUTO_EPOCHS, TrainConfig
from deltainf_core.errors import ConfigError


def test_auto_epochs_keep_the_default_on_large_sets():
    cfg = TrainConfig()
    assert cfg.epochs is None
    assert cfg.epochs_for(50_000) == AUTO_EPOCHS


def test_auto_epochs_give_small_sets_enough_steps():
    cfg = TrainConfig(min_steps=600, batch_size=128)
    # 1,900 images: 15 mini-batches an epoch, so 40 epochs reach 600 steps.
    assert cfg.epochs_for(1_900) == 40
    for n in (1, 100, 1_900, 4_000, 7_000):
        epochs = cfg.epochs_for(n)
        assert epochs >= AUTO_EPOCHS
        assert epochs * math.ceil(n / 128) >= 600


def test_explicit_epochs_are_exact_and_validated():
    assert TrainConfig(epochs=3).epochs_for(10) == 3
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        TrainConfig(epochs=0).validate()


def test_eu_retrains_with_the_original_epoch_count(tiny_scenario, pipeline):
    # 800 images in batches of 133 are 7 steps an epoch, the 797 retained ones 6: the
    # retrain must run the original run's 15 epochs, not 17 recomputed for 797.
    scn = replace(tiny_scenario, train=replace(tiny_scenario.train, epochs=None, batch_size=133,
                                               min_steps=100))
    n_train = len(pipeline.poisoned(scn).train)
    assert n_train == 800 and scn.train.epochs_for(n_train) == 15
    out = pipeline.unlearn(scn, [0, 1, 2], method="eu")
    assert out.info["epochs"] == 15
    assert out.info["retained"] == 797


def test_uint8_and_float_storage_train_the_same_model(mnist_splits):
    """Images become float a batch at a time: uint8 storage must not change a single weight."""
    import numpy as np
    import torch

    from deltainf_core.data.base import ImageSet
    from deltainf_core.models import build_model
    from deltainf_core.training import predict_logits, train_model

    u8 = mnist_splits.train.subset(np.arange(256)).to_uint8()
    f32 = ImageSet(u8.float_batch(), u8.labels, u8.classes)
    cfg = TrainConfig(epochs=1, batch_size=64)
    models = []
    for data in (u8, f32):
        torch.manual_seed(0)
        m = build_model("smallcnn", data.image_shape, 10, mnist_splits.mean, mnist_splits.std)
        train_model(m, data, cfg, augment_flip=False, device=torch.device("cpu"))
        models.append(m)
    a, b = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(predict_logits(models[0], u8), predict_logits(models[0], f32.images))


def test_training_on_rows_equals_training_on_the_copied_subset(mnist_splits):
    """EU trains on the retain set's rows instead of a copy of it: not a single weight may differ."""
    import numpy as np
    import torch

    from deltainf_core.models import build_model
    from deltainf_core.training import train_model

    data = mnist_splits.train.subset(np.arange(300)).to_uint8()
    keep = data.rows_without([0, 5, 17, 18, 250])
    assert len(keep) == 295 and torch.equal(data.without([0, 5, 17, 18, 250]).pixels, data.subset(keep).pixels)
    cfg = TrainConfig(epochs=2, batch_size=64)
    models = []
    for source, rows in ((data.subset(keep), None), (data, keep)):
        torch.manual_seed(0)
        m = build_model("smallcnn", data.image_shape, 10, mnist_splits.mean, mnist_splits.std)
        train_model(m, source, cfg, augment_flip=True, device=torch.device("cpu"), rows=rows)
        models.append(m)
    a, b = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_training_runs_on_cpu_and_unknown_precision_is_refused(mnist_splits):
    import numpy as np
    import torch

    from deltainf_core.models import build_model
    from deltainf_core.training import train_model

    data = mnist_splits.train.subset(np.arange(128))
    torch.manual_seed(0)
    m = build_model("smallcnn", data.image_shape, 10, mnist_splits.mean, mnist_splits.std)
    stats = train_model(m, data, replace(TrainConfig(epochs=1, batch_size=64), precision="bf16"),
                        augment_flip=False, device=torch.device("cpu"))
    assert math.isfinite(stats.final_loss)
    with pytest.raises(ConfigError, match="precision must be one of"):
        train_model(m, data, replace(TrainConfig(epochs=1), precision="fp8"), device=torch.device("cpu"))


@pytest.mark.parametrize("n, sizes", [
    (1_905, [128] * 14 + [113]),  # the CIFAR subset: a last batch of 113 stands
    (4_000, [128] * 31 + [32]),   # mnist5k: 32 is a quarter of 128, it stands
    (1_670, [120] * 4 + [119] * 10),  # a retain set whose last batch would hold 6
    (129, [65, 64]),
    (100, [100]),
])
def test_an_epoch_never_trains_on_a_handful_of_images_alone(n, sizes):
    import torch

    from deltainf_core.training import epoch_batches

    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    batches = epoch_batches(order, 128)
    assert [len(b) for b in batches] == sizes
    assert torch.equal(torch.cat(batches), order)  # every image once, in order
    assert len(batches) == math.ceil(n / 128)  # the schedule's step count is unchanged


def test_a_batchnorm_model_trains_when_one_image_would_be_left_over():
    """A last batch of one image is an error for BatchNorm in training mode; it must never be formed."""
    import torch
    from torch import nn

    from deltainf_core.data.base import ImageSet
    from deltainf_core.training import train_model

    gen = torch.Generator().manual_seed(0)
    data = ImageSet(torch.rand(65, 1, 4, 4, generator=gen), torch.randint(0, 2, (65,), generator=gen), ["a", "b"])
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    stats = train_model(model, data, TrainConfig(epochs=2, batch_size=64, augment=False),
                        augment_flip=False, device=torch.device("cpu"))
    assert math.isfinite(stats.final_loss)
