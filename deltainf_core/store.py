"""On-disk artefact store: content-hash keys, checksummed values, one lock per key.

- Keys carry the stage's code version: bump ``STAGE_VERSIONS`` when a stage's output
  would change, and old entries are simply never read again.
- Every value is pickled and sealed with a BLAKE2b digest of its bytes; a read whose
  bytes do not match (random bytes, a truncated file) or that a ``check`` rejects
  (wrong shape, NaN weights) is reported once in one line, deleted and recomputed:
  a damaged cache costs time, never a wrong result.
- ``cached`` holds a file lock per key while it computes, so a second process or
  browser session on the same cache waits for the first and reuses its result. The
  lock is the operating system's (``flock``): a killed process releases it.
- diskcache writes each value in one SQLite transaction, so a run killed mid-way
  leaves the old state or the complete entry. A read-only cache (a shared one on a
  read-only mount) still serves every entry it holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import diskcache
from filelock import FileLock, Timeout

from .config import stable_hash
from .errors import CacheError
from .integrity import Check, finite_array, finite_state_dict, seal, unseal
from .paths import default_cache_dir

__all__ = ["STAGE_VERSIONS", "Store", "default_cache_dir", "finite_array", "finite_state_dict", "hold",
           "key_lock"]

T = TypeVar("T")

STAGE_VERSIONS: dict[str, int] = {
    "poison": 4,
    "train": 3,
    "unlearn": 2,
    "factors": 1,
    "scores": 2,
}
"""Code version of every cached stage; a key of an unlisted stage is refused."""

STAGE_LABELS: dict[str, str] = {
    "poison": "poisoned training set",
    "train": "model",
    "unlearn": "unlearned model",
    "factors": "influence factors",
    "scores": "scores",
}

log = logging.getLogger("deltainf")

_MISSING = object()


def stage_of(key: str) -> str:
    return key.split(":", 1)[0]


def describe(key: str) -> str:
    """``"model train:v2:1a2b…"``: what a person reads in a corruption or read-only message."""
    return f"{STAGE_LABELS.get(stage_of(key), stage_of(key))} {key}"


def key_lock(directory: str, key: str) -> FileLock:
    """The file lock that guards computing ``key`` in the cache at ``directory``."""
    locks = os.path.join(directory, "locks")
    os.makedirs(locks, exist_ok=True)
    return FileLock(os.path.join(locks, f"{stable_hash(key, length=24)}.lock"))


@contextlib.contextmanager
def hold(lock: FileLock, what: str) -> Iterator[None]:
    """Acquire ``lock``; say once that we wait when another process holds it."""
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        log.warning("waiting for another run that is computing the %s", what)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class _ReadOnlyCache:
    """Reads diskcache's SQLite table directly, without writing (diskcache cannot open read-only)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        db = os.path.join(directory, "cache.db")
        self._db = None
        # mode=ro sees a live writer's WAL; on a read-only mount only immutable=1 opens at all
        for flags in ("mode=ro", "immutable=1"):
            if not os.path.exists(db):
                break
            try:
                self._db = sqlite3.connect(f"file:{db}?{flags}", uri=True, check_same_thread=False)
                self._db.execute("SELECT count(*) FROM Cache").fetchone()
                break
            except sqlite3.Error:
                self._db = None

    def get(self, key: str, default: Any = None, read: bool = False) -> Any:
        if self._db is None:
            return default
        row = self._db.execute("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1",
                               (key,)).fetchone()
        if row is None:
            return default
        mode, filename, value = row
        if mode == diskcache.core.MODE_BINARY and filename:
            try:
                with open(os.path.join(self.directory, filename), "rb") as fh:
                    return fh.read()
            except OSError:
                return default
        return bytes(value) if mode == diskcache.core.MODE_RAW else default

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class Store:
    """A map from (stage, config hash) to checksummed artefacts, with a lock per key.

    read_only: serve what the cache holds and compute nothing new (default: when the
        folder cannot be written, e.g. a shared cache on a read-only mount).
    """

    def __init__(self, directory: str | None = None, *, read_only: bool | None = None) -> None:
        self.directory = os.path.abspath(directory or default_cache_dir())
        artefacts = os.path.join(self.directory, "artefacts")
        if read_only is None:
            read_only = _unwritable(self.directory)
        self.read_only = read_only
        self._locks: dict[str, FileLock] = {}
        self._guard = threading.Lock()
        self._cache: Any
        if read_only:
            if not os.path.isdir(self.directory):
                why = "is a file" if os.path.exists(self.directory) else "does not exist and cannot be created"
                raise CacheError(f"cache folder {self.directory} {why}; pass --cache-dir a writable folder")
            self._cache = _ReadOnlyCache(artefacts)
            return
        try:
            self._cache = diskcache.Cache(artefacts, size_limit=2**36)
        except (OSError, sqlite3.Error) as err:
            raise CacheError(f"cannot open the cache at {self.directory} ({err}); "
                             "pass --cache-dir a writable folder") from None

    def key(self, stage: str, *parts: Any) -> str:
        if stage not in STAGE_VERSIONS:
            raise ValueError(f"stage {stage!r} has no entry in store.STAGE_VERSIONS")
        return f"{stage}:v{STAGE_VERSIONS[stage]}:{stable_hash(*parts)}"

    def _raw(self, key: str) -> Any:
        try:
            return self._cache.get(key, default=_MISSING, read=False)
        except sqlite3.DatabaseError as err:
            raise CacheError(f"the cache database in {self.directory} is damaged ({err}); "
                             "delete that folder or pass --cache-dir another one") from None

    def get(self, key: str, default: Any = None, *, check: Check | None = None) -> Any:
        """The verified value under ``key``; a damaged or rejected entry is deleted and reads as missing."""
        blob = self._raw(key)
        if blob is _MISSING:
            return default
        try:
            value = unseal(blob)
            reason = check(value) if check is not None else None
        except ValueError as err:
            reason = str(err)
        if reason is None:
            return value
        self.discard(key, reason)
        return default

    def discard(self, key: str, reason: str) -> None:
        """Report a bad entry in one line and delete it (a read-only cache only reports)."""
        verb = "were" if STAGE_LABELS.get(stage_of(key), "").endswith("s") else "was"
        log.warning("cached %s %s corrupt (%s); recomputing", describe(key), verb, reason)
        if not self.read_only:
            self._cache.delete(key)

    def set(self, key: str, value: Any) -> None:
        if self.read_only:
            raise self.missing(key)
        self._cache.set(key, seal(value))

    def missing(self, key: str) -> CacheError:
        """The error for a read-only cache that lacks ``key``."""
        return CacheError(f"the cache at {self.directory} is read-only and does not hold the "
                          f"{describe(key)}; pass --cache-dir a writable folder")

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold ``key``'s file lock: wrap any stage's compute-and-store in it."""
        if self.read_only:
            return contextlib.nullcontext()
        with self._guard:
            if key not in self._locks:
                self._locks[key] = key_lock(self.directory, key)
        return hold(self._locks[key], describe(key))

    def cached(self, key: str, compute: Callable[[], T], *, check: Check | None = None) -> tuple[T, bool]:
        """Return ``(value, was_cached)``; compute and store on a miss, one process at a time per key."""
        value = self.get(key, _MISSING, check=check)
        if value is not _MISSING:
            return value, True
        if self.read_only:
            raise self.missing(key)
        with self.lock(key):
            value = self.get(key, _MISSING, check=check)  # another run may have finished it meanwhile
            if value is not _MISSING:
                return value, True
            value = compute()
            self.set(key, value)
        return value, False

    def clear(self) -> None:
        if not self.read_only:
            self._cache.clear()

    def close(self) -> None:
        self._cache.close()


def _unwritable(directory: str) -> bool:
    """True when ``directory`` exists but cannot be written (or cannot be created)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return True
    return not os.access(directory, os.W_OK)
