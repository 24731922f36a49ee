"""Checkpoints: round trips, plain state dicts as users save them, and every bad file in one sentence."""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

from deltainf_core import build_model, checkpoint_bytes, load_checkpoint
from deltainf_core.checkpoints import checkpoint_spec, read_checkpoint, save_checkpoint, store_upload
from deltainf_core.data.base import DatasetSplits, ImageSet
from deltainf_core.errors import CheckpointError
from deltainf_core.models import ModelSpec

FIXTURE = str(Path(__file__).resolve().parent / "fixtures" / "cifar_resnet.py")
NOT_A_CHECKPOINT = ("is not a readable PyTorch checkpoint: expected a state_dict saved with "
                    "torch.save(model.state_dict(), path) (.pt/.pth) or a .safetensors file")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/deltainf-pwned",))


@pytest.fixture(scope="module")
def small_splits(mnist_splits):
    return mnist_splits


@pytest.fixture(scope="module")
def rgb_splits():
    """Four classes of 3×32×32 noise: enough to build, save and load colour models."""
    gen = torch.Generator().manual_seed(0)
    def part(n):
        return ImageSet(torch.rand(n, 3, 32, 32, generator=gen), torch.arange(n) % 4, ("a", "b", "c", "d"))
    return DatasetSplits("rgb", part(16), part(8), (0.5,) * 3, (0.25,) * 3)


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def same_logits(a, b, x) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_round_trip(small_splits, fmt):
    s = small_splits
    torch.manual_seed(0)
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    blob = checkpoint_bytes(m, "smallcnn", s.classes, fmt=fmt)
    back = load_checkpoint(blob, "smallcnn", s)
    assert same_logits(m, back, s.test.images[:4])
    assert same_logits(m, load_checkpoint(blob, None, s), s.test.images[:4])  # it describes itself


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_of_the_analysts_model_keeps_spec_and_normalisation(rgb_splits, tmp_path, suffix):
    spec = ModelSpec(f"{FIXTURE}:CifarResNet", {"width": 4}, 1, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    torch.manual_seed(1)
    m = build_model(spec, (3, 32, 32), 4)
    path = str(tmp_path / f"mine{suffix}")
    save_checkpoint(m, path, rgb_splits.classes)
    assert checkpoint_spec(path) == spec
    back = load_checkpoint(path, None, rgb_splits)
    assert same_logits(m, back, rgb_splits.test.images)
    assert back.normalize.values() == m.normalize.values() and back.output == 1


def test_torchvision_round_trip(rgb_splits):
    torch.manual_seed(2)
    m = build_model("torchvision:resnet18", (3, 32, 32), 4, rgb_splits.mean, rgb_splits.std)
    back = load_checkpoint(checkpoint_bytes(m, None, rgb_splits.classes), "torchvision:resnet18", rgb_splits)
    assert same_logits(m, back, rgb_splits.test.images) and back.arch.small_images


def test_version_1_checkpoints_still_load(small_splits):
    s = small_splits
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    v1 = {"format": "deltainf-checkpoint-v1", "model": "smallcnn", "classes": list(s.classes),
          "state_dict": m.state_dict()}
    assert same_logits(m, load_checkpoint(saved(v1), "smallcnn", s), s.test.images[:4])


# -- plain state dicts, as the analyst saved them ----------------------------------------------
def test_bare_backbone_state_dict(small_splits, tmp_path):
    s = small_splits
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    path = tmp_path / "backbone.pt"
    torch.save(m.backbone.state_dict(), path)
    back = load_checkpoint(str(path), "smallcnn", s)
    assert torch.equal(back.backbone.fc.weight, m.backbone.fc.weight)
    x = s.test.images[:4]
    assert torch.equal(back.normalize(x), x)  # a plain state_dict says nothing: raw pixels


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel
    lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},  # torch.compile
    lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3},  # Lightning
    lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}, "epoch": 7},
    lambda sd: {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},  # old PyTorch
])
def test_plain_state_dict_shapes_users_save(rgb_splits, wrap):
    spec = ModelSpec("torchvision:resnet18", input_mean=(0.5,) * 3, input_std=(0.2,) * 3)
    torch.manual_seed(3)
    m = build_model(spec, (3, 32, 32), 4)
    back = load_checkpoint(saved(wrap(m.backbone.state_dict())), spec, rgb_splits)
    assert same_logits(m, back, rgb_splits.test.images)


def test_safetensors_state_dict_from_plain_pytorch(rgb_splits, tmp_path):
    net = torchvision.models.resnet18(num_classes=4)
    path = str(tmp_path / "stock.safetensors")
    safetensors.torch.save_file(net.state_dict(), path)
    back = load_checkpoint(path, "torchvision:resnet18", rgb_splits)
    # torchvision's stock 7×7 stem on 32-pixel images: the loader tries it when the small stem does not fit
    assert not back.arch.small_images and back.backbone.conv1.kernel_size == (7, 7)
    x = rgb_splits.test.images
    with torch.no_grad():
        assert torch.equal(back(x), net.eval()(x))


# -- files that are not checkpoints: one sentence, no warnings ---------------------------------
JUNK = {
    "empty": b"",
    "text renamed .pt (KeyError)": b"hello world\n",
    "text (IndexError)": b"e" * 100,
    "python source": b"import torch\nclass Net(torch.nn.Module):\n    pass\n",
    "json": b'{"weights": [1, 2, 3]}',
    "broken zip": b"PK\x03\x04broken zip" * 20,
    "protocol-4 pickle": pickle.dumps({"a": [1, 2, 3]}, protocol=4),
    "truncated torch file": b"",  # filled in below
    "fake safetensors header": (100).to_bytes(8, "little") + b"{not json" + b" " * 100,
}


def _zip_of_images() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cat.png", b"\x89PNG not really")
    return buf.getvalue()


@pytest.mark.parametrize("name", [*JUNK, "zip of images"])
def test_not_a_checkpoint_gives_one_sentence_and_no_warnings(small_splits, tmp_path, capfd, name):
    data = JUNK.get(name) or (_zip_of_images() if name == "zip of images" else b"")
    if name == "truncated torch file":
        data = saved({"w": torch.zeros(100)})[:300]
    path = tmp_path / "weights.pt"
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for source in (str(path), data):
            with pytest.raises(CheckpointError) as info:
                load_checkpoint(source, "smallcnn", small_splits)
            assert NOT_A_CHECKPOINT in str(info.value) and "\n" not in str(info.value)
    assert caught == []
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_missing_file(small_splits, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.pt"), "smallcnn", small_splits)


def test_pickled_code_is_refused(small_splits):
    with pytest.raises(CheckpointError, match="contains code .*refused"):
        load_checkpoint(saved({"state_dict": Evil()}), "smallcnn", small_splits)
    assert not os.path.exists("/tmp/deltainf-pwned")


def test_a_whole_pickled_model_is_refused_with_the_way_to_save_weights(rgb_splits):
    blob = saved(torchvision.models.resnet18(num_classes=4))
    with pytest.raises(CheckpointError, match=r"contains code \(torchvision.models.resnet.ResNet\).*refused for "
                                              r"safety; save the weights alone with "
                                              r"torch.save\(model.state_dict\(\), path\)"):
        load_checkpoint(blob, "torchvision:resnet18", rgb_splits)


def test_not_a_dict(small_splits):
    with pytest.raises(CheckpointError, match=r"holds a Tensor, not a state dict; save the weights alone"):
        load_checkpoint(saved(torch.zeros(3)), "smallcnn", small_splits)
    with pytest.raises(CheckpointError, match=r"keys: epoch, lr\) but no state dict of tensors"):
        load_checkpoint(saved({"epoch": 3, "lr": 0.1}), "smallcnn", small_splits)
    assert read_checkpoint(saved({"epoch": 3})) == {"epoch": 3}


# -- weights that do not fit -------------------------------------------------------------------
def test_wrong_architecture(small_splits):
    s = small_splits
    m = build_model("resnet9", s.train.image_shape, 10, s.mean, s.std)
    with pytest.raises(CheckpointError, match="is a 'resnet9' model, not 'smallcnn'"):
        load_checkpoint(checkpoint_bytes(m, "resnet9", s.classes), "smallcnn", s)
    with pytest.raises(CheckpointError, match=r"does not fit smallcnn: \d+ missing \(.*, … \d+ more\); "
                                              r"\d+ unexpected \(body.0.0.0.weight.*; 1 of another shape "
                                              r"\(fc.weight is \[10, 512\] in the file, \[10, 128\] in the model\)$"):
        load_checkpoint(saved(m.backbone.state_dict()), "smallcnn", s)


def test_shape_mismatch_names_the_keys_and_the_class_count(rgb_splits):
    net = torchvision.models.resnet18(num_classes=100)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved(net.state_dict()), "torchvision:resnet18", rgb_splits)
    text = str(info.value)
    assert "2 of another shape (fc.weight is [100, 512] in the file, [4, 512] in the model; fc.bias" in text
    assert "the file's classifier has 100 outputs, the data has 4 classes" in text and "\n" not in text


def test_plain_state_dict_needs_an_architecture(rgb_splits):
    blob = saved(torchvision.models.resnet18(num_classes=4).state_dict())
    with pytest.raises(CheckpointError, match="plain state_dict, which does not say its architecture"):
        load_checkpoint(blob, None, rgb_splits)


def test_own_checkpoint_contradictions(rgb_splits, small_splits):
    m = build_model("smallcnn", (3, 32, 32), 4, rgb_splits.mean, rgb_splits.std)
    blob = checkpoint_bytes(m, None, rgb_splits.classes)
    with pytest.raises(CheckpointError, match="normalises with mean .* not the ones given"):
        load_checkpoint(blob, ModelSpec("smallcnn", input_mean=(0.1,) * 3, input_std=(1.0,) * 3), rgb_splits)
    with pytest.raises(CheckpointError, match="saved with model kwargs {}, not {'width': 8}"):
        load_checkpoint(blob, ModelSpec("smallcnn", {"width": 8}), rgb_splits)
    other = DatasetSplits("other", rgb_splits.train, rgb_splits.test, rgb_splits.mean, rgb_splits.std)
    other.train = ImageSet(rgb_splits.train.images, rgb_splits.train.labels, ("w", "x", "y", "z"))
    with pytest.raises(CheckpointError, match="different classes"):
        load_checkpoint(blob, None, other)
    gray = DatasetSplits("gray", ImageSet(torch.rand(4, 1, 28, 28), torch.arange(4), rgb_splits.classes),
                         ImageSet(torch.rand(4, 1, 28, 28), torch.arange(4), rgb_splits.classes), (0.5,), (0.2,))
    with pytest.raises(CheckpointError, match="made for 3×32×32 images; this data has 1×28×28"):
        load_checkpoint(blob, None, gray)


def test_nan_weights_refused(small_splits):
    s = small_splits
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    with torch.no_grad():
        m.backbone.fc.weight.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(checkpoint_bytes(m, "smallcnn", s.classes), "smallcnn", s)


def test_whole_classifier_state_dict_brings_its_normalisation(rgb_splits, tmp_path):
    m = build_model("smallcnn", (3, 32, 32), 4, (0.3, 0.4, 0.5), (0.2, 0.2, 0.2))
    back = load_checkpoint(saved({f"module.{k}": v for k, v in m.state_dict().items()}), "smallcnn", rgb_splits)
    assert same_logits(m, back, rgb_splits.test.images) and back.normalize.values() == m.normalize.values()
    # an analyst's own module that happens to be called "normalize" is not mistaken for the wrapper's
    path = tmp_path / "own_norm.py"
    path.write_text("from torch import nn\n"
                    "class Net(nn.Module):\n"
                    "    def __init__(self, num_classes):\n"
                    "        super().__init__()\n"
                    "        self.normalize = nn.BatchNorm2d(3)\n"
                    "        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
                    "                                  nn.Linear(3, num_classes))\n"
                    "    def forward(self, x):\n"
                    "        return self.head(self.normalize(x))\n")
    torch.manual_seed(4)
    mine = build_model(f"{path}:Net", (3, 32, 32), 4)
    back = load_checkpoint(saved(mine.backbone.state_dict()), f"{path}:Net", rgb_splits)
    assert same_logits(mine, back, rgb_splits.test.images)


def test_store_upload_keeps_the_content_under_its_hash(rgb_splits, tmp_path):
    m = build_model("smallcnn", (3, 32, 32), 4)
    for fmt, suffix in (("pt", ".pt"), ("safetensors", ".safetensors")):
        data = checkpoint_bytes(m, None, rgb_splits.classes, fmt=fmt)
        path = store_upload(data, str(tmp_path / "uploads"), "model.bin")
        assert path.endswith(suffix) and Path(path).read_bytes() == data
        assert store_upload(data, str(tmp_path / "uploads")) == path
        assert same_logits(m, load_checkpoint(path, None, rgb_splits), rgb_splits.test.images)
    with pytest.raises(CheckpointError, match=r"^notes\.pt " + re.escape(NOT_A_CHECKPOINT)):
        store_upload(b"my notes", str(tmp_path / "uploads"), "notes.pt")
    assert len(list((tmp_path / "uploads").iterdir())) == 2
