"""On-disk artefact store (diskcache), keyed by a content hash of everything that made a result.

diskcache writes each value in one SQLite transaction, so a run killed mid-way
leaves either the old state or the complete new entry — never a torn one.
Keys carry the stage's code version: bump ``STAGE_VERSIONS`` when a stage's
output would change, and old entries are simply never read again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import diskcache

from .config import stable_hash

T = TypeVar("T")

STAGE_VERSIONS: dict[str, int] = {
    "poison": 3,
    "train": 2,
    "detect": 3,
    "unlearn": 1,
    "oracle": 1,
    "scores": 1,
}

_MISSING = object()


def default_cache_dir() -> str:
    """``$DELTAINF_CACHE`` or ``cache/`` beside the package's project root."""
    env = os.environ.get("DELTAINF_CACHE")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "cache")


class Store:
    """A diskcache-backed map from (stage, config hash) to artefacts."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or default_cache_dir()
        os.makedirs(self.directory, exist_ok=True)
        self._cache = diskcache.Cache(os.path.join(self.directory, "artefacts"), size_limit=2**36)

    def key(self, stage: str, *parts: Any) -> str:
        version = STAGE_VERSIONS.get(stage, 1)
        return f"{stage}:v{version}:{stable_hash(*parts)}"

    def get(self, key: str, default: Any = None) -> Any:
        return self._cache.get(key, default=default)

    def set(self, key: str, value: Any) -> None:
        self._cache.set(key, value)

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def cached(self, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
        """Return ``(value, was_cached)``; compute and store on a miss."""
        value = self._cache.get(key, default=_MISSING)
        if value is not _MISSING:
            return value, True
        value = compute()
        self._cache.set(key, value)
        return value, False

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()
