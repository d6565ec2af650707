"""Run resets in a forked child: every lock and table the library owns.

Only the forking thread lives on in a child, so a lock that another thread
held at the time of the fork stays held forever unless the child replaces
it. Each module that owns such state registers its reset here, once, or
uses a :class:`Lock`, which renews itself.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType

__all__ = ["Lock", "in_child"]


def in_child(reset: Callable[[], None]) -> Callable[[], None]:
    """Run *reset* in every child process forked from now on; return it.

    Usable as a decorator. Does nothing where :func:`os.fork` does not exist.
    """
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reset)
    return reset


class Lock:
    """A :class:`threading.Lock` for ``with`` blocks that a forked child gets
    afresh, released, whoever held it in the parent."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _locks.add(self)

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


_locks: weakref.WeakSet[Lock] = weakref.WeakSet()


@in_child
def _renew_locks() -> None:
    for lock in list(_locks):
        lock._lock = threading.Lock()
