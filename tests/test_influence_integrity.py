"""Influence factors and score chunks: verified on read, repaired when damaged, resumed when interrupted.

A tiny workload: 96 mnist5k images, an untrained SmallCNN, 3 queries, partitions and
chunks of 32 images (so fitting and scoring each have three resumable units).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deltainf_core import influence
from deltainf_core.config import InfluenceConfig
from deltainf_core.data.base import ImageSet
from deltainf_core.influence import InfluenceEngine
from deltainf_core.models import build_model
from deltainf_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 32
COV0 = "activation_covariance_data_partition0_module_partition0.safetensors"


@pytest.fixture(scope="module")
def tiny(mnist_splits):
    train = mnist_splits.train.subset(np.arange(96)).to_uint8()  # exact: the digits are 8-bit
    queries = mnist_splits.test.subset(np.arange(3)).to_uint8()
    torch.manual_seed(0)
    model = build_model("smallcnn", train.image_shape, 10, mnist_splits.mean, mnist_splits.std)
    return model, train, queries


def _engine(tiny, cache: Path, progress=None, train: ImageSet | None = None) -> InfluenceEngine:
    model, base, _ = tiny
    store = Store(str(cache))
    eng = InfluenceEngine(model, base if train is None else train, InfluenceConfig(train_batch_size=32), str(cache),
                          score_cache=(store.get, store.set), **({"progress": progress} if progress else {}))
    eng.progress_every = 0.0
    return eng


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(influence, "CHUNK", CHUNK)


@pytest.fixture(scope="module")
def clean_scores(tiny, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(influence, "CHUNK", CHUNK)
    try:
        return _engine(tiny, tmp_path_factory.mktemp("clean")).scores(tiny[2])
    finally:
        mp.undo()


def _factor_dir(eng: InfluenceEngine) -> Path:
    return Path(eng.factor_dir())


def test_uint8_and_float_storage_give_the_same_scores(tiny, tmp_path, clean_scores):
    _, train, queries = tiny
    assert train.is_uint8
    as_float = ImageSet(train.float_batch(), train.labels, train.classes)
    q_float = ImageSet(queries.float_batch(), queries.labels, queries.classes)
    got = _engine(tiny, tmp_path, train=as_float).scores(q_float)
    np.testing.assert_array_equal(got, clean_scores)


def test_progress_moves_with_a_fraction_and_an_eta(tiny, tmp_path):
    seen = []
    eng = _engine(tiny, tmp_path, progress=lambda f, m: seen.append((f, m)))
    eng.scores(tiny[2])
    for phase in ("fitting ekfac factors on 96 images", "scoring 3 queries against 96 images"):
        fracs = [f for f, m in seen if m.startswith(phase) and "ETA" in m]
        assert len(fracs) >= 3 and fracs == sorted(fracs) and 0 < fracs[0] < 1 and fracs[-1] == 1.0


def test_corrupt_score_chunk_is_recomputed_not_served(tiny, tmp_path, clean_scores, caplog):
    eng = _engine(tiny, tmp_path)
    eng.scores(tiny[2])
    store = Store(str(tmp_path))
    keys = [k for k in store._cache.iterkeys() if k.startswith("scores:")]
    assert len(keys) == 3
    store._cache.set(keys[1], b"DIC1" + os.urandom(200))  # random bytes in one chunk
    store.set(keys[2], np.full((3, CHUNK), np.nan, dtype=np.float32))  # well-formed but not finite
    with caplog.at_level(logging.WARNING, logger="deltainf"):
        again = _engine(tiny, tmp_path).scores(tiny[2])
    np.testing.assert_array_equal(again, clean_scores)
    corrupt = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(corrupt) == 2 and all("cached scores" in m and "recomputing" in m for m in corrupt)


@pytest.mark.parametrize("damage", ["scribble", "truncate", "delete"])
def test_damaged_factor_file_is_refitted(tiny, tmp_path, clean_scores, caplog, damage):
    eng = _engine(tiny, tmp_path)
    eng.fit_factors()
    path = _factor_dir(eng) / "lambda_matrix.safetensors"
    if damage == "scribble":
        data = bytearray(path.read_bytes())
        data[-64:] = os.urandom(64)
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.unlink()
    with caplog.at_level(logging.WARNING, logger="deltainf"):
        got = _engine(tiny, tmp_path).scores(tiny[2])
    np.testing.assert_array_equal(got, clean_scores)
    assert "cached influence factors" in caplog.text and "refitting" in caplog.text


def test_interrupted_fitting_resumes_at_its_partition(tiny, tmp_path, clean_scores):
    def stop_in_second_partition(frac, msg):
        parts = tmp_path.glob("kronfluence/*/*/PARTS")
        if msg.startswith("fitting") and any("covariance0" in p.read_text() for p in parts):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _engine(tiny, tmp_path, progress=stop_in_second_partition).fit_factors()
    eng = _engine(tiny, tmp_path)
    first = _factor_dir(eng) / COV0
    stamp = first.stat().st_mtime_ns
    (_factor_dir(eng) / COV0.replace("partition0", "partition1")).write_bytes(b"torn")  # half-written by a kill
    np.testing.assert_array_equal(eng.scores(tiny[2]), clean_scores)
    assert first.stat().st_mtime_ns == stamp  # the finished partition was kept, not refitted


def test_interrupted_scoring_resumes_at_its_chunk(tiny, tmp_path, clean_scores):
    _engine(tiny, tmp_path).fit_factors()
    store = Store(str(tmp_path))

    def stop_in_second_chunk(frac, msg):
        if msg.startswith("scoring") and any(k.startswith("scores:") for k in store._cache.iterkeys()):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _engine(tiny, tmp_path, progress=stop_in_second_chunk).scores(tiny[2])
    done_before = sum(k.startswith("scores:") for k in store._cache.iterkeys())
    assert done_before == 1
    eng = _engine(tiny, tmp_path)
    np.testing.assert_array_equal(eng.scores(tiny[2]), clean_scores)
    assert eng.passes == 2  # only the two missing chunks were scored


WORKER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    import numpy as np, torch
    torch.set_num_threads({threads})  # as the test process: float sums depend on the thread count
    from deltainf_core import influence, integrity, store as store_mod
    from deltainf_core.config import InfluenceConfig
    from deltainf_core.influence import InfluenceEngine
    from deltainf_core.models import build_model
    influence.CHUNK = {chunk}
    model, train, queries = torch.load(sys.argv[2], weights_only=False)
    cache, pause = sys.argv[1], sys.argv[3]
    if pause == "factors":  # stop for good after the first partition so the test can kill -9 here
        record = integrity.StepManifest.record
        def slow_record(self, step):
            record(self, step)
            print("recorded", step, flush=True)
            time.sleep(600)
        integrity.StepManifest.record = slow_record
    store = store_mod.Store(cache)
    eng = InfluenceEngine(model, train, InfluenceConfig(train_batch_size=32), cache,
                          score_cache=(store.get, store.set))
    np.save(sys.argv[4], eng.scores(queries))
""")


def _worker(tmp_path: Path, tiny, cache: Path, pause: str, out: str) -> subprocess.Popen:
    script, data = tmp_path / "worker.py", tmp_path / "tiny.pt"
    script.write_text(WORKER.format(root=str(ROOT), chunk=CHUNK, threads=torch.get_num_threads()))
    if not data.exists():
        torch.save(tiny, data)
    return subprocess.Popen([sys.executable, str(script), str(cache), str(data), pause, out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_during_factor_fitting_resumes(tiny, tmp_path, clean_scores):
    cache = tmp_path / "cache"
    proc = _worker(tmp_path, tiny, cache, "factors", str(tmp_path / "never.npy"))
    line = proc.stdout.readline()
    assert line.startswith("recorded covariance0"), proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    eng = _engine(tiny, cache)
    stamp = (_factor_dir(eng) / COV0).stat().st_mtime_ns
    np.testing.assert_array_equal(eng.scores(tiny[2]), clean_scores)
    assert (_factor_dir(eng) / COV0).stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_two_processes_on_one_fresh_cache_agree(tiny, tmp_path, clean_scores):
    cache = tmp_path / "cache"
    procs = [_worker(tmp_path, tiny, cache, "none", str(tmp_path / f"out{i}.npy")) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
    a, b = (np.load(tmp_path / f"out{i}.npy") for i in range(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, clean_scores)
    assert not list(cache.glob("kronfluence/*/scores_*"))  # no working folder left behind


def test_lock_waits_for_a_running_fit(tiny, tmp_path):
    """While another process holds a factor set's lock, fitting waits instead of writing beside it."""
    import threading

    from deltainf_core.store import key_lock

    eng = _engine(tiny, tmp_path)
    lock = key_lock(str(tmp_path), f"factors:{eng.factors_name}")
    lock.acquire()
    done = threading.Event()
    t = threading.Thread(target=lambda: (eng.fit_factors(), done.set()))
    t.start()
    time.sleep(1.0)
    assert not done.is_set()
    lock.release()
    t.join(timeout=300)
    assert done.is_set() and eng.factors_ready()


@pytest.mark.parametrize("field, value", [("amp_dtype", "fp8"), ("lambda_max_examples", 0), ("query_memory_mb", 0),
                                          ("query_gradient_rank", -1)])
def test_bad_influence_options_are_one_sentence(tiny, tmp_path, field, value):
    from dataclasses import replace

    from deltainf_core.errors import ConfigError

    model, train, _ = tiny
    with pytest.raises(ConfigError, match=field):
        InfluenceEngine(model, train, replace(InfluenceConfig(), **{field: value}), str(tmp_path))
