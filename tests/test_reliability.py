"""The whole ``run`` under faults (issue 18): a damaged cache, two runs at once, a killed run.

Each check compares a faulted run's results JSON with a clean run's on the same tiny
scenario: a fault may cost time, never change a result. The clean run is made once per
module; every other check works on its own copy of that cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import diskcache
import pytest
from cli_helpers import TINY_FLAGS as TINY

ROOT = Path(__file__).resolve().parents[1]

RESULT_FIELDS = ("poisoned", "detection", "unlearned", "affected_test_indices")
"""What must not change under a fault (timings and cache hits may)."""


def _cmd(cache: Path, out: Path, quiet: bool = True) -> list[str]:
    return [sys.executable, "-m", "deltainf_core", "run", *TINY, "--cache-dir", str(cache), "--out", str(out),
            *(["--quiet"] if quiet else [])]


def _run(cache: Path, out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(cache, out), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _results(path: Path) -> dict:
    r = json.loads(path.read_text())
    out = {k: r[k] for k in RESULT_FIELDS}
    out["unlearned"] = {k: v for k, v in (out["unlearned"] or {}).items() if k != "seconds"}
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    """A complete cache of the tiny run and that run's results."""
    root = tmp_path_factory.mktemp("clean")
    _run(root / "cache", root / "out.json")
    return root / "cache", _results(root / "out.json")


def _copy(cache: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "cache"
    shutil.copytree(cache, dst, ignore=shutil.ignore_patterns("*.lock"))
    return dst


def _damage_file(path: Path, n: int = 4096) -> None:
    """Random bytes over the middle of a file (or all of a small one)."""
    size = path.stat().st_size
    start = max(0, size // 2 - n // 2)
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(os.urandom(min(n, size - start)))


def _damage_entries(cache: Path, stage: str) -> int:
    """Random bytes into every cached artefact of ``stage``; how many were damaged."""
    damaged = 0
    with diskcache.Cache(str(cache / "artefacts")) as dc:
        for key in list(dc.iterkeys()):
            if not str(key).startswith(f"{stage}:"):
                continue
            handle = dc.get(key, read=True)
            if hasattr(handle, "name"):  # a large value lives in its own file
                handle.close()
                _damage_file(Path(handle.name))
            else:
                blob = bytearray(dc.get(key))
                mid = len(blob) // 2
                blob[mid : mid + 64] = os.urandom(len(blob[mid : mid + 64]))
                dc.set(key, bytes(blob))
            damaged += 1
    return damaged


def _drop_entries(cache: Path, *stages: str) -> None:
    with diskcache.Cache(str(cache / "artefacts")) as dc:
        for key in list(dc.iterkeys()):
            if str(key).split(":")[0] in stages:
                del dc[key]


def test_two_runs_on_one_fresh_cache_agree(tmp_path, clean):
    """Both finish (the second waits on the first's locks) with the clean run's results."""
    cache = tmp_path / "shared"
    procs = [subprocess.Popen(_cmd(cache, tmp_path / f"out{i}.json"), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=1200)
        assert p.returncode == 0, err[-2000:]
    assert _results(tmp_path / "out0.json") == _results(tmp_path / "out1.json") == clean[1]


@pytest.mark.parametrize("stage", ["train", "poison", "scores", "unlearn"])
def test_damaged_entry_is_recomputed_with_the_same_result(tmp_path, clean, stage):
    cache = _copy(clean[0], tmp_path)
    assert _damage_entries(cache, stage) > 0
    proc = _run(cache, tmp_path / "out.json")
    assert _results(tmp_path / "out.json") == clean[1]
    assert "corrupt" in proc.stderr and "recomputing" in proc.stderr  # reported, in one line per entry
    assert "Traceback" not in proc.stderr and "RuntimeWarning" not in proc.stderr


def test_damaged_factor_file_is_refitted_with_the_same_result(tmp_path, clean):
    cache = _copy(clean[0], tmp_path)
    files = sorted((cache / "kronfluence").rglob("*.safetensors"), key=lambda p: p.stat().st_size)
    assert files, "the clean run left no factor files"
    _damage_file(files[-1])
    _drop_entries(cache, "scores")  # scores are cached too: make the run read the factors again
    proc = _run(cache, tmp_path / "out.json")
    assert _results(tmp_path / "out.json") == clean[1]
    assert "corrupt" in proc.stderr and "Traceback" not in proc.stderr


def _kill_when(cmd: list[str], marker: str, timeout: float = 900) -> None:
    """Start ``cmd`` and ``kill -9`` it once its progress output shows ``marker``."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            bufsize=1)
    seen, t0 = "", time.monotonic()
    assert proc.stderr is not None
    while marker not in seen:
        chunk = proc.stderr.read(64)
        if not chunk or time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"the run ended or stalled before {marker!r}: {seen[-500:]}")
        seen = (seen + chunk)[-4000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize(("stages", "marker"), [
    (("scores", "unlearn"), "scoring"),  # killed while scoring: resumes at its chunk
    (("unlearn",), "unlearn "),          # killed while unlearning: the unlearned model is recomputed
])
def test_killed_run_resumes_with_the_same_result(tmp_path, clean, stages, marker):
    cache = _copy(clean[0], tmp_path)
    _drop_entries(cache, *stages)
    _kill_when(_cmd(cache, tmp_path / "out.json", quiet=False), marker)
    _run(cache, tmp_path / "out.json")
    assert _results(tmp_path / "out.json") == clean[1]
