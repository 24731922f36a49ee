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
