"""A small thread-safe LRU for in-process artefacts (datasets, poisoned sets, models).

The app shares one ``Pipeline`` between every browser session; its memos must stay
bounded, or each new scenario would keep a dataset and a model alive for good. The
disk store holds everything; a memo only saves re-reading the last few.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """At most ``size`` values by key; the least recently used one goes first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU needs room for at least one value, got {size}")
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: str, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: str, make: Callable[[], V]) -> V:
        """The memoised value, else ``make()`` (outside the lock: it may take minutes)."""
        value = self.get(key)
        return value if value is not None else self.put(key, make())

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)
