"""The heap trimmer that keeps kronfluence's passes from growing the heap a batch at a time."""

from __future__ import annotations

import numpy as np

from deltainf_core import memory


def test_trimmer_trims_only_after_real_growth_and_never_every_batch(monkeypatch):
    rss = {"now": 1000 * 2**20}
    trims = []

    def fake_trim(pad: int) -> int:
        trims.append(rss["now"])
        rss["now"] = 1000 * 2**20  # everything freed goes back
        return 1

    monkeypatch.setattr(memory, "_MALLOC_TRIM", fake_trim)
    monkeypatch.setattr(memory, "rss_bytes", lambda: rss["now"])
    trim = memory.HeapTrimmer(step_mb=100)
    for grown_mb in (10, 50, 99):  # below the step: left alone
        rss["now"] = (1000 + grown_mb) * 2**20
        trim()
    assert trims == []
    rss["now"] = 1100 * 2**20
    trim()
    assert len(trims) == 1 and trim.trims == 1
    rss["now"] = 1080 * 2**20  # the first batch after a trim faults 80 MB back in: the step becomes
    trim()                      # twice that, so a model with big batches is not trimmed every batch
    assert trim.step == 160 * 2**20 and len(trims) == 1
    rss["now"] = 1150 * 2**20
    trim()
    assert len(trims) == 1
    rss["now"] = 1170 * 2**20
    trim()
    assert len(trims) == 2


def test_trimmer_does_nothing_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(memory, "_MALLOC_TRIM", None)
    trim = memory.HeapTrimmer(step_mb=1)
    big = np.ones(4 * 2**20)
    del big
    trim()
    assert not trim.enabled and trim.trims == 0 and memory.release_freed_memory() is False


def test_trimming_callback_still_reports_every_batch(monkeypatch):
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: 1)
    seen = []
    step = memory.trimming(seen.append)
    for n in (64, 64, 17):
        step(n)
    assert seen == [64, 64, 17]
