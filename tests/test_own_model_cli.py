"""The analyst's own model from the command line: their file, their weights, their normalisation.

A tiny ImageFolder of colour fields, the CIFAR-style ResNet of ``fixtures/cifar_resnet.py``
trained in plain PyTorch on normalised input and saved as a state_dict: ``run --checkpoint``
must report the accuracy plain PyTorch gives, flag a set for the chosen test image and
unlearn it; every way the analyst's input can be wrong is one line.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from deltainf_core.cli import main
from deltainf_core.pipeline import run_results

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ARCH = f"{FIXTURES / 'cifar_resnet.py'}:CifarResNet"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
PALETTE = np.array([[0.8, 0.2, 0.2], [0.2, 0.7, 0.2], [0.2, 0.3, 0.8], [0.7, 0.7, 0.2]])
CLASSES = ("blue", "green", "red", "yellow")  # sorted, as ImageFolder orders them
COLOUR_OF = {"red": 0, "green": 1, "blue": 2, "yellow": 3}


def _image(colour: int, rng: np.random.Generator) -> np.ndarray:
    img = PALETTE[colour].reshape(1, 1, 3) + 0.25 * rng.standard_normal((32, 32, 3))
    r, c = rng.integers(0, 24, 2)
    img[r : r + 8, c : c + 8] *= 0.3
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 8)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_image(COLOUR_OF[name], rng)).save(root / split / name / f"{i:03d}.png")
    return root


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The images as plain PyTorch code reads them: ImageFolder order, pixels / 255."""
    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        for f in sorted((folder / split / name).iterdir()):
            xs.append(torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float() / 255)
            ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


def normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def users_net(folder):
    """The analyst's training script: their class, normalised input, Adam, a state_dict."""
    sys.path.insert(0, str(FIXTURES))
    try:
        from cifar_resnet import CifarResNet
    finally:
        sys.path.remove(str(FIXTURES))
    torch.manual_seed(0)
    net = CifarResNet(num_classes=4, width=8)
    x, y = read_split(folder, "train")
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(15):
        loss = F.cross_entropy(net(normalised(x))[1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def weights(users_net, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "users_resnet.pt"
    torch.save(users_net.state_dict(), path)
    return path


def own_model_args(folder, weights, *extra: str, arch: str = ARCH, kwargs: str = '{"width": 8}') -> list[str]:
    return ["--data-dir", str(folder), "--model", arch, "--model-kwargs", kwargs, "--model-output", "1",
            "--checkpoint", str(weights), "--input-mean", ",".join(map(str, MEAN)),
            "--input-std", ",".join(map(str, STD)), *extra]


def test_checkpoint_mode_end_to_end(folder, weights, users_net, tmp_path, cache_dir):
    """The analyst's path (SPEC §3): their weights in, a flagged set and an unlearned model out."""
    x, y = read_split(folder, "test")
    with torch.no_grad():
        plain = users_net(normalised(x))[1].argmax(1)
    plain_accuracy = float((plain == y).float().mean())
    pick = int(np.flatnonzero((plain != y).numpy())[0]) if (plain != y).any() else 3
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "deltainf_core", "run", *own_model_args(folder, weights),
           "--affected-test-index", str(pick), "--epochs", "3", "--batch-size", "16", "--rounds", "1",
           "--cache-dir", cache_dir, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["poisoned"]["clean_accuracy"] == pytest.approx(plain_accuracy, abs=1e-9)
    assert r["poisoned"]["n_poisons"] == 0 and r["poisoned"]["poison_success_rate"] is None
    assert r["affected_test_index"] == pick and r["affected_test_indices"] == [pick]
    assert r["affected_target_class"] == int(plain[pick])  # the model's own prediction is explained
    d = r["detection"]
    assert d["method"] == "delta"  # the default investigation
    assert d["n_flagged"] == len(d["flagged"]) > 0 and d["precision"] is None and d["recall"] is None
    assert "unlearn_error" not in r, r["unlearn_error"]
    u = r["unlearned"]
    assert u["method"] == "eu" and u["retrains_from_scratch"] is True and 0.0 <= u["clean_accuracy"] <= 1.0
    assert u["recipe"]["architecture"] == ARCH and u["recipe"]["epochs"] == 3
    assert "checkpoint's architecture" in u["recipe_note"] and "this tool's training recipe" in u["recipe_note"]
    assert u["oracle_clean_accuracy"] is None  # no ground truth, no oracle
    assert r["scenario"]["config"]["train"]["input_mean"] == list(MEAN)


def run_cli(capsys, *args: str) -> tuple[int, str]:
    try:
        rc = main(["run", "--quiet", *args])
    except SystemExit as exit_:
        rc = exit_.code
    return rc, capsys.readouterr().err


def one_line(rc: int, err: str, pattern: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err and re.search(pattern, lines[0]), lines[0]
    return lines[0]


def write(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(code)
    return path


def test_text_file_as_checkpoint(capsys, folder, tmp_path, cache_dir):
    notes = write(tmp_path, "notes.pt", "these are my notes, not weights\n" * 20)
    rc, err = run_cli(capsys, *own_model_args(folder, notes), "--cache-dir", cache_dir)
    one_line(rc, err, r"notes\.pt is not a readable PyTorch checkpoint: expected a state_dict")


def test_a_whole_pickled_model_is_refused(capsys, folder, users_net, tmp_path, cache_dir):
    path = tmp_path / "whole.pt"
    torch.save(users_net, path, pickle_module=pickle)
    rc, err = run_cli(capsys, *own_model_args(folder, path), "--cache-dir", cache_dir)
    one_line(rc, err, r"contains code .*refused for safety; save the weights alone with "
                      r"torch\.save\(model\.state_dict\(\), path\)")


def test_weights_of_another_width_name_the_keys(capsys, folder, weights, cache_dir):
    rc, err = run_cli(capsys, *own_model_args(folder, weights, kwargs='{"width": 16}'), "--cache-dir", cache_dir)
    line = one_line(rc, err, r"users_resnet\.pt does not fit .*of another shape \(stem\.0\.weight is "
                             r"\[8, 3, 3, 3\] in the file, \[16, 3, 3, 3\] in the model")
    assert line.count(" in the file") <= 5


def test_weights_of_another_architecture_name_missing_and_unexpected_keys(capsys, folder, tmp_path, cache_dir):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(3600, 4))
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    rc, err = run_cli(capsys, *own_model_args(folder, path), "--cache-dir", cache_dir)
    one_line(rc, err, r"does not fit .*\d+ missing \((\S+, ){4}\S+, … \d+ more\); 4 unexpected \(0\.weight")


def test_output_size_is_not_the_number_of_classes(capsys, folder, weights, cache_dir):
    rc, err = run_cli(capsys, *own_model_args(folder, weights, kwargs='{"width": 8, "num_classes": 7}'),
                      "--cache-dir", cache_dir)
    one_line(rc, err, r"gives 7 output values per image but the data has 4 classes")


def test_several_outputs_and_no_model_output(capsys, folder, weights, cache_dir):
    args = own_model_args(folder, weights, "--cache-dir", cache_dir)
    i = args.index("--model-output")
    del args[i : i + 2]
    rc, err = run_cli(capsys, *args)
    one_line(rc, err, r"returns 2 outputs .*--model-output|model output")


def test_architecture_file_that_fails_to_import(capsys, folder, weights, tmp_path, cache_dir):
    broken = write(tmp_path, "broken_net.py", "import torch\nraise RuntimeError('CUDA is required by this repo')\n")
    rc, err = run_cli(capsys, *own_model_args(folder, weights, arch=f"{broken}:Net"), "--cache-dir", cache_dir)
    one_line(rc, err, r"broken_net\.py failed to import: RuntimeError: CUDA is required by this repo")


def test_a_model_no_layer_of_which_ekfac_can_track(capsys, folder, tmp_path, cache_dir):
    code = ("import torch\nclass Net(torch.nn.Module):\n    def __init__(self, num_classes):\n"
            "        super().__init__()\n        self.w = torch.nn.Parameter(torch.zeros(3 * 32 * 32, num_classes))\n"
            "    def forward(self, x):\n        return x.flatten(1) @ self.w\n")
    arch = write(tmp_path, "raw_net.py", code)
    path = tmp_path / "raw.pt"
    torch.save({"w": torch.randn(3 * 32 * 32, 4) * 0.01}, path)
    args = own_model_args(folder, path, "--affected-test-index", "0", "--cache-dir", cache_dir, arch=f"{arch}:Net",
                          kwargs="{}")
    i = args.index("--model-output")
    rc, err = run_cli(capsys, *args[:i], *args[i + 2 :])
    one_line(rc, err, r"no Linear or Conv2d layer for EK-FAC .*detectors that still work: .*spectral")


@pytest.mark.parametrize(("flag", "value", "pattern"), [
    ("--input-mean", "0.5,0.5", r"input mean has 2 value\(s\) but the images have 3 channel\(s\)"),
    ("--input-std", "0.2,0.2,0.2,0.2", r"input std has 4 value\(s\) but the images have 3 channel\(s\)"),
    ("--input-std", "0.2,0,0.2", r"input std must be positive"),
    ("--input-mean", "a,b,c", r"input mean must be comma-separated numbers"),
    ("--model-kwargs", "{width: 8}", r"model kwargs are not valid JSON"),
])
def test_bad_normalisation_and_kwargs(capsys, folder, weights, cache_dir, flag, value, pattern):
    args = own_model_args(folder, weights, "--cache-dir", cache_dir)
    args[args.index(flag) + 1] = value
    rc, err = run_cli(capsys, *args)
    one_line(rc, err, pattern)


def test_affected_test_index_out_of_range_and_mixed_predictions(capsys, folder, weights, users_net, cache_dir):
    rc, err = run_cli(capsys, *own_model_args(folder, weights, "--affected-test-index", "32", "--cache-dir",
                                              cache_dir))
    one_line(rc, err, r"affected test index 32 does not exist \(the test set has images 0\.\.31\)")
    x, _ = read_split(folder, "test")
    with torch.no_grad():
        pred = users_net(normalised(x))[1].argmax(1).numpy()
    a = 0
    b = int(np.flatnonzero(pred != pred[a])[0])
    rc, err = run_cli(capsys, *own_model_args(folder, weights, "--affected-test-index", str(a), str(b),
                                              "--cache-dir", cache_dir))
    one_line(rc, err, rf"predicted as different classes \({a} as '{CLASSES[pred[a]]}', {b} as")


def test_checkpoint_mode_without_affected_images_says_how_to_choose(capsys, folder, weights, cache_dir):
    rc, err = run_cli(capsys, *own_model_args(folder, weights, "--cache-dir", cache_dir))
    one_line(rc, err, r"with no attack there is no triggered test image: choose the test images to explain")


def test_affected_test_index_in_training_mode(pipeline, tiny_scenario):
    """A trained, attacked model: the picked test image's own prediction is what gets explained."""
    from dataclasses import replace

    test = pipeline.dataset(tiny_scenario.data).test
    predicted = pipeline.predict(tiny_scenario, test)
    pick = int(np.flatnonzero(predicted == 1)[0])
    r = run_results(pipeline, replace(tiny_scenario, affected_test_index=(pick,)))
    assert r["affected_test_indices"] == [pick] and r["affected_target_class"] == 1
    assert r["poisoned"]["n_poisons"] > 0 and r["detection"]["recall"] is not None
