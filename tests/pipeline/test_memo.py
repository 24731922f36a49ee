"""The in-process memo stays bounded whatever the app's sessions ask for."""

from __future__ import annotations

import pytest

from deltainf_core.pipeline.memo import LRU


def test_lru_keeps_the_most_recently_used():
    memo = LRU[int](2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "a" is now the most recent
    memo.put("c", 3)
    assert "b" not in memo and memo.get("a") == 1 and memo.get("c") == 3 and len(memo) == 2


def test_get_or_make_computes_once():
    memo = LRU[int](3)
    calls = []
    assert memo.get_or_make("k", lambda: calls.append(1) or 7) == 7
    assert memo.get_or_make("k", lambda: calls.append(1) or 8) == 7
    assert calls == [1]


def test_pipeline_memos_are_bounded(tiny_scenario, cache_dir):
    from dataclasses import replace

    from deltainf_core import Pipeline, Store

    pipe = Pipeline(Store(cache_dir), memo_size=1)
    for seed in (0, 1):
        pipe.poisoned(replace(tiny_scenario, attack=replace(tiny_scenario.attack, seed=seed)))
    assert all(len(memo) <= memo.size for memo in pipe._memo.values())
    assert len(pipe._memo["poison"]) == 1
    with pytest.raises(ValueError):
        LRU(0)
