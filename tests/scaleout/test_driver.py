"""The driver's merge: units computed in their own folders give the local engine's factor folder and scores, bit
for bit (same thread count), and a unit already committed or recorded is never computed again."""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import torch
from conftest import SerialBackend, assert_same_factors, engine

from deltainf_core.scaleout.driver import UnitDriver
from deltainf_core.scaleout.files import scaleout_dir


def _steps(eng) -> dict:
    with open(os.path.join(eng.factor_dir(), "PARTS")) as fh:
        return json.load(fh)["steps"]


def _reference(tiny, cache):
    ref = engine(tiny, cache)
    ref.fit_factors()
    return ref.factor_dir()


def test_units_give_the_local_engines_factors_and_scores(tiny, tmp_path, small_chunks):
    local = engine(tiny, tmp_path / "local")
    backend = SerialBackend()
    units = engine(tiny, tmp_path / "units", UnitDriver(backend, torch.get_num_threads()))
    queries = tiny[2]
    expected = local.scores(queries)
    got = units.scores(queries)
    assert backend.ran == ["covariance0", "covariance1", "covariance2", "eigen", "lambda0", "lambda1", "lambda2",
                           "scores 0-32", "scores 32-64", "scores 64-96"]
    assert_same_factors(units.factor_dir(), local.factor_dir())  # the same files, bit-identical tensors
    assert _steps(units) == _steps(local)  # the same manifest steps: either engine resumes the other's folder
    np.testing.assert_array_equal(got, expected)
    assert units.passes == local.passes == 3
    assert not os.path.exists(scaleout_dir(str(tmp_path / "units"), "units", units.factors_name))


def test_a_resumed_fit_sends_only_the_missing_units(tiny, tmp_path, small_chunks):
    cache = tmp_path / "cache"
    first = SerialBackend()
    eng = engine(tiny, cache, UnitDriver(first, torch.get_num_threads()))

    class Lost(Exception):
        pass

    def lose_after_two(jobs, board):  # the driver dies after two covariance units committed
        SerialBackend().run(jobs[:2], board)
        raise Lost

    eng.runner.backend.run = lose_after_two
    with contextlib.suppress(Lost):
        eng.fit_factors()
    again = SerialBackend()
    eng2 = engine(tiny, cache, UnitDriver(again, torch.get_num_threads()))
    eng2.fit_factors()
    assert again.ran == ["covariance2", "eigen", "lambda0", "lambda1", "lambda2"]
    assert_same_factors(eng2.factor_dir(), _reference(tiny, tmp_path / "local"))


def test_the_local_engine_resumes_a_folder_the_units_began(tiny, tmp_path, small_chunks):
    cache = tmp_path / "cache"
    eng = engine(tiny, cache, UnitDriver(SerialBackend(), torch.get_num_threads()))

    class Lost(Exception):
        pass

    calls = []

    def lose_in_lambda(jobs, board):
        calls.append([j.step for j in jobs])
        if jobs[0].step.startswith("lambda"):
            raise Lost
        SerialBackend().run(jobs, board)

    eng.runner.backend.run = lose_in_lambda
    with contextlib.suppress(Lost):
        eng.fit_factors()
    local = engine(tiny, cache)  # the local engine on the same cache finishes the folder
    local.fit_factors()
    assert calls[-1] == ["lambda0", "lambda1", "lambda2"]
    assert_same_factors(local.factor_dir(), _reference(tiny, tmp_path / "ref"))
