"""Per-thread storage: the default scope, as in SQLAlchemy."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, TypeVar

from scoped.errors import AlreadyPresentError
from scoped.events import SESSION_CREATED
from scoped.lifecycle import Entry
from scoped.registry._base import MISSING, Registry, _Missing
from scoped.registry._lookup import LOCAL

__all__ = ["ThreadLocalRegistry"]

_T = TypeVar("_T")


class ThreadLocalRegistry(Registry[_T]):
    """A :class:`Registry` whose scope is the current thread.

    Storage is a plain :class:`threading.local`: reading it is a single C-level
    attribute lookup, which is what keeps generated proxies cheap. Only the
    owning thread reaches its slot; the ledger's lock covers the counts. When
    a thread exits without ``remove()``, its object is closed (not left to the
    garbage collector) and a ``session.scope_ended`` event is emitted.
    """

    scope_kind: ClassVar[str] = "thread"
    lookup = LOCAL

    _storage: threading.local

    def __init__(
        self,
        createfunc: Callable[[], _T],
        **options: Any,
    ) -> None:
        # options: close, events, leak_after, max_scopes (see Registry).
        super().__init__(createfunc, **options)
        self._storage = threading.local()

    # Both lookups read the thread's slot dict, never the threading.local
    # attribute: a missing attribute raises an AttributeError whose message
    # is formatted, which costs more than all of a session's bookkeeping.

    def __call__(self) -> _T:
        # Tuned for hits: a miss raises a KeyError (no message to format).
        try:
            return self._storage.__dict__["value"]  # type: ignore[no-any-return]
        except KeyError:
            pass
        return self._create(self._storage.__dict__, self.createfunc)

    def _find_or_create(self) -> _T:
        # Tuned for creating as often as finding, as a request's first
        # db() does: a miss raises nothing, a hit pays one more dict lookup.
        slot = self._storage.__dict__
        if "value" in slot:
            return slot["value"]  # type: ignore[no-any-return]
        return self._create(slot, self.createfunc)

    def _lookup_call(self) -> Callable[[], _T]:
        return self._find_or_create

    def has(self) -> bool:
        return hasattr(self._storage, "value")

    def remove(self) -> None:
        # The base class's remove(), fused for the default scope: it runs at
        # every request teardown. No other thread reaches this slot, so the
        # claim is a mark in the slot itself, against this thread's own
        # remove() from inside the session's close().
        if self._cleaning:
            self._refuse_in_cleanup()
        slot = self._storage.__dict__
        watch: _ThreadEnd | None = slot.get("watch")
        if watch is None:
            return
        entry = watch.entry
        if entry is None or watch.closing is entry:
            return
        watch.closing = entry
        try:
            # Positional: a call with keywords takes a slower path, and this
            # runs at every request teardown.
            failure = self.closer.end(entry, "remove", True)
        finally:
            watch.closing = None
            if watch.entry is entry:
                del slot["value"]
                watch.entry = None
        if failure is not None:
            raise failure

    def peek(self) -> _T | _Missing:
        return getattr(self._storage, "value", MISSING)

    def _slot(self) -> Hashable:
        # The thread object, not its ident: idents are reused by new threads.
        return threading.current_thread()

    def _current_entry(self) -> Entry | None:
        watch: _ThreadEnd | None = getattr(self._storage, "watch", None)
        return None if watch is None else watch.entry

    def _detach(self, entry: Entry, *, set_aside: bool = False) -> bool:
        slot = self._storage.__dict__
        watch: _ThreadEnd | None = slot.get("watch")
        if watch is None or watch.entry is not entry:
            return False
        del slot["value"]
        watch.entry = None
        return True

    def _put(self, entry: Entry) -> None:
        slot = self._storage.__dict__
        watch: _ThreadEnd | None = slot.get("watch")
        if watch is None:
            watch = slot["watch"] = _ThreadEnd(self)
        slot["value"] = entry.obj
        watch.entry = entry

    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        slot = self._storage.__dict__
        if "value" in slot:
            if factory is None:
                return slot["value"]  # type: ignore[no-any-return]
            raise AlreadyPresentError("the current thread already holds an object")
        return self._create(slot, factory or self.createfunc)

    def _create(self, slot: dict[str, Any], factory: Callable[[], _T]) -> _T:
        """Create this thread's object with *factory*; *slot* has none."""
        watch: _ThreadEnd | None = slot.get("watch")
        if watch is None:
            watch = slot["watch"] = _ThreadEnd(self)
        # A factory that reaches back into the registry would otherwise
        # recurse until RecursionError hides the actual mistake.
        if watch.creating:
            msg = (
                "the factory re-entered the registry for the current thread "
                "while creating that thread's object"
            )
            raise RuntimeError(msg)
        watch.creating = True
        try:
            obj = factory()
        finally:
            watch.creating = False
        # The scope is the creating thread, which the entry names already.
        entry = Entry(obj, None, watch.thread)
        self.ledger.add(entry)
        watch.entry = entry
        slot["value"] = obj
        # Asked here first: most creations are neither logged nor watched.
        if self.leaks.active or self.events.wants(SESSION_CREATED.level):
            self._announce(entry)
        return obj

    def _thread_ended(self, watch: _ThreadEnd) -> None:
        """A thread exited: close its object and what its open blocks set aside."""
        ended: list[Entry] = []
        with self.ledger.lock:
            if watch.entry is not None:
                ended.append(watch.entry)
                watch.entry = None
            if self.frames:
                ended += self.frames.end(watch.thread)
        for entry in ended:
            self._scope_ended(entry)

    def _describe_slot(self, slot: Hashable) -> str:
        name = slot.name if isinstance(slot, threading.Thread) else slot
        return f"thread {name!r}"

    def _reset_storage(self) -> None:
        # In a forked child only the forking thread survives; other threads'
        # slots die with their thread states, and their watchers see the
        # changed process id and leave the parent's objects alone.
        watch: _ThreadEnd | None = getattr(self._storage, "watch", None)
        if watch is not None:
            watch.entry = None
            watch.pid = os.getpid()
        self._storage.__dict__.pop("value", None)


class _ThreadEnd:
    """Sits in a thread's slot beside its object and reports the thread's end.

    A thread's ``threading.local`` values are released when the thread exits,
    which is the only portable signal of that exit; the registry is held
    weakly so that a discarded registry does not outlive its last thread.
    """

    __slots__ = ("_registry", "closing", "creating", "entry", "pid", "thread")

    def __init__(self, registry: ThreadLocalRegistry[Any]) -> None:
        self._registry = weakref.ref(registry)
        self.pid = os.getpid()
        self.entry: Entry | None = None
        #: The entry this thread's remove() is closing, if any.
        self.closing: Entry | None = None
        #: Whether this thread is running the factory now.
        self.creating = False
        #: The thread, looked up once for all the sessions it creates.
        self.thread = threading.current_thread()

    def __del__(self) -> None:
        registry = self._registry()
        if registry is None or os.getpid() != self.pid:
            return
        registry._thread_ended(self)
