"""What a registry knows about one live session."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scoped._extension import compiled
from scoped.lifecycle._values import bounded_repr

__all__ = ["Entry", "EntryFields"]

_ids = itertools.count(1)
_monotonic = time.monotonic
_current_thread = threading.current_thread
# The process id, read once (it is a system call) and again after a fork.
_process = [os.getpid()]


def _forked() -> None:
    _process[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class EntryFields:
    """The fields of an :class:`Entry`, as the C extension holds them.

    :mod:`scoped._speedups` has the same type in C, used when it is built:
    creating an entry is on every new scope's path.
    """

    __slots__ = (
        "_number",
        "_pid",
        "_thread",
        "attached",
        "created",
        "logged",
        "obj",
        "scope",
        "slot",
        "warned",
        "watcher",
    )

    def __init__(
        self, obj: object, scope: object, thread: threading.Thread | None = None
    ) -> None:
        self.obj = obj
        # The raw key is kept only when it is a plain value; object keys are
        # rendered by the registry so that the entry never keeps them alive.
        self.scope = scope
        self._number = next(_ids)
        self._pid = _process[0]
        self.created = _monotonic()
        self._thread = _current_thread() if thread is None else thread
        self.attached: tuple[list[str], list[Callable[[], None]]] | None = None
        #: Whether the session's creation was logged; its routine events
        #: (close, removal, scope end) follow that decision.
        self.logged = False
        #: Where the registry keeps the object (registry-specific).
        self.slot: Any = None
        #: Whether a leak warning was already emitted for this session.
        self.warned = False
        #: Whatever notices the end of the scope, kept alive with the entry.
        self.watcher: object = None


if TYPE_CHECKING:
    _Fields = EntryFields
else:
    _Fields = compiled("EntryFields") or EntryFields


class Entry(_Fields):
    """What a registry knows about one live session.

    ``session_id`` is short and unique within the process, so that log lines
    about one session can be joined; ``created`` is monotonic, for ages.
    Creation is on every new scope's path, so everything that is only needed
    for logs and introspection is derived on demand.
    """

    __slots__ = ()

    @property
    def session_id(self) -> str:
        """The session's id, ``<pid>-<number>`` in hex; unique in the process."""
        return f"{self._pid:x}-{self._number:x}"

    @property
    def thread(self) -> str:
        """The name of the thread that created the session."""
        return self._thread.name

    @property
    def thread_id(self) -> int | None:
        """The ident of the thread that created the session."""
        return self._thread.ident

    @property
    def scope_repr(self) -> str:
        """The scope key as it appears in logs and introspection.

        ``None`` stands for the creating thread (the thread scope).
        """
        scope = self.scope
        if scope is None:
            return self.thread
        return scope if isinstance(scope, str) else bounded_repr(scope)

    @property
    def age(self) -> float:
        """Seconds since the session was created."""
        return time.monotonic() - self.created

    def describe(self) -> dict[str, Any]:
        """A plain mapping for introspection endpoints."""
        return {
            "session_id": self.session_id,
            "scope": self.scope_repr,
            "session": self.obj,
            "thread": self.thread,
            "thread_id": self.thread_id,
            "age": self.age,
        }
