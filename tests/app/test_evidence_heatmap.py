"""The Triage heatmap: an undefined effect size is a blank cell, the colour scale is the data's own on a
log scale (nothing saturates), and every row of a page is labelled in the tiles' order."""

from __future__ import annotations

import numpy as np

from deltainf_core.collapse import TransformCollapse
from pages.ui.evidence import LABELLED_ROWS, _shade, evidence_heatmap


def _tc(d: np.ndarray, indices=None, pooled=None) -> TransformCollapse:
    n, t = d.shape
    return TransformCollapse(indices=np.arange(n) if indices is None else np.asarray(indices),
                             transforms=["flip", "blur"][:t], n_copies=np.array([1, 4])[:t],
                             break_rate=np.array([1.0, 0.5])[:t], effect_size=d,
                             mean_delta=np.full(d.shape, -3.0) if n else np.zeros(d.shape),
                             pooled=np.arange(n, dtype=float) if pooled is None else np.asarray(pooled),
                             kept_only=True)


def test_undefined_d_is_blank_and_the_rows_keep_the_tiles_order():
    d = np.array([[np.inf, 3.0], [25.0, -np.inf]])
    tc = _tc(d, indices=[7, 9], pooled=[4.0, 9.0])
    tc.mean_delta = np.array([[-2e5, -1.0], [-3.0, 0.5]])
    trace = evidence_heatmap(tc).data[0]
    z = np.array(trace.z, dtype=float)
    assert list(trace.y) == ["#7 (d 4.0)", "#9 (d 9.0)"]  # the order given (the page's tiles), not re-sorted
    assert np.isnan(z[0, 0]) and np.isnan(z[1, 1])
    assert z[0, 1] == _shade(3.0) and z[1, 0] == _shade(25.0)  # a log scale, no clipping at 10
    custom = np.array(trace.customdata)
    assert custom[0, 0, 0].startswith("undefined") and custom[0, 0, 1] == "-2e+05"
    assert custom[1, 0, 0] == "25.0" and custom[0, 1, 2] == "50% of the affected images' copies"
    assert list(trace.x) == ["horizontal flip", "Gaussian blur"]


def test_the_colour_range_spans_the_data_so_large_d_stay_apart():
    d = np.array([[5.0, 15.0], [150.0, 400.0]])
    trace = evidence_heatmap(_tc(d), threshold=2.0).data[0]
    assert trace.zmin == _shade(5.0) and trace.zmax == _shade(400.0)  # not ±10: 150 and 400 differ in colour
    assert len({round(float(v), 6) for v in np.ravel(trace.z)}) == 4
    ticks = list(trace.colorbar.ticktext)
    assert "5" in ticks and "100" in ticks  # the colour bar speaks in d, not in log units
    low = evidence_heatmap(_tc(np.array([[1.0, 15.0]])), threshold=2.0).data[0]
    assert low.zmin == _shade(2.0)  # below the rule's effect size: the palest colour


def test_every_row_of_a_page_is_labelled_and_long_lists_use_the_hover():
    page = evidence_heatmap(_tc(np.full((48, 2), 3.0))).layout
    assert list(page.yaxis.tickvals) == [f"#{i} (d {i:.1f})" for i in range(48)]
    long = evidence_heatmap(_tc(np.full((LABELLED_ROWS + 1, 2), 3.0))).layout
    assert long.yaxis.showticklabels is False
