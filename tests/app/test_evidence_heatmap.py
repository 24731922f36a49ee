"""The Triage heatmap: an undefined effect size is a blank cell, not the end of the colour scale."""

from __future__ import annotations

import numpy as np

from deltainf_core.collapse import TransformCollapse
from pages.ui.evidence import evidence_heatmap


def test_undefined_d_is_blank_and_finite_d_is_clipped():
    d = np.array([[np.inf, 3.0], [25.0, -np.inf]])
    tc = TransformCollapse(indices=np.array([7, 9]), transforms=["flip", "blur"], n_copies=np.array([1, 4]),
                           break_rate=np.array([1.0, 0.5]), effect_size=d, mean_delta=np.array([[-2e5, -1.0],
                                                                                                 [-3.0, 0.5]]),
                           pooled=np.array([4.0, 9.0]), kept_only=True)
    trace = evidence_heatmap(tc).data[0]
    z = np.array(trace.z, dtype=float)
    # rows: strongest pooled d first (#9, then #7)
    assert list(trace.y) == ["#9 (d 9.0)", "#7 (d 4.0)"]
    assert z[0, 0] == 10.0 and np.isnan(z[0, 1])
    assert np.isnan(z[1, 0]) and z[1, 1] == 3.0
    custom = np.array(trace.customdata)
    assert custom[1, 0, 0].startswith("undefined") and custom[1, 0, 1] == "-2e+05"
    assert custom[0, 0, 0] == "25.0" and list(trace.x) == ["flip (100% broken)", "blur (50% broken)"]
