"""The ray engine's back-end: one Ray core task per unit, retried when its worker is lost.

- ``connect`` starts a local cluster (``ray.init()``) or joins ``--ray-address``; an address that
  does not answer fails in one line naming it, before any work, and so does a cluster whose
  workers cannot import this package or see the cache folder.
- Each task asks for ``unit_cpus`` CPUs and, where the cluster has GPUs, one GPU: one box with
  8 GPUs and a cluster of boxes take the same path.
- A worker killed mid-unit (``WorkerCrashedError``, a lost node) is retried by Ray itself
  (``max_retries``); the retry starts the unit afresh in a new attempt folder and commits the
  same content. An exception inside a unit is a bug or bad input: not retried, reported in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from urllib.parse import urlsplit

from ..config import ComputeConfig
from .driver import Board
from .files import ScaleOutError, scaleout_dir
from .units import UnitJob, run_unit

RETRIES = 3
"""Times Ray starts a unit again after losing its worker (a process or a node)."""
CONNECT_TIMEOUT_S = 5.0
RAY_MISSING = "the ray engine needs Ray: pip install 'deltainf[ray]' (or pip install 'ray[default,train]')"


def _ray():
    try:
        import ray
    except ImportError:
        raise ScaleOutError(RAY_MISSING) from None
    return ray


def _reachable(address: str) -> None:
    """Refuse an address nobody answers at, in one line and within seconds (``ray.init`` would wait a minute)."""
    if address == "auto":
        return
    parsed = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ScaleOutError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001)")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ScaleOutError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); start it with "
                            "ray start --head, or leave --ray-address out for a local one") from None


def _probe(token: str) -> tuple[bool, str]:
    """Runs on a worker: does it see the driver's token file in the cache, and which deltainf does it import."""
    import deltainf_core

    return os.path.isfile(token), os.path.dirname(os.path.dirname(os.path.abspath(deltainf_core.__file__)))


def _unit_task(job: UnitJob) -> tuple[str, int]:
    return run_unit(job)


class RayBackend:
    """Runs units as Ray tasks on the cluster ``connect`` joined (``driver.Backend``)."""

    def __init__(self, compute: ComputeConfig, gpus: float) -> None:
        ray = _ray()
        self.compute, self.gpus = compute, gpus
        self._task = ray.remote(_unit_task).options(num_cpus=compute.unit_cpus, num_gpus=1 if gpus else 0,
                                                    max_retries=RETRIES, retry_exceptions=False)

    def run(self, jobs: list[UnitJob], board: Board) -> None:
        ray = _ray()
        refs = {self._task.remote(job): i for i, job in enumerate(jobs)}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in ready:
                    i = refs[ref]
                    try:
                        _, attempt = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        cause = getattr(err, "cause", None) or err
                        raise ScaleOutError(f"unit {jobs[i].name} failed: {_one_line(cause)}") from None
                    except ray.exceptions.RayError as err:  # its worker lost more often than Ray retries
                        raise ScaleOutError(f"unit {jobs[i].name} lost its worker {RETRIES + 1} times "
                                            f"({type(err).__name__}); finished units are kept") from None
                    board.finish(jobs[i], attempt)
                board.poll()
        finally:
            for ref in pending:  # a failure or Ctrl-C: stop the rest, keep what committed
                with contextlib.suppress(Exception):
                    ray.cancel(ref)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


def connect(compute: ComputeConfig, cache: str) -> RayBackend:
    """Join (or start) the cluster ``compute`` names and check that its workers can do the work."""
    ray = _ray()
    address = compute.ray_address
    if address:
        _reachable(address)
    if not ray.is_initialized():
        # this checkout on the workers' path: found where it exists (this machine, a shared filesystem)
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        try:
            ray.init(address=address or None, log_to_driver=False,  # the dashboard: Ray Train needs its state API
                     logging_level=logging.WARNING, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        except Exception as err:  # noqa: BLE001 - Ray raises several types here; all mean "no cluster"
            where = f"at {address}" if address else "on this machine"
            raise ScaleOutError(f"cannot start or join the Ray cluster {where}: {_one_line(err)}") from None
    token = scaleout_dir(cache, f"probe-{uuid.uuid4().hex}")  # a file only this driver wrote: a shared cache
    os.makedirs(os.path.dirname(token), exist_ok=True)
    open(token, "w").close()
    try:
        visible, _ = ray.get(ray.remote(_probe).options(num_cpus=0).remote(token), timeout=300)
    except ray.exceptions.RayError as err:
        raise ScaleOutError(f"the Ray workers cannot run deltainf ({_one_line(err)}); install it on every "
                            "node (pip install 'deltainf[ray]')") from None
    finally:
        os.remove(token)
    if not visible:
        raise ScaleOutError(f"the Ray workers cannot see the cache folder {cache}; put --cache-dir on a "
                            "filesystem every node mounts")
    return RayBackend(compute, float(ray.cluster_resources().get("GPU", 0)))
