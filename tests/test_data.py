"""Dataset registry entries and the ImageFolder path's errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deltainf_core import DATASETS, DataConfig, load_dataset
from deltainf_core.errors import DataError, UnknownNameError


def test_mnist5k_is_builtin_stratified_and_fixed(mnist_splits):
    s = mnist_splits
    assert len(s.train) == 4000 and len(s.test) == 1000
    assert s.train.image_shape == (1, 28, 28)
    assert float(s.train.images.min()) >= 0.0 and float(s.train.images.max()) <= 1.0
    counts = np.bincount(s.test.labels.numpy(), minlength=10)
    assert counts.min() >= 80  # every digit is represented in proportion
    again = load_dataset(DataConfig())
    assert (again.test.labels == s.test.labels).all()
    assert not s.augment_flip  # flipping digits changes their meaning


def test_caps_are_stratified():
    s = load_dataset(DataConfig(max_train=500, max_test=100))
    assert len(s.train) == 500 and len(s.test) == 100
    assert np.bincount(s.train.labels.numpy(), minlength=10).min() >= 40


TORCHVISION_CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "mnist": "MNIST",
                       "fashion_mnist": "FashionMNIST", "imagenette": "Imagenette"}


def test_every_registered_dataset_is_covered():
    assert set(DATASETS.names()) == {"mnist5k", *TORCHVISION_CLASSES}


@pytest.mark.parametrize("name", sorted(TORCHVISION_CLASSES))
def test_torchvision_sets_offline_say_where(name, tmp_path, monkeypatch):
    """Absent and not downloadable: one sentence naming the folder (online users get a download)."""
    import urllib.error

    import torchvision.datasets as tvd

    calls = []

    def offline(root, download=False, **kw):
        calls.append(download)
        if download:
            raise urllib.error.URLError("network unreachable")
        raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr(tvd, TORCHVISION_CLASSES[name], offline)
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset(DataConfig(dataset=name, data_root=str(tmp_path)))
    assert calls == [False, True]  # tried the local copy first, then a download


def test_unknown_dataset():
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'"):
        load_dataset(DataConfig(dataset="nope"))


def _folder(root, sizes, classes=("cat", "dog"), split="train", mode="RGB"):
    for c in classes:
        d = root / split / c
        d.mkdir(parents=True, exist_ok=True)
        for i, size in enumerate(sizes):
            Image.new(mode, size, color=(i * 40) % 255 if mode == "L" else (i * 40 % 255, 0, 0)).save(d / f"{i}.png")


def test_image_folder_loads(tmp_path):
    _folder(tmp_path, [(16, 16)] * 4)
    _folder(tmp_path, [(16, 16)] * 2, split="test")
    s = load_dataset(DataConfig(data_dir=str(tmp_path)))
    assert s.classes == ("cat", "dog")
    assert s.train.image_shape == (3, 16, 16) and len(s.train) == 8 and len(s.test) == 4
    assert s.augment_flip


def test_image_folder_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(data_dir=str(tmp_path / "nothing")))
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_dataset(DataConfig(data_dir=str(tmp_path)))


def test_image_folder_missing_test_split(tmp_path):
    _folder(tmp_path, [(8, 8)] * 2)
    with pytest.raises(DataError, match="missing folder .*test"):
        load_dataset(DataConfig(data_dir=str(tmp_path)))


def test_image_folder_mixed_sizes(tmp_path):
    _folder(tmp_path, [(16, 16), (20, 16)])
    _folder(tmp_path, [(16, 16)], split="test")
    with pytest.raises(DataError, match="differ in size"):
        load_dataset(DataConfig(data_dir=str(tmp_path)))
    s = load_dataset(DataConfig(data_dir=str(tmp_path), image_size=12))
    assert s.train.image_shape == (3, 12, 12)


def test_image_folder_unknown_test_class(tmp_path):
    _folder(tmp_path, [(8, 8)] * 2)
    _folder(tmp_path, [(8, 8)], classes=("cat", "bird"), split="test")
    with pytest.raises(DataError, match="classes not in train: bird"):
        load_dataset(DataConfig(data_dir=str(tmp_path)))


def test_image_folder_corrupt_image(tmp_path):
    _folder(tmp_path, [(8, 8)] * 2)
    _folder(tmp_path, [(8, 8)], split="test")
    (tmp_path / "train" / "cat" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="cannot read image .*bad.png"):
        load_dataset(DataConfig(data_dir=str(tmp_path)))


def test_cifar_subset_loads(cifar_root):
    s = load_dataset(DataConfig(data_dir=cifar_root))
    assert len(s.train) == 1900 and len(s.test) == 380
    assert s.train.image_shape == (3, 32, 32) and len(s.classes) == 10


# -- uint8 storage, the decoded-image cache and the data stage's fingerprint --------------------

def test_builtin_sets_are_uint8_and_convert_a_batch_at_a_time(mnist_splits):
    import torch

    from deltainf_core.data.base import ImageSet

    fresh = load_dataset(DataConfig(max_train=20, max_test=10))
    assert fresh.train.is_uint8 and fresh.test.is_uint8  # loaders keep 8-bit images as uint8
    s = mnist_splits.train.subset(np.arange(10)).to_uint8()
    assert s.is_uint8 and s.nbytes == 10 * 28 * 28
    batch = s.float_batch([0, 3])
    assert batch.dtype == torch.float32 and torch.equal(batch, s.pixels[[0, 3]].float() / 255)
    as_float = ImageSet(s.float_batch(), s.labels, s.classes)
    assert torch.equal(as_float.to_uint8().pixels, s.pixels)  # 8-bit images survive the round trip
    x, y = s.dataset().__getitems__([1, 2])[0]
    assert x.dtype == torch.float32 and int(y) == int(s.labels[1])
    legacy = s.clone()
    legacy.images[0, 0, 0, 0] = 0.5  # code written before uint8 storage still writes through .images
    assert float(legacy.images[0, 0, 0, 0]) == 0.5 and not legacy.is_uint8


def test_channel_stats_of_uint8_equal_the_float_path(mnist_splits):
    import torch

    from deltainf_core.data.base import channel_stats

    u = mnist_splits.train.subset(np.arange(500)).to_uint8().pixels
    exact = channel_stats(u)
    floats = channel_stats(u.float() / 255)
    assert np.allclose(exact, floats, rtol=1e-6)  # the integer sums are exact; float32 sums round
    assert channel_stats(torch.zeros(4, 1, 2, 2, dtype=torch.uint8))[1] == (1e-3,)


def test_channel_stats_of_uint8_are_exact_whatever_the_memory_layout():
    """The model's normalisation must not depend on how the pixels sit in memory (a float32 sum
    over a channels-last copy rounds differently, and SGD amplifies one ulp into another model)."""
    import torch

    from deltainf_core.data.base import channel_stats

    u = torch.randint(0, 256, (600, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    channels_last = u.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # a decoded HWC stack
    mean, std = channel_stats(u)
    assert channel_stats(channels_last) == (mean, std)
    x = u.double() / 255
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), rel=1e-13)
    assert std == pytest.approx(x.std(dim=(0, 2, 3)).tolist(), rel=1e-12)


def test_image_folder_is_decoded_once_then_memory_mapped(tmp_path, monkeypatch):
    from deltainf_core.data import image_folder

    data, cache = tmp_path / "data", tmp_path / "cache"
    _folder(data, [(8, 8)] * 3)
    _folder(data, [(8, 8)] * 2, split="test")
    first = image_folder.load(DataConfig(data_dir=str(data)), cache_dir=str(cache))
    assert first.train.is_uint8 and len(first.train) == 6
    monkeypatch.setattr(image_folder, "_decode", lambda *a: pytest.fail("decoded again"))
    second = image_folder.load(DataConfig(data_dir=str(data)), cache_dir=str(cache))
    assert np.array_equal(second.train.pixels.numpy(), first.train.pixels.numpy())
    assert second.train.labels.tolist() == first.train.labels.tolist()
    assert second.mean == first.mean and second.std == first.std


def test_image_folder_cache_is_rebuilt_when_a_file_changes(tmp_path):
    import os
    import time

    from deltainf_core.data import dataset_fingerprint, image_folder

    data, cache = tmp_path / "data", tmp_path / "cache"
    _folder(data, [(8, 8)] * 3)
    _folder(data, [(8, 8)] * 2, split="test")
    cfg = DataConfig(data_dir=str(data))
    key = dataset_fingerprint(cfg)
    before = image_folder.load(cfg, cache_dir=str(cache))
    assert dataset_fingerprint(cfg) == key  # cheap and stable while nothing changes
    img = data / "train" / "cat" / "1.png"
    Image.new("RGB", (8, 8), color=(255, 255, 255)).save(img)
    os.utime(img, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert dataset_fingerprint(cfg) != key
    after = image_folder.load(cfg, cache_dir=str(cache))
    assert int(after.train.pixels[1].min()) == 255 and int(before.train.pixels[1].max()) < 255
    assert len(list((cache / "datasets").glob("folder-*"))) == 2
    (data / "test" / "dog" / "1.png").unlink()  # a removed file changes the key too
    assert dataset_fingerprint(cfg) != key and len(image_folder.load(cfg, cache_dir=str(cache)).test) == 3


def test_damaged_decoded_cache_is_rebuilt(tmp_path, caplog):
    import logging

    from deltainf_core.data import image_folder

    data, cache = tmp_path / "data", tmp_path / "cache"
    _folder(data, [(8, 8)] * 3)
    _folder(data, [(8, 8)] * 2, split="test")
    cfg = DataConfig(data_dir=str(data))
    good = image_folder.load(cfg, cache_dir=str(cache)).train.pixels.clone()
    (arr,) = (cache / "datasets").glob("folder-*/train_x.npy")
    raw = bytearray(arr.read_bytes())
    raw[-20:] = bytes(b ^ 0xFF for b in raw[-20:])  # flipped, so the damage shows whatever the pixels were
    arr.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="deltainf"):
        again = image_folder.load(cfg, cache_dir=str(cache)).train.pixels
    assert "were corrupt" in caplog.text and np.array_equal(again.numpy(), good.numpy())


def test_builtin_fingerprint_depends_on_config_only(tmp_path):
    from deltainf_core.data import dataset_fingerprint

    assert dataset_fingerprint(DataConfig()) == dataset_fingerprint(DataConfig())
    assert dataset_fingerprint(DataConfig(max_train=100)) != dataset_fingerprint(DataConfig())
    absent = dataset_fingerprint(DataConfig(dataset="cifar10", data_root=str(tmp_path)))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"x")
    assert dataset_fingerprint(DataConfig(dataset="cifar10", data_root=str(tmp_path))) != absent


def test_with_rows_keeps_uint8_for_exact_8bit_changes_and_never_writes_the_source():
    import torch

    from deltainf_core.data.base import ImageSet

    src = ImageSet(torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8), torch.arange(6), tuple("abcdef"))
    before = src.pixels.clone()
    patch = src.float_batch([1, 3]).clone()
    patch[..., -2:, -2:] = 1.0  # a white BadNet square: exact 8-bit levels
    stamped = src.with_rows([1, 3], patch, labels=0)
    assert stamped.is_uint8 and torch.equal(stamped.float_batch([1, 3]), patch)
    assert stamped.labels.tolist() == [0, 0, 2, 0, 4, 5] and torch.equal(src.pixels, before)
    assert stamped.rows_equal(src).tolist() == [True, False, True, False, True, True]
    blurred = src.with_rows([2], src.float_batch([2]) * 0.5 + 0.001)  # not an 8-bit level: float storage
    assert not blurred.is_uint8 and torch.equal(blurred.float_batch([0]), src.float_batch([0]))
    assert blurred.rows_equal(src).tolist() == [True, True, False, True, True, True]
