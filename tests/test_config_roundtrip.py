"""Scenario.as_dict / from_dict: what a saved investigation or a results JSON restores."""

import json

import pytest

from deltainf_core.config import Scenario
from deltainf_core.errors import ConfigError


def test_round_trip_through_json_restores_every_stage():
    scn = Scenario()
    scn.collapse.n_copies, scn.collapse.transforms = 7, ("flip", "blur")
    scn.unlearn.params = {"alpha": 3.0}
    back = Scenario.from_dict(json.loads(json.dumps(scn.as_dict())))
    assert back == scn and isinstance(back.collapse.transforms, tuple)


def test_missing_fields_keep_defaults_and_unknown_ones_are_refused():
    assert Scenario.from_dict({"train": {"epochs": 3}}).train.epochs == 3
    with pytest.raises(ConfigError, match="unknown DataConfig setting"):
        Scenario.from_dict({"data": {"no_such": 1}})
    with pytest.raises(ConfigError, match="unknown scenario setting"):
        Scenario.from_dict({"nonsense": {}})
