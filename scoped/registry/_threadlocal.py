"""Per-thread storage: the default scope, as in SQLAlchemy."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, TypeVar

from scoped.errors import AlreadyPresentError
from scoped.lifecycle import Entry
from scoped.registry._base import MISSING, Registry, _Missing

__all__ = ["ThreadLocalRegistry"]

_T = TypeVar("_T")


class ThreadLocalRegistry(Registry[_T]):
    """A :class:`Registry` whose scope is the current thread.

    Storage is a plain :class:`threading.local`: reading it is a single C-level
    attribute lookup, which is what keeps generated proxies cheap. When a
    thread exits without ``remove()``, its object is closed (not left to the
    garbage collector) and a ``session.scope_ended`` event is emitted.
    """

    scope_kind: ClassVar[str] = "thread"

    lookup: ClassVar[str] = "{storage}.value"
    lookup_misses: ClassVar[tuple[type[BaseException], ...]] = (AttributeError,)
    # Python 3.10+ records the object whose attribute was missing, so a miss
    # on the storage is told apart from an AttributeError the session raises.
    lookup_miss_test: ClassVar[str] = "{error}.obj is {storage}"

    _storage: threading.local

    def __init__(
        self,
        createfunc: Callable[[], _T],
        **options: Any,
    ) -> None:
        # options: close, events, leak_after, max_scopes (see Registry).
        super().__init__(createfunc, **options)
        self._storage = threading.local()
        # Every live thread watcher, for stats(); weak so threads still end.
        self._watches: weakref.WeakSet[_ThreadEnd] = weakref.WeakSet()

    def __call__(self) -> _T:
        try:
            return self._storage.value  # type: ignore[no-any-return]
        except AttributeError:
            pass
        # Created outside the except block: a failing factory's traceback
        # then has no lookup miss to hide, and no frame is spent hiding it.
        return self._get_or_create(None)

    def has(self) -> bool:
        return hasattr(self._storage, "value")

    def set(self, obj: _T) -> None:
        self.clear()
        self._get_or_create(lambda: obj)

    def remove(self) -> None:
        # The base class's remove(), fused for the default scope: one slot
        # lookup, no intermediate calls (it runs at every request teardown).
        if self._cleaning:
            self._refuse_in_cleanup()
        slot = self._storage.__dict__
        if "value" not in slot:
            return
        # A stored value always has its watcher, holding its entry.
        watch: _ThreadEnd = slot["watch"]
        entry = watch.entry
        assert entry is not None
        try:
            failure = self._close(entry, during="remove")
        finally:
            slot.pop("value", None)
            watch.detach()
            self._discarded(entry)
        if failure is not None:
            raise failure

    def clear(self) -> None:
        slot = self._storage.__dict__
        slot.pop("value", None)
        watch: _ThreadEnd | None = slot.get("watch")
        if watch is not None:
            # The watcher stays in the slot for the thread's next object.
            self._discarded(watch.detach())

    def peek(self) -> _T | _Missing:
        return getattr(self._storage, "value", MISSING)

    def _current_entry(self) -> Entry | None:
        watch: _ThreadEnd | None = getattr(self._storage, "watch", None)
        return None if watch is None else watch.entry

    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        # Only the owning thread can see its slot, so no lock is needed.
        slot = self._storage.__dict__
        if "value" in slot:
            if factory is None:
                return slot["value"]  # type: ignore[no-any-return]
            raise AlreadyPresentError("the current thread already holds an object")
        # A factory that reaches back into the registry would otherwise
        # recurse until RecursionError hides the actual mistake.
        if "creating" in slot:
            msg = (
                "the factory re-entered the registry for the current thread "
                "while creating that thread's object"
            )
            raise RuntimeError(msg)
        slot["creating"] = True
        try:
            obj = (factory or self.createfunc)()
        finally:
            del slot["creating"]
        watch: _ThreadEnd | None = slot.get("watch")
        if watch is None:
            watch = slot["watch"] = _ThreadEnd(self)
            with self._entries_lock:
                self._watches.add(watch)
        # The scope is the creating thread, which the entry names already.
        # Only this thread touches its watcher, so it counts without a lock
        # (and a dict store is atomic): stats() adds the watchers' counts.
        entry = Entry(obj, None, watch.thread)
        self._entries[id(entry)] = entry
        watch.created += 1
        watch.entry = entry
        slot["value"] = obj
        self._announce(entry)
        return obj

    def _forget(self, entry: Entry) -> bool:
        watch: _ThreadEnd | None = self._storage.__dict__.get("watch")
        if watch is None:
            return super()._forget(entry)
        # This thread's own counter: no lock (see _get_or_create).
        if self._entries.pop(id(entry), None) is None:
            return False
        watch.removed += 1
        return True

    def _counted(self) -> tuple[int, int]:
        created, removed = self._created, self._removed
        for watch in list(self._watches):
            if not watch.folded:
                created += watch.created
                removed += watch.removed
        return created, removed

    def _fold(self, watch: _ThreadEnd) -> None:
        """A thread's watcher is going away: keep its counts."""
        with self._entries_lock:
            if not watch.folded:
                watch.folded = True
                self._created += watch.created
                self._removed += watch.removed

    def _slot(self) -> Hashable:
        return threading.get_ident()

    def _describe_slot(self, slot: Hashable) -> str:
        for thread in threading.enumerate():
            if thread.ident == slot:
                return f"thread {thread.name!r}"
        return f"thread {slot!r}"

    def _frame_stack(self, slot: Hashable, *, create: bool) -> list[Any] | None:
        if create:
            return self._storage.__dict__.setdefault("frames", [])  # type: ignore[no-any-return]
        return getattr(self._storage, "frames", None)

    def _forget_frames(self, slot: Hashable) -> None:
        self._storage.__dict__.pop("frames", None)

    def _take(self) -> Any:
        slot = self._storage.__dict__
        if "value" not in slot:
            return None
        watch: _ThreadEnd | None = slot.pop("watch", None)
        # The set-aside object keeps its own watcher, so the thread's end
        # still closes it if the block never returns it.
        return (slot.pop("value"), watch)

    def _put(self, saved: Any) -> None:
        if saved is not None:
            self._storage.value, self._storage.watch = saved

    def _drop_all(self) -> None:
        # In a forked child only the forking thread survives; other threads'
        # slots die with their thread states, and their watchers see the
        # changed process id and leave the parent's objects alone.
        watch: _ThreadEnd | None = getattr(self._storage, "watch", None)
        if watch is not None:
            watch.detach()
        self._storage.__dict__.clear()


class _ThreadEnd:
    """Sits in a thread's slot beside its object and reports the thread's end.

    A thread's ``threading.local`` values are released when the thread exits,
    which is the only portable signal of that exit; the registry is held
    weakly so that a discarded registry does not outlive its last thread.
    """

    __slots__ = (
        "__weakref__",
        "_pid",
        "_registry",
        "created",
        "entry",
        "folded",
        "removed",
        "thread",
    )

    def __init__(self, registry: ThreadLocalRegistry[Any]) -> None:
        self._registry = weakref.ref(registry)
        self._pid = os.getpid()
        self.entry: Entry | None = None
        #: The thread, looked up once for all the sessions it creates.
        self.thread = threading.current_thread()
        #: This thread's sessions, counted here without a lock.
        self.created = self.removed = 0
        self.folded = False

    def detach(self) -> Entry | None:
        """Stop watching (the object was removed) and return the entry."""
        entry, self.entry = self.entry, None
        return entry

    def __del__(self) -> None:
        registry = self._registry()
        if registry is None or os.getpid() != self._pid:
            return
        entry = self.entry
        if entry is not None:
            registry._scope_ended(entry)
        registry._fold(self)
