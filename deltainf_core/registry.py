"""One small registry type shared by every family (datasets, models, attacks, ...).

Adding a method is one new module plus one ``REGISTRY.register(...)`` line; the CLI
choices and the app's select boxes read ``names()`` so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object plus the one-line description shown in the CLI and app."""

    name: str
    obj: T
    help: str


class Registry(Generic[T]):
    """Name -> object mapping with a readable error for unknown names."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T, help: str = "") -> T:
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, help)
        return obj

    def decorator(self, name: str, help: str = "") -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            return self.register(name, obj, help)

        return wrap

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise UnknownNameError(f"unknown {self.family} {name!r} (choose from: {known})") from None

    def help(self, name: str) -> str:
        self.get(name)
        return self._entries[name].help

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
