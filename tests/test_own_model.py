"""The analyst's own model: specs, torchvision architectures, a class from their file, and its errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deltainf_core.data.base import ImageSet
from deltainf_core.errors import ConfigError, UnknownNameError
from deltainf_core.misclassified import affected_by_index, misclassified
from deltainf_core.models import (
    Classifier,
    ModelError,
    ModelSpec,
    architecture_key,
    build_like,
    build_model,
    influence_tracked_modules,
    parse_channel_values,
    parse_model_kwargs,
    parse_model_output,
    require_influence_trackable,
)
from deltainf_core.models.from_torchvision import FAMILIES

ROOT = Path(__file__).resolve().parents[1]

FIXTURE = str(ROOT / "tests" / "fixtures" / "cifar_resnet.py")


def write(tmp_path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


# -- the spec ----------------------------------------------------------------------------------
def test_spec_parsing_from_command_line_text():
    assert parse_channel_values("0.49, 0.48,0.45") == (0.49, 0.48, 0.45)
    assert parse_model_kwargs('{"width": 8, "depth": 2}') == {"width": 8, "depth": 2}
    assert parse_model_output("1") == 1 and parse_model_output("logits") == "logits"
    assert parse_model_output("") is None
    for bad in ("0.5;0.5", "a,b", ""):
        with pytest.raises(ConfigError, match="comma-separated numbers"):
            parse_channel_values(bad)
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_model_kwargs("{width: 8}")
    with pytest.raises(ConfigError, match="JSON object"):
        parse_model_kwargs("[1, 2]")


@pytest.mark.parametrize(("spec", "message"), [
    (ModelSpec(input_mean=(0.5,)), "both input mean and input std"),
    (ModelSpec(input_mean=(0.5,), input_std=(0.0,)), "std must be positive"),
    (ModelSpec(input_mean=(float("nan"),), input_std=(1.0,)), "finite numbers"),
    (ModelSpec(model="nets/cifar.py"), "must end in :NAME"),
    (ModelSpec(model="torchvision:"), "must end in :NAME"),
    (ModelSpec(model="my net:Net"), "neither a .py file nor a module"),
    (ModelSpec(model_kwargs={"f": {1, 2}}), "JSON values only"),
])
def test_spec_validation(spec, message):
    with pytest.raises(ConfigError, match=message):
        spec.validate()


def test_spec_kinds_and_from_config():
    assert ModelSpec("smallcnn").kind == "builtin"
    assert ModelSpec("torchvision:resnet18").kind == "torchvision"
    assert ModelSpec("nets/cifar.py:ResNet").kind == "file"
    assert ModelSpec("C:\\work\\nets.py:ResNet").kind == "file"
    assert ModelSpec("C:\\work\\nets.py:ResNet").target() == ("C:\\work\\nets.py", "ResNet")
    assert ModelSpec("mypkg.models:make_net").kind == "module"

    class TrainLike:
        model, model_kwargs, model_output = "torchvision:vgg11_bn", {"dropout": 0.1}, None
        input_mean, input_std, epochs = (0.5,) * 3, (0.2,) * 3, 4

    assert ModelSpec.from_config(TrainLike()) == ModelSpec("torchvision:vgg11_bn", {"dropout": 0.1}, None,
                                                           (0.5,) * 3, (0.2,) * 3)


def test_mean_std_of_the_wrong_length():
    spec = ModelSpec("smallcnn", input_mean=(0.5, 0.5), input_std=(0.2, 0.2))
    with pytest.raises(ConfigError, match="input mean has 2 value.* 3 channel"):
        build_model(spec, (3, 32, 32), 10)


def test_normalisation_rules():
    x = torch.rand(2, 3, 16, 16)
    raw = build_model("smallcnn", (3, 16, 16), 4)
    assert torch.equal(raw.normalize(x), x)  # nothing given: raw pixels
    data = build_model("smallcnn", (3, 16, 16), 4, (0.5,) * 3, (0.25,) * 3)
    assert torch.allclose(data.normalize(x), (x - 0.5) / 0.25)
    own = build_model(ModelSpec("smallcnn", input_mean=(0.1, 0.2, 0.3), input_std=(1.0, 2.0, 4.0)),
                      (3, 16, 16), 4, (0.5,) * 3, (0.25,) * 3)  # the spec wins over the data's statistics
    assert torch.allclose(own.normalize(x)[:, 2], (x[:, 2] - 0.3) / 4.0)


# -- torchvision -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_torchvision_forward_backward(name, shape):
    torch.manual_seed(0)
    m = build_model(f"torchvision:{name}", shape, 7, (0.5,) * shape[0], (0.25,) * shape[0])
    x = torch.rand(4, *shape)
    m.train()
    out = m(x)
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    stem = next(c for c in m.backbone.modules() if isinstance(c, nn.Conv2d))
    assert stem.in_channels == shape[0] and stem.stride == (1, 1) and stem.kernel_size == (3, 3)
    assert m.arch.small_images
    assert m.features(x).shape[0] == 4
    assert influence_tracked_modules(m)


def test_torchvision_resnet_stem_follows_the_image_size():
    small = build_model("torchvision:resnet18", (3, 32, 32), 10)
    assert small.backbone.conv1.kernel_size == (3, 3) and isinstance(small.backbone.maxpool, nn.Identity)
    large = build_model("torchvision:resnet18", (1, 96, 96), 10)
    conv = large.backbone.conv1
    assert (conv.in_channels, conv.kernel_size, conv.stride) == (1, (7, 7), (2, 2))
    assert isinstance(large.backbone.maxpool, nn.MaxPool2d) and not large.arch.small_images
    stock = build_model("torchvision:resnet18", (3, 32, 32), 10, small_images=False)
    assert stock.backbone.conv1.kernel_size == (7, 7)


def test_torchvision_vgg_drops_the_pool_that_would_empty_a_28px_map():
    m = build_model("torchvision:vgg11_bn", (1, 28, 28), 10)
    pools = [p for p in m.backbone.features if isinstance(p, nn.MaxPool2d)]
    assert len(pools) == 4 and m.backbone.classifier[0].in_features == 512


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d", "vgg11_bn", "alexnet", "squeezenet1_1",
                                  "densenet121", "shufflenet_v2_x1_0", "googlenet", "mobilenet_v2",
                                  "efficientnet_b0", "mnasnet1_0", "regnet_y_400mf", "convnext_tiny",
                                  "inception_v3", "swin_t"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_torchvision_families(name, shape):
    m = build_model(f"torchvision:{name}", shape, 10)
    m.train()
    m(torch.rand(2, *shape)).sum().backward()
    assert influence_tracked_modules(m)


def test_every_adapted_family_is_a_torchvision_class():
    import torchvision.models as tvm

    assert all(hasattr(tvm, family) for family in FAMILIES)


def test_torchvision_names_and_weights():
    with pytest.raises(UnknownNameError, match="did you mean resnet18"):
        build_model("torchvision:resnet19", (3, 32, 32), 10)
    with pytest.raises(UnknownNameError, match="no classification model 'fasterrcnn_resnet50_fpn'"):
        build_model("torchvision:fasterrcnn_resnet50_fpn", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="never downloaded"):
        build_model(ModelSpec("torchvision:resnet18", {"weights": "DEFAULT"}), (3, 32, 32), 10)
    with pytest.raises(ModelError, match="vit_b_16 cannot be built for 1×28×28 images: AssertionError: Input shape"):
        build_model("torchvision:vit_b_16", (1, 28, 28), 10)


# -- the analyst's own class -------------------------------------------------------------------
def test_class_from_a_file_with_tuple_output_and_features():
    spec = ModelSpec(f"{FIXTURE}:CifarResNet", {"width": 8}, 1, (0.5,) * 3, (0.25,) * 3)
    torch.manual_seed(0)
    m = build_model(spec, (3, 32, 32), 5)
    assert m.backbone.linear.out_features == 5  # num_classes filled in from the data
    x = torch.rand(3, 3, 32, 32)
    m.eval()
    feats, logits = m.backbone((x - 0.5) / 0.25)
    assert torch.allclose(m(x), logits)
    assert torch.allclose(m.features(x), feats)  # the input of the last Linear, by hook
    again = build_like(m)
    assert type(again.backbone) is type(m.backbone) and again.normalize.values() == m.normalize.values()
    assert again.output == 1


def test_factory_function_and_module_path(tmp_path, monkeypatch):
    m = build_model(ModelSpec(f"{FIXTURE}:make_resnet", {"classes": 4, "width": 4}, 1), (3, 32, 32), 4)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    pkg = tmp_path / "analyst_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent("""
        from torch import nn
        class Net(nn.Module):
            def __init__(self, num_classes, hidden=8):
                super().__init__()
                self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, hidden), nn.ReLU())
                self.head = nn.Linear(hidden, num_classes)
            def forward(self, x):
                return {"embedding": self.body(x), "logits": self.head(self.body(x))}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    m = build_model(ModelSpec("analyst_pkg.nets:Net", {"hidden": 6}, "logits"), (3, 8, 8), 3)
    assert m(torch.rand(2, 3, 8, 8)).shape == (2, 3) and m.features(torch.rand(2, 3, 8, 8)).shape == (2, 6)
    with pytest.raises(ModelError, match=r"returns a dict \('embedding', 'logits'\).*--model-output KEY"):
        build_model("analyst_pkg.nets:Net", (3, 8, 8), 3)
    with pytest.raises(ModelError, match="no 'probs'"):
        build_model(ModelSpec("analyst_pkg.nets:Net", {}, "probs"), (3, 8, 8), 3)
    with pytest.raises(ModelError, match="module analyst_pkg.missing failed to import: ModuleNotFoundError"):
        build_model("analyst_pkg.missing:Net", (3, 8, 8), 3)
    sys.modules.pop("analyst_pkg.nets", None)
    sys.modules.pop("analyst_pkg", None)


def test_several_outputs_need_a_selector():
    with pytest.raises(ModelError, match=r"returns 2 outputs \(\[2, 32\], \[2, 10\]\).*--model-output INDEX"):
        build_model(ModelSpec(f"{FIXTURE}:CifarResNet", {"width": 8}), (3, 32, 32), 10)
    with pytest.raises(ModelError, match="index 2 does not exist"):
        build_model(ModelSpec(f"{FIXTURE}:CifarResNet", {"width": 8}, 2), (3, 32, 32), 10)
    with pytest.raises(ModelError, match="single tensor; drop the model output selector"):
        build_model(ModelSpec("smallcnn", {}, 0), (3, 32, 32), 10)


def test_output_size_must_be_the_number_of_classes():
    with pytest.raises(ModelError, match="gives 100 output values per image but the data has 10 classes"):
        build_model(ModelSpec(f"{FIXTURE}:make_resnet", {"classes": 100, "width": 4}, 1), (3, 32, 32), 10)


@pytest.mark.parametrize(("code", "message"), [
    ("raise RuntimeError('no GPU here')\n", r"failed to import: RuntimeError: no GPU here$"),
    ("def broken(:\n    pass\n", r"failed to import: SyntaxError: .*\(line 1\)$"),
    ("import not_a_real_package_xyz\n", r"failed to import: ModuleNotFoundError: No module named"),
    ("import sys\nsys.exit(3)\n", r"failed to import: SystemExit: 3$"),
])
def test_an_architecture_file_that_fails_to_import(tmp_path, code, message):
    path = write(tmp_path, "net.py", code)
    with pytest.raises(ModelError, match=message) as info:
        build_model(f"{path}:Net", (3, 32, 32), 10)
    assert "\n" not in str(info.value)


def test_file_and_name_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        build_model(f"{tmp_path}/nothing.py:Net", (3, 32, 32), 10)
    with pytest.raises(ModelError, match=r"has no 'ResNet' \(it defines: CifarResNet, make_resnet\)"):
        build_model(f"{FIXTURE}:ResNet", (3, 32, 32), 10)
    with pytest.raises(ModelError, match=r"CifarResNet\(.*depht=2.*\) failed: TypeError"):
        build_model(ModelSpec(f"{FIXTURE}:CifarResNet", {"depht": 2}), (3, 32, 32), 10)
    path = write(tmp_path, "notmodel.py", "def net(num_classes):\n    return [num_classes]\n")
    with pytest.raises(ModelError, match="returned a list, not a torch.nn.Module"):
        build_model(f"{path}:net", (3, 32, 32), 10)
    path = write(tmp_path, "crash.py", """
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(10, 10)
            def forward(self, x):
                return self.fc(x)
    """)
    with pytest.raises(ModelError, match="cannot run on 3×32×32 images: RuntimeError"):
        build_model(f"{path}:Net", (3, 32, 32), 10)


def test_unknown_builtin_name():
    with pytest.raises(UnknownNameError, match=r"unknown model 'resnet7' \(choose from: smallcnn, resnet9, "
                                               r"resnet18, or torchvision:NAME, path/to/file.py:NAME"):
        build_model("resnet7", (3, 32, 32), 10)


def test_architecture_key_follows_the_file(tmp_path):
    path = write(tmp_path, "net.py", "from torch import nn\nNet = lambda num_classes: nn.Linear(3, num_classes)\n")
    before = architecture_key(f"{path}:Net")
    assert architecture_key(f"{path}:Net") == before
    write(tmp_path, "net.py", "from torch import nn\nNet = lambda num_classes: nn.Linear(3, num_classes)  # v2\n")
    assert architecture_key(f"{path}:Net") != before
    assert architecture_key("torchvision:resnet18") != architecture_key("torchvision:resnet34")


# -- EK-FAC needs Linear / Conv2d --------------------------------------------------------------
def test_a_model_without_linear_or_conv_layers(tmp_path):
    path = write(tmp_path, "raw.py", """
        import torch
        class Net(torch.nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.w = torch.nn.Parameter(torch.randn(3 * 8 * 8, num_classes) * 0.01)
            def forward(self, x):
                return x.flatten(1) @ self.w
    """)
    m = build_model(f"{path}:Net", (3, 8, 8), 4)
    assert influence_tracked_modules(m) == []
    with pytest.raises(ModelError, match="no Linear or Conv2d layer.*still work: .*frequency"):
        require_influence_trackable(m)
    assert m.features(torch.rand(2, 3, 8, 8)).shape == (2, 4)  # no layer to hook: the logits


def test_tracked_modules_skip_subclasses_and_layers_the_forward_never_calls(tmp_path):
    path = write(tmp_path, "odd.py", """
        import torch
        from torch import nn
        class MyLinear(nn.Linear):
            pass
        class Net(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.odd = MyLinear(4, 4)
                self.unused = nn.Linear(4, 4)
                self.head = nn.Linear(4, num_classes)
            def forward(self, x):
                h = self.conv(x).mean((2, 3))
                return self.head(self.odd(h))
    """)
    m = build_model(f"{path}:Net", (3, 8, 8), 2)
    assert influence_tracked_modules(m) == ["backbone.conv", "backbone.head"]


# -- which test images are wrong ---------------------------------------------------------------
def brightest_channel_model() -> Classifier:
    """Predicts the channel with the highest mean: a model whose answers are known."""
    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        backbone[2].weight.copy_(torch.eye(3))
    return Classifier(backbone, (0.0,) * 3, (1.0,) * 3)


def test_misclassified_and_affected_by_index():
    images = torch.full((6, 3, 4, 4), 0.1)
    bright = [0, 1, 2, 0, 1, 2]
    for i, c in enumerate(bright):
        images[i, c] = 0.9
    labels = torch.tensor([0, 1, 1, 0, 2, 2])  # images 2 and 4 are labelled against the model
    test = ImageSet(images, labels, ("r", "g", "b"))
    model = brightest_channel_model()
    wrong = misclassified(model, test)
    assert wrong.indices.tolist() == [2, 4]
    assert wrong.predicted.tolist() == [2, 1] and wrong.labels.tolist() == [1, 2]
    assert np.all((wrong.confidence > 1 / 3) & (wrong.confidence <= 1))
    affected = affected_by_index(model, test, [4, 0])
    assert affected.labels.tolist() == [1, 0] and torch.equal(affected.images[0], images[4])
    with pytest.raises(ConfigError, match="index 6 does not exist.*0..5"):
        affected_by_index(model, test, [6])
    with pytest.raises(ConfigError, match="only once"):
        affected_by_index(model, test, [1, 1])
