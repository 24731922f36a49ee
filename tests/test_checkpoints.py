"""Checkpoints: round trip, and hostile/corrupt/mismatched files refused with one sentence."""

from __future__ import annotations

import io
import os

import pytest
import torch

from deltainf_core import build_model, checkpoint_bytes, load_checkpoint
from deltainf_core.errors import CheckpointError


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/deltainf-pwned",))


@pytest.fixture(scope="module")
def small_splits(mnist_splits):
    return mnist_splits


def test_round_trip(small_splits):
    s = small_splits
    torch.manual_seed(0)
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    blob = checkpoint_bytes(m, "smallcnn", s.classes)
    back = load_checkpoint(blob, "smallcnn", s)
    x = s.test.images[:4]
    assert torch.allclose(m.eval()(x), back(x))


def test_bare_backbone_state_dict(small_splits, tmp_path):
    s = small_splits
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    path = tmp_path / "backbone.pt"
    torch.save(m.backbone.state_dict(), path)
    assert isinstance(load_checkpoint(str(path), "smallcnn", s), torch.nn.Module)


def test_pickled_code_is_refused(small_splits):
    buf = io.BytesIO()
    torch.save({"state_dict": Evil()}, buf)
    with pytest.raises(CheckpointError, match="contains code .*refused"):
        load_checkpoint(buf.getvalue(), "smallcnn", small_splits)
    assert not os.path.exists("/tmp/deltainf-pwned")


@pytest.mark.parametrize("blob", [b"", b"\x00garbage" * 10, b"PK\x03\x04broken zip"])
def test_corrupt_is_refused(small_splits, blob):
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(blob, "smallcnn", small_splits)


def test_wrong_architecture(small_splits):
    s = small_splits
    m = build_model("resnet9", s.train.image_shape, 10, s.mean, s.std)
    blob = checkpoint_bytes(m, "resnet9", s.classes)
    with pytest.raises(CheckpointError, match="is a 'resnet9' model, not 'smallcnn'"):
        load_checkpoint(blob, "smallcnn", s)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    with pytest.raises(CheckpointError, match="does not fit smallcnn"):
        load_checkpoint(buf.getvalue(), "smallcnn", s)


def test_nan_weights_refused(small_splits):
    s = small_splits
    m = build_model("smallcnn", s.train.image_shape, 10, s.mean, s.std)
    with torch.no_grad():
        m.backbone.fc.weight.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(checkpoint_bytes(m, "smallcnn", s.classes), "smallcnn", s)


def test_not_a_dict(small_splits):
    buf = io.BytesIO()
    torch.save(torch.zeros(3), buf)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_checkpoint(buf.getvalue(), "smallcnn", small_splits)
