"""A toy entry of each family (``tests/toys.py``) appears in the app's select boxes with no page edit."""

from __future__ import annotations

import numpy as np
import toys
from app_driver import goto, new_app, ok, state, tiny_scenario

from deltainf_core import Rounds
from pages.ui import Active


def test_toys_are_in_the_app_select_boxes(with_toys, clear_caches, pipeline):
    at = ok(new_app())

    def has(options, name):
        return any(str(o).startswith(name) or str(o) == name or name in str(o) for o in options)

    assert has(at.selectbox(key="scn_attack").options, toys.ATTACK)
    assert has(at.multiselect(key="scn_transforms").options, "shift")  # shown by its registered title
    # an investigation in progress, trained through the core and handed to the session
    scn = tiny_scenario()
    tm = pipeline.trained(scn)
    session = state(at)
    session.active = Active(scn, "train", tm.key)
    session.rounds = Rounds(tm, scn.max_rounds)
    session.rounds.removed = np.array([0, 1, 2])  # what an earlier round removed: Unlearn has a set
    goto(at, "triage")
    assert has(at.selectbox(key="tri_rule").options, toys.DETECTOR)
    goto(at, "unlearn")
    assert has(at.selectbox(key="unl_method").options, toys.UNLEARNER)
