"""The ray engine: an investigation on Ray tasks equals the local one, a worker killed mid-unit is retried with
the same result, and a cluster that cannot be reached (or Ray itself missing) is one line before any work.

The slow tests start a local cluster with ``ray.init(num_cpus=2)``; pin the test process to one core
(``taskset -c 1``) and its workers inherit it. Identity is bit for bit: the same trained model,
factor files with bit-identical tensors, equal score arrays and the same flagged set, with one
torch thread in the local run and in every unit (two threads would give other sums).
"""

from __future__ import annotations

import glob
import os
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest
import torch
from conftest import assert_same_factors

from deltainf_core import cli, influence
from deltainf_core.config import ComputeConfig
from deltainf_core.pipeline import Pipeline
from deltainf_core.scaleout.files import ScaleOutError
from deltainf_core.store import Store

CHUNK = 256
"""800 training images: four covariance, four lambda partitions and four score chunks, plus the eigendecomposition."""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_fails_in_one_line_naming_it(tmp_path, capsys):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    rc = cli.main(["run", "--engine", "ray", "--ray-address", address, "--cache-dir", str(tmp_path), "--quiet",
                   "--max-train", "100"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"cannot reach the Ray cluster at {address}" in err
    assert time.perf_counter() - t0 < 30 and not os.path.exists(tmp_path / "artefacts")  # before any work


def test_an_address_that_is_not_host_port_is_refused(tmp_path):
    pytest.importorskip("ray")
    from deltainf_core.scaleout.ray_engine import connect

    with pytest.raises(ScaleOutError, match="is not host:port"):
        connect(ComputeConfig(engine="ray", ray_address="headnode"), str(tmp_path))


def test_without_ray_the_ray_engine_says_how_to_install_it(tmp_path, monkeypatch):
    from deltainf_core.scaleout.executor import executor_for

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ScaleOutError, match=r"pip install 'deltainf\[ray\]'"):
        executor_for(ComputeConfig(engine="ray"), str(tmp_path))


# -- on a local cluster (slow) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setattr(influence, "CHUNK", CHUNK)
    yield
    mp.undo()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_cluster(one_thread):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()


def _investigate(scn, cache, executor=None) -> dict:
    pipe = Pipeline(Store(str(cache)), **({"executor": executor} if executor else {}))
    trained = pipe.trained(scn)
    affected = pipe.affected_set(scn, pipe.default_affected(scn))
    collapse = pipe.collapse(scn, affected)
    detection = pipe.detect(scn, affected)
    return {"weights": trained.model.state_dict(), "key": trained.key, "scores": collapse.scores,
            "factors": pipe.engine(scn).factor_dir(), "flagged": np.asarray(detection.flagged), "pipe": pipe}


@pytest.fixture(scope="module")
def local_run(tiny_scenario, tmp_path_factory, one_thread):
    return _investigate(tiny_scenario, tmp_path_factory.mktemp("local"))


def _ray_executor(cache, statuses):
    from deltainf_core.scaleout.executor import executor_for

    ex = executor_for(ComputeConfig(engine="ray"), str(cache))
    ex.runner.on_status = lambda st: statuses.append((st.label, st.done, st.total, list(st.retried)))
    return ex


def _assert_same(got: dict, want: dict) -> None:
    assert got["key"] == want["key"]
    for name, t in want["weights"].items():
        assert torch.equal(got["weights"][name].cpu(), t.cpu()), name
    assert_same_factors(got["factors"], want["factors"])
    np.testing.assert_array_equal(got["scores"], want["scores"])
    np.testing.assert_array_equal(got["flagged"], want["flagged"])


@pytest.mark.slow
def test_a_ray_investigation_equals_the_local_one(ray_cluster, local_run, tiny_scenario, tmp_path):
    statuses: list = []
    got = _investigate(tiny_scenario, tmp_path, _ray_executor(tmp_path, statuses))
    _assert_same(got, local_run)
    finals = {label: (done, total) for label, done, total, _ in statuses}
    assert any(label.startswith("fitting") for label in finals) and any(label.startswith("scoring") for label in finals)
    assert all(done == total for done, total in finals.values())
    assert len(got["flagged"]) > 0


@pytest.mark.slow
def test_a_worker_killed_mid_unit_is_retried_with_the_same_result(ray_cluster, local_run, tiny_scenario, tmp_path):
    killed: list[int] = []

    def kill_first_attempt(unit: str = "lambda1") -> None:
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            found = glob.glob(str(tmp_path / "scaleout" / "work" / "*" / unit / "attempt-1-*" / "progress.json"))
            if found:
                pid = int(os.path.basename(os.path.dirname(found[0])).split("-")[-1])
                time.sleep(0.3)  # inside the unit: its model and data are loading or it is reading batches
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_first_attempt, daemon=True)
    watcher.start()
    statuses: list = []
    got = _investigate(tiny_scenario, tmp_path, _ray_executor(tmp_path, statuses))
    watcher.join(1)
    assert killed, "the watcher never saw the unit start"
    assert any("lambda1" in retried for *_, retried in statuses)  # shown as a retried unit
    _assert_same(got, local_run)
