"""Triage under delta_label: the app flags what the core's rule flags and says what the label check did."""

from __future__ import annotations

import numpy as np
from app_driver import goto, metric, new_app, ok, state, tiny_scenario

from deltainf_core import RULES
from deltainf_core.collapse.label_consistency import describe_label_check


def tile_captions(at) -> list[str]:
    return [c for el in at.get("image") for c in el.captions]


def test_triage_with_the_label_check(clear_caches, pipeline):
    scn = tiny_scenario()
    at = ok(new_app())
    at.button(key="scn_train").click().run()
    goto(ok(at), "affected_image")
    picked = list(state(at).picked)
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    ok(at)
    goto(at, "triage")
    # under the default rule every tile already shows whether the image kept its own label
    assert any("label lost" in c for c in tile_captions(at)), tile_captions(at)[:3]
    at.session_state["tri_rule"] = "delta_label"
    at.run()
    ok(at)

    poisoned = pipeline.poisoned(scn)
    core = pipeline.collapse(scn, pipeline.affected_set(scn, picked), target_class=poisoned.target_class)
    assert core.label_check is not None  # the pipeline's evidence can check labels
    expected = RULES.get("delta_label")(core, RULES.parse_params("delta_label", {}))
    assert metric(at, "Flagged") == f"{len(expected.flagged):,}"
    said = describe_label_check(expected.info)
    assert said and any(c.value == said for c in at.caption), [c.value for c in at.caption]
    app_check = state(at).collapse.value.label_check
    breaking = expected.info["breaking_transforms"]
    assert breaking, expected.info  # the tiny 5x5 patch is broken by some transformation
    shown = [int(i) for i in expected.flagged[:3]]  # the tiles' rates come from the same seeded check
    np.testing.assert_array_equal(app_check.break_rates(shown, breaking), core.label_check.break_rates(shown, breaking))
