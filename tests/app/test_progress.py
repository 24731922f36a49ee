"""Progress while the analyst waits: a slow stage's bar moves with an ETA; a comparison counts its cells."""

from __future__ import annotations

import time

import pytest

from deltainf_core import compare
from deltainf_core.training import Meter
from pages.ui import jobs


class FakeBar:
    def __init__(self) -> None:
        self.drawn: list[tuple[float, str]] = []

    def progress(self, value: float, text: str = "") -> None:
        self.drawn.append((value, text))

    def empty(self) -> None:
        pass


@pytest.fixture
def bar(monkeypatch):
    fake = FakeBar()
    monkeypatch.setattr(jobs.st, "progress", lambda value, text="": fake)
    return fake


def slow_stage(sink, steps: int = 8, pause: float = 0.12) -> None:
    """A stand-in for factor fitting: reports through the engine's ``Meter`` as it works."""
    meter = Meter(lambda frac, msg: sink("influence", frac, msg), steps, "fitting ekfac factors on 400 images:",
                  every=0.0)
    for _ in range(steps):
        time.sleep(pause)  # longer than the bar's redraw limit, so every step is drawn
        meter.add(1)


def test_a_slow_stage_moves_the_bar_with_an_eta(bar):
    progress = jobs.ProgressBar("Influence collapse")
    slow_stage(progress)
    fractions = [f for f, _ in bar.drawn]
    assert len(fractions) == 8 and fractions == sorted(fractions) and len(set(fractions)) == 8
    assert fractions[-1] == 1.0
    for _, text in bar.drawn[:-1]:
        assert "fitting ekfac factors" in text and "ETA" in text and "elapsed" in text
        assert "left in this step" not in text  # the meter's ETA is not doubled by the bar's own


def test_a_comparison_says_which_cell_and_how_long_is_left(bar, monkeypatch, tiny_scenario, tmp_path):
    def fake_cell(pipe, scn):
        time.sleep(0.12)
        pipe.progress("train", 0.5, "epoch 1 of 2")
        time.sleep(0.12)
        return {"psr_before": 1.0, "acc_before": 0.9, "psr_after": 0.0, "acc_after": 0.9, "success": True,
                "n_flagged": 3, "precision": 1.0, "recall": 1.0}

    monkeypatch.setattr(compare, "measure_cell", fake_cell)
    monkeypatch.setattr(compare, "save_comparison", lambda result, out_dir: result)

    class Pipe:
        progress = None

    progress = jobs.ProgressBar("Comparing methods")
    pipe = Pipe()
    pipe.progress = progress
    n = compare.n_cells(["badnet"], ["delta", "spectral"], ["eu", "ssd"])
    result = compare.run_comparison(tiny_scenario, ["badnet"], ["delta", "spectral"], ["eu", "ssd"],
                                    progress=progress, out_dir=str(tmp_path), pipeline=pipe)
    assert n == len(result["rows"]) == 3
    texts = [t for _, t in bar.drawn]
    for i in range(1, n + 1):
        assert any(f"cell {i} of {n}" in t for t in texts), i
    later = [t for t in texts if "cell 2 of 3" in t]
    assert later and all("left" in t for t in later)  # an overall estimate once a cell has finished
    inner = [(f, t) for f, t in bar.drawn if "epoch 1 of 2" in t]
    assert inner and all("cell" in t for _, t in inner)  # the running step is named inside its cell
    assert [f for f, _ in inner] == sorted(f for f, _ in inner) and inner[0][0] == 0.0  # the cells' bar


def test_the_running_estimate_follows_the_cells_done():
    assert compare.cell_message(0, 4, "badnet × delta × eu", 0.0) == "cell 1 of 4: badnet × delta × eu"
    assert compare.cell_message(2, 4, "x", 120.0).endswith("about 2 min left")
