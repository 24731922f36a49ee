"""The collapse page, Triage and the rule show one and the same d.

The scatter's d panel (read back from the chart the page sends to the browser), the
statistic Triage ranks and captions by, the core's rule on the same scores and the CLI's
detector are compared number for number — with "broken copies only" on, then off.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import numpy as np
from app_driver import goto, new_app, ok, state, tiny_scenario

from deltainf_core import RULES, DetectConfig
from deltainf_core.collapse.rules import EffectSizeParams
from deltainf_core.figures import statistic_shown
from deltainf_core.report import evidence_text


def scatter_statistic(at, n_train: int) -> np.ndarray:
    """The first panel of the collapse chart as drawn: y per training index (via customdata)."""
    charts = [c for c in at.get("plotly_chart") if "scattergl" in c.proto.spec]
    spec = json.loads(charts[0].proto.spec)
    out = np.full(n_train, np.nan, dtype=np.float32)
    for trace in spec["data"]:
        if trace.get("xaxis") == "x" and trace["legendgroup"] != "flagged":
            out[np.asarray(decode(trace["customdata"]), dtype=np.int64)] = decode(trace["y"])
    return out


def decode(values) -> np.ndarray:
    """Plotly ships NumPy arrays as typed-array dicts (``{"dtype", "bdata"}``) or plain lists."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray(values)


def triage_statistic(at) -> np.ndarray:
    return np.asarray(state(at).memo["flags"].value.statistic)


def image_captions(at) -> str:
    """Every image caption on the page (Triage captions each image with its statistic)."""
    return " ".join(c for el in at.get("image") for c in el.captions)


def test_collapse_page_triage_and_rule_show_the_same_d(clear_caches, pipeline):
    scn = tiny_scenario()
    at = ok(new_app())
    at.button(key="scn_train").click().run()
    goto(at, "affected_image")
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    ok(at)
    result = state(at).collapse.value
    affected = pipeline.affected_set(scn, state(at).picked)

    for broken_only in (True, False):
        goto(at, "triage")
        if not broken_only:
            at.checkbox(key="tri_delta_broken_only").uncheck().run()
            ok(at)
        cli = replace(scn, detect=DetectConfig(params={"broken_only": broken_only}))
        rule = pipeline.detect(cli, affected, result.target_class)  # what the CLI's detector computes
        core = RULES.get("delta")(result, EffectSizeParams(broken_only=broken_only))
        np.testing.assert_array_equal(rule.scores, core.statistic)
        np.testing.assert_array_equal(rule.flagged, core.flagged)
        np.testing.assert_array_equal(triage_statistic(at), core.statistic)
        captions = image_captions(at)
        strongest = int(core.flagged[np.argmax(core.statistic[core.flagged])])
        assert f"#{strongest} · {evidence_text('d', core.statistic[strongest])}" in captions
        goto(at, "influence_collapse")
        drawn = scatter_statistic(at, result.n_train)
        np.testing.assert_array_equal(drawn, statistic_shown(core.statistic))
        if broken_only:
            with_broken = core.statistic
    assert not np.allclose(with_broken, core.statistic)  # the toggle moved all three together
