"""The store never serves a damaged entry, serves read-only caches, and computes each key once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from deltainf_core.errors import CacheError
from deltainf_core.store import STAGE_VERSIONS, Store, finite_array, finite_state_dict

ROOT = Path(__file__).resolve().parents[1]


def _entry_files(store: Store) -> list[Path]:
    """The files diskcache keeps large values in (a value under 32 KB lives in SQLite instead)."""
    return [p for p in Path(store.directory, "artefacts").rglob("*.val")]


def _scribble(path: Path, offset: int = 200, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    data[offset : offset + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_keys_carry_stage_versions_and_refuse_unknown_stages(tmp_path):
    store = Store(str(tmp_path))
    assert store.key("train", {"a": 1}).startswith(f"train:v{STAGE_VERSIONS['train']}:")
    assert store.key("train", {"a": 1}) != store.key("train", {"a": 2})
    with pytest.raises(ValueError, match="STAGE_VERSIONS"):
        store.key("nonexistent_stage", 1)


@pytest.mark.parametrize("damage", ["scribble", "truncate"])
def test_corrupt_entry_is_reported_once_deleted_and_recomputed(tmp_path, caplog, damage):
    store = Store(str(tmp_path))
    key = store.key("scores", "x")
    value = np.arange(50_000, dtype=np.float32).reshape(5, -1)
    store.set(key, value)
    (path,) = _entry_files(store)
    if damage == "scribble":
        _scribble(path)
    else:
        path.write_bytes(path.read_bytes()[:1000])
    calls = []

    def compute():
        calls.append(1)
        return value.copy()

    with caplog.at_level(logging.WARNING, logger="deltainf"):
        got, was_cached = store.cached(key, compute)
    assert not was_cached and calls == [1]
    np.testing.assert_array_equal(got, value)
    lines = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(lines) == 1 and "cached scores" in lines[0] and "recomputing" in lines[0]
    again, was_cached = store.cached(key, compute)  # the recomputed entry is whole again
    assert was_cached and calls == [1]
    np.testing.assert_array_equal(again, value)


def test_small_entries_in_sqlite_are_checked_too(tmp_path):
    store = Store(str(tmp_path))
    key = store.key("train", "small")
    store.set(key, {"seconds": 1.0})
    store._cache.set(key, b"DIC1" + b"\0" * 32 + b"garbage")  # a bad row written behind the store's back
    assert store.get(key) is None
    assert key not in store


def test_checks_reject_non_finite_weights_and_wrong_shapes(tmp_path, caplog):
    store = Store(str(tmp_path))
    ref = {"w": torch.zeros(3, 2), "b": torch.zeros(3)}
    key = store.key("train", "nan")
    store.set(key, {"state_dict": {"w": torch.full((3, 2), float("nan")), "b": torch.zeros(3)}, "seconds": 1})
    with caplog.at_level(logging.WARNING, logger="deltainf"):
        assert store.get(key, check=finite_state_dict(ref)) is None
    assert "cached model" in caplog.text and "not finite" in caplog.text
    store.set(key, {"state_dict": {"w": torch.zeros(2, 2), "b": torch.zeros(3)}, "seconds": 1})
    assert store.get(key, check=finite_state_dict(ref)) is None
    good = {"state_dict": {k: v + 1 for k, v in ref.items()}, "seconds": 1}
    store.set(key, good)
    assert torch.equal(store.get(key, check=finite_state_dict(ref))["state_dict"]["w"], ref["w"] + 1)
    assert finite_array((2, -1))(np.ones((2, 7))) is None
    assert "shape" in finite_array((2, 5))(np.ones((2, 7)))
    assert "non-finite" in finite_array((1, 2))(np.array([[1.0, np.inf]]))


def test_read_only_cache_serves_what_it_holds_and_names_the_path_otherwise(tmp_path):
    writer = Store(str(tmp_path))
    big, small = writer.key("scores", "big"), writer.key("train", "small")
    writer.set(big, np.ones((4, 20_000), dtype=np.float32))
    writer.set(small, {"seconds": 2.0})
    writer.close()
    reader = Store(str(tmp_path), read_only=True)
    np.testing.assert_array_equal(reader.get(big), np.ones((4, 20_000), dtype=np.float32))
    value, was_cached = reader.cached(small, lambda: pytest.fail("a complete cache must not recompute"))
    assert was_cached and value == {"seconds": 2.0}
    missing = reader.key("unlearn", "absent")
    with pytest.raises(CacheError) as err:
        reader.cached(missing, lambda: 1)
    msg = str(err.value)
    assert str(tmp_path) in msg and "--cache-dir" in msg and "read-only" in msg and "\n" not in msg


def test_unwritable_folder_is_opened_read_only(tmp_path, monkeypatch):
    Store(str(tmp_path)).set(Store(str(tmp_path)).key("train", 1), 1)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    store = Store(str(tmp_path))
    assert store.read_only and store.get(store.key("train", 1)) == 1


def test_lock_is_exclusive_between_threads(tmp_path):
    import threading
    import time

    store = Store(str(tmp_path))
    key = store.key("train", "t")
    inside, overlaps = [], []

    def work():
        with store.lock(key):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(0.2)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps


WORKER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from deltainf_core.store import Store
    store = Store(sys.argv[1])

    def compute():
        with open(os.path.join(sys.argv[1], "computed"), "a") as fh:
            fh.write(str(os.getpid()) + "\\n")
        time.sleep(1.5)
        return {{"value": 42, "by": os.getpid()}}

    value, was_cached = store.cached(store.key("train", "shared"), compute)
    print(value["by"], was_cached)
""")


def test_two_processes_compute_a_key_once_and_share_it(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT)))
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, str(script), str(cache)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert (cache / "computed").read_text().count("\n") == 1  # one computed, the other waited
    assert outs[0][0] == outs[1][0]  # both hold the value the first one computed
    assert sorted(o[1] for o in outs) == ["False", "True"]


def test_cache_dir_that_is_a_file_is_one_sentence(tmp_path):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    with pytest.raises(CacheError, match=r"is a file; pass --cache-dir"):
        Store(str(f))
