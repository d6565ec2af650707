"""Per-thread storage: the default scope, as in SQLAlchemy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ClassVar, TypeVar

from scoped.registry._base import MISSING, Registry, _Missing

__all__ = ["ThreadLocalRegistry"]

_T = TypeVar("_T")


class ThreadLocalRegistry(Registry[_T]):
    """A :class:`Registry` whose scope is the current thread.

    Storage is a plain :class:`threading.local`: reading it is a single C-level
    attribute lookup, which is what keeps generated proxies cheap.
    """

    lookup: ClassVar[str] = "{storage}.value"
    lookup_misses: ClassVar[tuple[type[BaseException], ...]] = (AttributeError,)

    _storage: threading.local

    def __init__(self, createfunc: Callable[[], _T]) -> None:
        super().__init__(createfunc)
        self._storage = threading.local()

    def __call__(self) -> _T:
        try:
            return self._storage.value  # type: ignore[no-any-return]
        except AttributeError:
            return self._create_current()

    def has(self) -> bool:
        return hasattr(self._storage, "value")

    def set(self, obj: _T) -> None:
        self._storage.value = obj

    def clear(self) -> None:
        try:
            del self._storage.value
        except AttributeError:
            pass

    def peek(self) -> _T | _Missing:
        return getattr(self._storage, "value", MISSING)

    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        # Only the owning thread can see its slot, so no lock is needed.
        storage = self._storage
        if hasattr(storage, "value"):
            if factory is None:
                return storage.value  # type: ignore[no-any-return]
            raise LookupError("the current thread already holds an object")
        obj = (factory or self.createfunc)()
        storage.value = obj
        return obj
