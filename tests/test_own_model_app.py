"""The analyst's own model through the Scenario page: a file on this machine, uploaded weights.

The same CIFAR-style ResNet and ImageFolder as ``test_own_model_cli``: the page must show
the accuracy plain PyTorch gives, and each mistake in the architecture settings must be
one ``st.error`` sentence with the session still usable.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import streamlit as st
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "app"))
from app_driver import errors, new_app, ok, pct
from test_own_model_cli import ARCH, MEAN, STD, folder, normalised, read_split, users_net  # noqa: F401 (fixtures)

SESSION = "session"  # pages/ui/state.py keeps the investigation under this key


@pytest.fixture
def clean_streamlit(cache_dir):
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def state_bytes(net: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue()


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_the_analysts_class_and_weights_load_with_plain_pytorch_accuracy(clean_streamlit, folder, users_net):  # noqa: F811
    x, y = read_split(folder, "test")
    with torch.no_grad():
        plain = float((users_net(normalised(x))[1].argmax(1) == y).float().mean())
    at = ok(new_app(scn_mode="checkpoint", scn_dataset="__folder__", scn_data_dir=str(folder), scn_max_train=0,
                    scn_max_test=0, scn_arch_source="code", scn_arch_path=ARCH, scn_model_kwargs='{"width": 8}',
                    scn_input_mean=",".join(map(str, MEAN)), scn_input_std=",".join(map(str, STD))))

    def load(**widgets) -> list[str]:
        for key, value in widgets.items():
            at.session_state[key] = value
        at.file_uploader(key="scn_ckpt_file").set_value(("users_resnet.pth", state_bytes(users_net),
                                                         "application/octet-stream"))
        at.run()
        at.button(key="scn_load").click().run()
        ok(at)
        return errors(at)

    several = load(scn_model_output="")  # forward returns (features, logits)
    assert len(several) == 1 and "returns 2 outputs" in several[0]
    wrong_mean = load(scn_model_output="1", scn_input_mean="0.5,0.5")
    assert len(wrong_mean) == 1 and "input mean has 2 value(s) but the images have 3 channel(s)" in wrong_mean[0]
    missing = load(scn_input_mean=",".join(map(str, MEAN)), scn_arch_path="/nowhere/nets.py:Net")
    assert len(missing) == 1 and "architecture file /nowhere/nets.py does not exist" in missing[0]
    assert at.session_state[SESSION].active is None
    assert load(scn_arch_path=ARCH) == []
    active = at.session_state[SESSION].active
    assert active is not None and active.mode == "checkpoint"
    assert active.scenario.train.model == ARCH and active.scenario.train.input_std == STD
    assert metric(at, "Clean accuracy") == pct(plain)
    assert metric(at, "Poisoned images") == "unknown"
