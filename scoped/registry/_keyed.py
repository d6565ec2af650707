"""Storage keyed by the value of a user-supplied scope function."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, TypeVar

from scoped.errors import AlreadyPresentError, require_callable
from scoped.lifecycle import Entry, Events
from scoped.registry._base import MISSING, Registry, _Missing

__all__ = ["ScopedRegistry"]

_T = TypeVar("_T")


class _Creation:
    """One in-flight creation for one scope key; other threads wait on it."""

    __slots__ = ("done", "owner")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.done = threading.Event()


def _describe(func: Callable[..., Any]) -> str:
    name = getattr(func, "__qualname__", None) or repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


class ScopedRegistry(Registry[_T]):
    """A :class:`Registry` keyed by whatever *scopefunc* returns.

    *scopefunc* is called on every access, so it must be cheap and return the
    same hashable key for as long as the scope lasts. Exactly one object is
    created per key, even when many threads race on one key: the first caller
    creates it while the others wait, so no session is built only to be
    dropped. A *scopefunc* that raises propagates its exception unchanged; an
    unhashable key is a :class:`TypeError` naming the scopefunc and the key's
    type. Neither changes the registry.
    """

    lookup: ClassVar[str] = "{storage}[{scopefunc}()]"
    lookup_misses: ClassVar[tuple[type[BaseException], ...]] = (KeyError, TypeError)
    # A miss is raised by the subscript in the proxy's own frame (nothing
    # deeper in the traceback) while the scope holds nothing; has() also
    # turns an unhashable key into the clear TypeError. An error the session
    # or the scopefunc raises always has a frame of its own, or leaves the
    # scope's object in place.
    lookup_miss_test: ClassVar[str | None] = (
        "{error}.__traceback__.tb_next is None and not {self}.registry.has()"
    )

    _storage: dict[Hashable, _T]
    _scopefunc: Callable[[], Any]

    def __init__(
        self,
        createfunc: Callable[[], _T],
        scopefunc: Callable[[], Any],
        *,
        close: Callable[[_T], object] | None = None,
        events: Events | None = None,
    ) -> None:
        require_callable(scopefunc, "scopefunc")
        super().__init__(createfunc, close=close, events=events)
        self._scopefunc = scopefunc
        self._storage = {}
        self._lock = threading.Lock()
        self._creating: dict[Hashable, _Creation] = {}
        self._key_entries: dict[Hashable, Entry] = {}

    @property
    def scopefunc(self) -> Callable[[], Any]:
        """The function whose return value identifies the current scope."""
        return self._scopefunc

    def key(self) -> Hashable:
        """Return the current scope key, checked for hashability."""
        key = self._scopefunc()
        try:
            hash(key)
        except TypeError:
            msg = (
                f"scopefunc {_describe(self._scopefunc)} returned an unhashable "
                f"scope key of type {type(key).__name__!r}; scope keys must be "
                "hashable (return an id, a name or the scope object itself)"
            )
            raise TypeError(msg) from None
        return key  # type: ignore[no-any-return]

    def __call__(self) -> _T:
        try:
            return self._storage[self._scopefunc()]
        except (KeyError, TypeError):
            return self._create_current()

    def has(self) -> bool:
        return self.key() in self._storage

    def set(self, obj: _T) -> None:
        key = self.key()
        with self._lock:
            self._storage[key] = obj
            old = self._key_entries.pop(key, None)
            self._key_entries[key] = self._track(obj, key)
        self._discarded(old)

    def clear(self) -> None:
        key = self.key()
        with self._lock:
            self._storage.pop(key, None)
            entry = self._key_entries.pop(key, None)
        self._discarded(entry)

    def peek(self) -> _T | _Missing:
        return self._storage.get(self.key(), MISSING)

    def _current_entry(self) -> Entry | None:
        return self._key_entries.get(self.key())

    def _drop_all(self) -> None:
        # Another thread may have held the lock at fork time: start afresh.
        self._lock = threading.Lock()
        self._storage.clear()
        self._key_entries.clear()
        self._creating.clear()

    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        key = self.key()
        while True:
            with self._lock:
                try:
                    existing = self._storage[key]
                except KeyError:
                    pass
                else:
                    if factory is None:
                        return existing
                    msg = f"scope {key!r} already holds an object"
                    raise AlreadyPresentError(msg)
                pending = self._creating.get(key)
                if pending is None:
                    pending = self._creating[key] = _Creation()
                    break
            if pending.owner == threading.get_ident():
                msg = (
                    f"the factory re-entered the registry for scope {key!r} "
                    "while creating that scope's object"
                )
                raise RuntimeError(msg)
            # Another thread is creating this scope's object: wait, then look
            # again (it may have failed, in which case we try ourselves).
            pending.done.wait()
        try:
            obj = (factory or self.createfunc)()
            entry = self._track(obj, key)
            with self._lock:
                self._storage[key] = obj
                self._key_entries[key] = entry
            return obj
        finally:
            with self._lock:
                del self._creating[key]
            pending.done.set()
