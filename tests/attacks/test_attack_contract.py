"""Every registered attack on tiny data: a new attack is held to the contract the moment it registers."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from deltainf_core import ATTACKS, AttackConfig, DataConfig, TrainConfig, load_dataset
from deltainf_core.errors import ConfigError

FAST_PARAMS = {"witches_brew": {"steps": 3, "restarts": 1}}
"""Per-attack parameters that keep a registry check to seconds (crafting steps etc.)."""


@pytest.fixture(scope="module")
def tiny_splits():
    return load_dataset(DataConfig(max_train=300, max_test=100))


def test_attack_contract(attack_name, tiny_splits, with_toys):
    s = tiny_splits
    params = dict(FAST_PARAMS.get(attack_name, {}))
    if "target_index" in {f.name for f in dataclasses.fields(ATTACKS.params(attack_name))}:
        # a one-epoch surrogate may get no test image right: name the target
        params["target_index"] = int(np.flatnonzero(s.test.labels.numpy() == 0)[0])
    cfg = AttackConfig(attack=attack_name, poison_frac=0.02, params=params).resolved(10)
    out = ATTACKS.get(attack_name)(s, cfg, TrainConfig(epochs=1), lambda f, m: None)
    assert len(out.train) == len(s.train) and out.train.image_shape == s.train.image_shape
    idx = np.asarray(out.poison_indices)
    assert idx.dtype.kind == "i" and len(np.unique(idx)) == len(idx)
    changed = ~(out.train.images == s.train.images).flatten(1).all(1) | (out.train.labels != s.train.labels)
    assert set(np.flatnonzero(changed.numpy())) <= set(idx.tolist())  # only poisons change
    if idx.size:
        assert len(idx) == 6 and idx.min() >= 0 and idx.max() < len(s.train)
    assert len(out.psr_set) == len(out.psr_source_indices)
    if ATTACKS.trait(attack_name, "has_success_rate"):
        assert len(out.psr_set) > 0 and out.target_class is not None
    if len(out.psr_set):
        assert (out.psr_set.labels == s.test.labels[torch.as_tensor(out.psr_source_indices)]).all()
    back = pickle.loads(pickle.dumps(out))  # the store pickles scenarios
    assert torch.equal(back.train.images, out.train.images)
    assert torch.equal(back.trigger(s.test.images[:2]), out.trigger(s.test.images[:2]))


def test_attack_parameters_describe_themselves(attack_name, with_toys):
    """Every parameter has a default and a help line, and a misspelt one is refused in one sentence."""
    entry = ATTACKS.entry(attack_name)
    assert entry.help
    assert all(entry.param_help().values()), entry.param_help()
    assert dataclasses.asdict(ATTACKS.parse_params(attack_name, {})) == entry.param_defaults()
    with pytest.raises(ConfigError, match=f"unknown attack '{attack_name}' parameter.*no_such_knob"):
        ATTACKS.parse_params(attack_name, {"no_such_knob": 1})
