"""Collapse scatter, selection mapping, before/after bars and image helpers (no Streamlit).

The figures draw what the core computed (``collapse_panels``, a rule's statistic); the
numbers themselves are tested in ``tests/collapse``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from deltainf_core import CollapseQueries, ImageSet, collapse_panels, collapse_stats
from deltainf_core.collapse import collapse_effect_size
from deltainf_core.figures import (
    CLEAN,
    D_CLIP,
    NEUTRAL,
    POISON,
    before_after_figure,
    collapse_figure,
    selected_training_indices,
    statistic_shown,
    symlog,
    symlog_ticks,
    to_display,
)

TRANSFORMS = ["flip", "blur", "invert"]
POISONS = np.array([3, 7, 11])


def synthetic(n_train: int = 40, n_images: int = 2, copies: int = 6, seed: int = 0):
    """Scores where poisons support the originals strongly and lose it on every copy."""
    rng = np.random.default_rng(seed)
    image_of, is_orig, tnames = [], [], []
    for k in range(n_images):
        image_of.append(k)
        is_orig.append(True)
        tnames.append("")
        for c in range(copies):
            image_of.append(k)
            is_orig.append(False)
            tnames.append(TRANSFORMS[c % len(TRANSFORMS)])
    q = len(image_of)
    scores = rng.normal(0, 50, size=(q, n_train)).astype(np.float32)
    orig = np.flatnonzero(is_orig)
    scores[np.ix_(orig, POISONS)] = 5e4
    copies_rows = np.flatnonzero(~np.asarray(is_orig))
    scores[np.ix_(copies_rows, POISONS)] = rng.normal(-100, 10, size=(len(copies_rows), len(POISONS)))
    images = ImageSet(torch.zeros(q, 1, 4, 4), torch.zeros(q, dtype=torch.long), tuple("0123456789"))
    queries = CollapseQueries(images, np.asarray(image_of), np.asarray(is_orig), np.asarray(tnames, dtype=object))
    return scores, queries


def panels_and_d(scores, queries, transforms=TRANSFORMS):
    return collapse_panels(collapse_stats(scores, queries), transforms), collapse_effect_size(scores, queries,
                                                                                             transforms)


def _panel_traces(fig: go.Figure, xaxis: str) -> list:
    return [t for t in fig.data if t.xaxis == xaxis]


def test_scatter_is_webgl_with_clean_then_flagged_rings_then_poisons_on_top():
    scores, queries = synthetic()
    panels, d = panels_and_d(scores, queries)
    flagged = np.array([3, 7, 20])
    fig = collapse_figure(panels, d, "d", "effect size d", 2.0, POISONS, flagged)
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert len(fig.data) == 3 * (1 + len(TRANSFORMS))  # the d panel plus one per transformation
    first = _panel_traces(fig, "x")
    assert [t.legendgroup for t in first] == ["clean", "flagged", "poison"]  # later traces draw on top
    assert first[0].marker.color == CLEAN and first[2].marker.color == POISON
    np.testing.assert_array_equal(first[2].customdata, POISONS)
    np.testing.assert_array_equal(first[1].customdata, flagged)
    clean_ids = first[0].customdata
    assert np.asarray(clean_ids).dtype == np.int32
    assert set(clean_ids) == set(range(40)) - set(POISONS.tolist())
    for t in fig.data:
        assert np.asarray(t.x).dtype == np.float32 and np.asarray(t.y).dtype == np.float32
    # one legend entry per category
    assert sum(bool(t.showlegend) for t in fig.data) == 3
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "effect size d" and any("Gaussian blur" in s for s in titles)
    # the statistic panel draws exactly the statistic it was given (clipped), by training index
    for trace in first:
        np.testing.assert_array_equal(trace.y, statistic_shown(d)[trace.customdata])
    assert any(s.y0 == 2.0 for s in fig.layout.shapes)  # the threshold line


def test_statistic_is_drawn_clipped_and_finite():
    shown = statistic_shown(np.array([np.inf, -np.inf, np.nan, 3.5]))
    assert shown.tolist() == [D_CLIP, -D_CLIP, 0.0, 3.5] and shown.dtype == np.float32


def test_scatter_without_ground_truth_or_statistic_is_neutral_grey():
    scores, queries = synthetic()
    panels, _ = panels_and_d(scores, queries)
    fig = collapse_figure(panels, None, poisons=None, flagged=None)
    assert {t.marker.color for t in fig.data} == {NEUTRAL}
    assert len(fig.data) == len(TRANSFORMS)


def test_poisons_fall_below_zero_on_every_transformation_panel():
    scores, queries = synthetic()
    panels, _ = panels_and_d(scores, queries)
    for t in TRANSFORMS:
        assert (panels.delta[t][POISONS] < -1e4).all()


def test_selection_maps_back_through_customdata_across_traces():
    scores, queries = synthetic()
    panels, d = panels_and_d(scores, queries)
    fig = collapse_figure(panels, d, poisons=POISONS, flagged=np.array([3, 20]))
    # a box selection that touches points of several traces (the point_index is per trace!)
    points = []
    for curve, trace in enumerate(fig.data[:3]):
        for j in range(min(2, len(trace.customdata))):
            points.append({"curve_number": curve, "point_index": j, "customdata": int(trace.customdata[j])})
    expected = sorted({int(fig.data[c].customdata[j]) for c in range(3)
                       for j in range(min(2, len(fig.data[c].customdata)))})
    event = {"selection": {"points": points, "point_indices": [p["point_index"] for p in points]}}
    np.testing.assert_array_equal(selected_training_indices(event), expected)
    # also as attribute access (Streamlit's event object) and with scalar customdata
    obj = SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": 5}, {"customdata": [2.0, 1, 1]}]))
    np.testing.assert_array_equal(selected_training_indices(obj), [2, 5])


@pytest.mark.parametrize("event", [None, {}, {"selection": {"points": []}}, {"selection": {"points": [{"x": 1}]}}])
def test_empty_or_odd_selections_give_no_indices(event):
    out = selected_training_indices(event)
    assert out.dtype == np.int64 and out.size == 0


def test_symlog_keeps_sign_and_order():
    v = np.array([-1e6, -10.0, 0.0, 10.0, 1e6])
    s = symlog(v, 1.0)
    assert s.dtype == np.float32 and s[2] == 0
    assert np.all(np.diff(s) > 0) and s[0] == -s[-1]
    vals, text = symlog_ticks(1.0, float(s.min()), float(s.max()))
    assert "0" in text and any(t.startswith("−") for t in text) and vals == sorted(vals)


def test_before_after_bars_in_percent_with_success_line():
    fig = before_after_figure({"clean_accuracy": 0.9, "poison_success_rate": 0.95},
                              {"clean_accuracy": 0.88, "poison_success_rate": 0.01}, after_label="after eu",
                              oracle_accuracy=0.89)
    ys = {(t.x[0], t.xaxis): t.y[0] for t in fig.data}
    assert ys[("poisoned model", "x")] == pytest.approx(90.0)
    assert ys[("after eu", "x2")] == pytest.approx(1.0)
    assert ys[("oracle retrain", "x")] == pytest.approx(89.0)
    assert any(s.y0 == pytest.approx(5.0) for s in fig.layout.shapes)


def test_small_psr_labels_sit_above_the_success_line():
    fig = before_after_figure({"clean_accuracy": 0.9, "poison_success_rate": 0.95},
                              {"clean_accuracy": 0.88, "poison_success_rate": 0.0}, after_label="after eu",
                              oracle_psr=0.02)
    line = next(s.y0 for s in fig.layout.shapes)
    labels = {a.text: a for a in fig.layout.annotations if a.text and a.text.endswith("%") and a.x is not None}
    for text in ("0.0%", "2.0%"):  # drawn as annotations above the line, not as the bars' own text
        assert labels[text].y > line and labels[text].yanchor == "bottom"
    psr_text = [t.text for t in fig.data if t.xaxis == "x2"]
    assert psr_text.count(None) == 2 and ("95.0%",) in [tuple(t) for t in psr_text if t is not None]


def test_before_after_without_ground_truth_says_not_measurable():
    fig = before_after_figure({"clean_accuracy": 0.9, "poison_success_rate": None},
                              {"clean_accuracy": 0.85, "poison_success_rate": None})
    assert all(t.xaxis == "x" for t in fig.data)
    assert any("not measurable" in (a.text or "") for a in fig.layout.annotations)


def test_image_helpers_make_crisp_uint8_tiles():
    gray = torch.rand(1, 28, 28)
    tile = to_display(gray)
    assert tile.dtype == np.uint8 and tile.shape == (84, 84)
    assert tile[0, 0] == tile[2, 2]  # nearest-neighbour enlargement
    rgb = to_display(torch.rand(3, 32, 32))
    assert rgb.shape == (96, 96, 3)


def test_stored_uint8_pixels_and_unit_floats_show_alike():
    pixels = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert np.array_equal(to_display(pixels), to_display(pixels.float() / 255.0))
    assert to_display(pixels).max() == int(pixels.max())


def test_fifty_thousand_points_are_all_drawn_once_per_panel():
    n = 50_000
    scores, queries = synthetic(n_train=n, n_images=2, copies=14)
    panels, d = panels_and_d(scores, queries, TRANSFORMS[:2])
    fig = collapse_figure(panels, d, poisons=POISONS, flagged=POISONS)
    assert sum(len(t.x) for t in fig.data if t.legendgroup in ("clean", "poison")) == 3 * n


# -- one story: counts, titles and the cut line ------------------------------------------------------
def test_a_toggle_and_its_panel_name_the_same_count():
    """The collapse page's chip and its panel read one number (``copies_counted``), broken copies or all."""
    from deltainf_core.collapse.statistics import broken_copies, copies_counted
    from deltainf_core.figures import copies_text

    scores, queries = synthetic(copies=12)
    predicted = np.where(queries.is_original, 1, np.where(queries.transform == "blur", 1, 0))  # blur never breaks
    predicted[np.flatnonzero(queries.transform == "flip")[:2]] = 1  # two flips keep the target
    stats = collapse_stats(scores, queries, broken_copies(queries, predicted, 1))
    for kept in (True, False):
        counts = copies_counted(stats, None, kept)
        panels = collapse_panels(stats, TRANSFORMS, kept)
        for t in panels.transforms:
            assert copies_text(t, *counts[t]) == copies_text(t, panels.n_copies[t], panels.scored[t])
            assert counts[t][0] == panels.n_copies[t]
        assert panels.scored == {t: n for t, (_, n) in counts.items()}
    counts = copies_counted(stats, None, True)
    assert counts["flip"] == (6, 8) and counts["blur"] == (0, 8)
    assert "blur" not in collapse_panels(stats, TRANSFORMS, True).transforms


def test_a_panel_without_counted_copies_says_why():
    from deltainf_core.collapse import CollapsePanels
    from deltainf_core.figures import hidden_panel_notes

    panels = CollapsePanels(np.zeros(3, np.float32), {"flip": np.zeros(3, np.float32)}, {"flip": 9},
                            {"flip": 9, "color_jitter": 14, "channel_swap": 17})
    notes = hidden_panel_notes(panels, one_channel=True)
    assert len(notes) == 2 and notes[0].startswith("Colour jitter has no panel")
    assert "leaves a one-channel image unchanged, so none of its 17 copies broke the attack" in notes[1]
    assert "the model still calls each one the target" in hidden_panel_notes(panels, one_channel=False)[1]


def test_the_dashed_line_is_where_the_rule_cut_and_the_title_is_in_words():
    from deltainf_core.collapse.evidence import rule_cut
    from deltainf_core.figures import statistic_title

    d = np.array([0.5, 2.5, 5.58, 9.0, np.inf, 3.0])
    assert rule_cut(d, [2, 3, 4]) == pytest.approx(5.58)  # not the candidate floor of 2
    assert rule_cut(d, [3, 4, 5]) is None  # 5.58 is above 3.0 yet not flagged: no single cut
    assert rule_cut(d, []) is None
    scores, queries = synthetic()
    panels, _ = panels_and_d(scores, queries)
    fig = collapse_figure(panels, d[np.arange(40) % 6], "d", statistic_title("delta", "d", 5.58), 5.58)
    assert [round(s.y0, 2) for s in fig.layout.shapes] == [5.58]
    assert fig.layout.annotations[0].text == "Collapse effect size d · delta flags d ≥ 5.6"
    assert statistic_title("delta_label", "d", None) == "Collapse effect size d · delta_label's flagged set is not " \
                                                        "a cut on it"
    assert "(" not in statistic_title("delta", "d", 2.0)  # no "(effect size 2.0, broken only True, …)"
