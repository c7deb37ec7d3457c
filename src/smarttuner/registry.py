"""Name -> plug-in registries (tasks, rewards, SFT sources, trace writers).

Plug-ins register with an explicit decorator that refuses a duplicate name (no if/elif
chains on strings, no subclass discovery)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping filled by `@registry.register(name)`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorator

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._items.get(name, default)

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; use one of {', '.join(self.names())}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
