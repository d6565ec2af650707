"""The registry contract, composed of the parts every kind of storage shares.

A :class:`Registry` is a storage strategy (how the current scope's object is
found: a thread-local slot, a dict keyed by scope) on top of four small
collaborators: the :class:`~scoped.registry._ledger.Ledger` (live entries and
their counts, under the registry's one lock), the
:class:`~scoped.registry._leaks.LeakWatch`, the
:class:`~scoped.registry._closing.Closer` (sync and async closes, each entry
settled once) and the :class:`~scoped.registry._frames.Frames` of open
``scope()`` blocks. Subclasses implement the storage operations only.
"""

from __future__ import annotations

import abc
import enum
import os
import sys
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, Final, Generic, TypeVar

from scoped import _fork
from scoped.errors import require_callable
from scoped.events import REGISTRY_FORKED, SESSION_CREATED
from scoped.lifecycle import Entry, Events, bounded_repr
from scoped.registry._closing import Closer
from scoped.registry._frames import Frame, Frames
from scoped.registry._leaks import LeakWatch
from scoped.registry._ledger import Ledger
from scoped.registry._lookup import Lookup

__all__ = ["MISSING", "Frame", "Registry"]

_T = TypeVar("_T")


class _Missing(enum.Enum):
    """Sentinel for "no object in this scope"; distinct from a stored ``None``.

    An enum member, so that type checkers narrow ``x is not MISSING``.
    """

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING


def _detach_context(exc: BaseException, miss: BaseException | None) -> None:
    """Drop the fast path's lookup miss from *exc*'s implicit context chain.

    Generated proxies call the slow path from inside ``except KeyError`` (or
    ``AttributeError``); without this, a failing factory would be reported
    "during handling of KeyError: <scope key>", which is noise to the user.
    """
    if miss is None:
        return
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__context__ is miss:
            current.__context__ = miss.__context__
            return
        current = current.__context__


class Registry(abc.ABC, Generic[_T]):
    """Holds one object per scope and creates it on first use.

    Calling the registry returns the current scope's object, creating it with
    *createfunc* when the scope has none. ``has()``, ``set()`` and ``clear()``
    inspect and change the current scope only.

    Every object is tracked by an entry that exactly one party closes (a
    ``remove()``, or its scope's end) and that is counted once its close has
    ended, so ``stats()`` always satisfies ``created == removed + cleaned_up
    + live``. Generated proxies read the storage directly, as :attr:`lookup`
    says.
    """

    #: How generated proxies read the current object (see :class:`Lookup`).
    lookup: Lookup
    #: How lifecycle events name this registry's kind of scope.
    scope_kind: ClassVar[str] = "custom"

    createfunc: Callable[[], _T]
    _storage: Any
    _scopefunc: Callable[[], Any] | None = None

    def __init__(
        self,
        createfunc: Callable[[], _T],
        *,
        close: Callable[[_T], object] | None = None,
        events: Events | None = None,
        leak_after: float | None = None,
        max_scopes: int | None = None,
    ) -> None:
        require_callable(createfunc, "createfunc")
        self.createfunc = createfunc
        if events is None:
            events = Events(f"{type(self).__name__}@{id(self):x}", enabled=False)
        # Events name the kind of scope, which only the registry knows.
        events.scope_kind = self.scope_kind
        self.events = events
        self.ledger = Ledger()
        self.leaks = LeakWatch(self.ledger, events, leak_after, max_scopes)
        self.closer = Closer(close, self.ledger, events)
        self.frames = Frames()
        # Threads currently closing a session whose scope ended; almost
        # always empty, so remove() checks it with one truth test.
        self._cleaning: set[int] = set()
        self._pid = os.getpid()
        _live_registries.add(self)

    @property
    def close(self) -> Callable[[_T], object] | None:
        """Called on an object when its scope is removed or ends; ``None``
        discards objects without closing them."""
        return self.closer.close

    @property
    def leak_after(self) -> float | None:
        """Warn about sessions older than this many seconds (``None``: never)."""
        return self.leaks.leak_after

    @leak_after.setter
    def leak_after(self, seconds: float | None) -> None:
        self.leaks.limit(seconds, self.leaks.max_scopes)

    @property
    def max_scopes(self) -> int | None:
        """Warn when more scopes than this hold a session (``None``: never)."""
        return self.leaks.max_scopes

    @max_scopes.setter
    def max_scopes(self, bound: int | None) -> None:
        self.leaks.limit(self.leaks.leak_after, bound)

    # -- storage: what each kind implements ------------------------------

    def __call__(self) -> _T:
        """Return the current scope's object, creating it on first use."""
        return self._get_or_create(None)

    def has(self) -> bool:
        """Tell whether the current scope holds an object."""
        return self._current_entry() is not None

    def set(self, obj: _T) -> None:
        """Store *obj* as the current scope's object, replacing any other.

        The object replaced is discarded without being closed, as by
        :meth:`~scoped.registry.Registry.clear`.
        """
        self.clear()
        self._get_or_create(lambda: obj)

    def _lookup_call(self) -> Callable[[], _T]:
        """What ``scoped_session()`` calls for the current object: the same
        as calling the registry, possibly tuned differently for cost."""
        return self.__call__

    def peek(self) -> _T | _Missing:
        """Return the current scope's object, or :data:`MISSING`; never create."""
        entry = self._current_entry()
        return MISSING if entry is None else entry.obj  # type: ignore[return-value]

    @abc.abstractmethod
    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        """Return the current object, creating it with *factory* when absent.

        With an explicit *factory*, an existing object is an error instead.
        """

    @abc.abstractmethod
    def _slot(self) -> Hashable:
        """Identify the current scope (its key, or its thread)."""

    @abc.abstractmethod
    def _current_entry(self) -> Entry | None:
        """The entry of the current scope's object, if any."""

    @abc.abstractmethod
    def _detach(self, entry: Entry, *, set_aside: bool = False) -> bool:
        """Take *entry*'s object out of its scope's storage, if still there.

        Called with the ledger's lock held; compare-and-delete, so that a
        late caller never takes away a newer object of the same scope. An
        object *set_aside* by a ``scope()`` block still ends with its scope.
        """

    @abc.abstractmethod
    def _put(self, entry: Entry) -> None:
        """Make *entry*'s object the current scope's again (lock held)."""

    @abc.abstractmethod
    def _reset_storage(self) -> None:
        """Empty the storage in place, in a forked child (proxies hold it)."""

    def _open_scope(self) -> Any:
        """Let the scope open a fresh key for :meth:`push`, if it can."""
        return None

    def _close_scope(self, opened: Any) -> None:
        """Undo :meth:`_open_scope`."""

    def _describe_slot(self, slot: Hashable) -> str:
        """Name the scope of *slot* in an error message (errors only)."""
        return bounded_repr(slot)

    # -- creation ---------------------------------------------------------

    def _create_current(self) -> _T:
        """Slow path of every lookup: create the current scope's object."""
        miss = sys.exc_info()[1]
        try:
            return self._get_or_create(None)
        except BaseException as exc:
            _detach_context(exc, miss)
            raise

    def create(self, factory: Callable[[], _T]) -> _T:
        """Create the current scope's object with *factory* and store it.

        Raises :class:`~scoped.AlreadyPresentError` if the scope already
        holds an object, so that explicit arguments are never ignored.
        """
        return self._get_or_create(factory)

    def _announce(self, entry: Entry) -> None:
        """Log a new entry and run the leak checks, as configured."""
        events = self.events
        if events.wants(SESSION_CREATED.level):
            entry.logged = True
            events.emit(
                SESSION_CREATED.level,
                SESSION_CREATED,
                entry,
                session_class=type(entry.obj).__qualname__,
            )
            events.attach(entry)
        if self.leaks.active:
            self.leaks.created(entry)

    # -- ending -----------------------------------------------------------

    def _claim_current(self) -> Entry | None:
        """Claim the current scope's entry for closing.

        If someone else is closing it already, the scope lets go of it now
        (so that the scope is empty when the caller returns) and ``None``
        says there is nothing left to close.
        """
        with self.ledger.lock:
            entry = self._current_entry()
            if entry is None:
                return None
            if self.ledger.claim(entry):
                return entry
            self._detach(entry)
            return None

    def remove(self) -> None:
        """Close the current scope's object, then discard it.

        Does nothing when the scope holds no object. The object is discarded
        even if closing it fails; the failure is logged and then raised.
        Closed exactly once, whoever else removes it at the same time.
        """
        self._refuse_in_cleanup()
        entry = self._claim_current()
        if entry is None:
            return
        try:
            failure = self.closer.end(entry, during="remove", removed=True)
        finally:
            with self.ledger.lock:
                self._detach(entry)
        if failure is not None:
            raise failure

    async def aremove(self) -> None:
        """:meth:`remove` for async close methods: the close is awaited here.

        If the caller is cancelled meanwhile, the close still finishes (on
        the loop) and the cancellation propagates; the scope is empty either
        way, and the object is counted as removed once it is closed.
        """
        self._refuse_in_cleanup()
        entry = self._claim_current()
        if entry is None:
            return
        try:
            failure = await self.closer.aend(entry, during="remove", removed=True)
        finally:
            with self.ledger.lock:
                self._detach(entry)
        if failure is not None:
            raise failure

    def clear(self) -> None:
        """Forget the current scope's object, if any; it is not closed."""
        with self.ledger.lock:
            entry = self._current_entry()
            if entry is None:
                return
            self._detach(entry)
            claimed = self.ledger.claim(entry)
        if claimed:
            self.closer.settle(entry, removed=True)

    def _refuse_in_cleanup(self) -> None:
        if self._cleaning and threading.get_ident() in self._cleaning:
            msg = (
                "remove() was called while the registry was closing a session "
                "whose scope ended (from that session's close()); a scope that "
                "ended has nothing left to remove"
            )
            raise RuntimeError(msg)

    def _scope_ended(self, entry: Entry) -> None:
        """A scope ended without ``remove()``: close its object and settle it.

        Runs wherever the end was noticed (a dying thread, a task's done
        callback, a weak reference callback), so it never raises. The caller
        has taken the entry out of the storage.
        """
        if os.getpid() != self._pid or not self.ledger.claim(entry):
            return
        ident = threading.get_ident()
        self._cleaning.add(ident)
        try:
            self.closer.end(entry, during="scope_end", removed=False)
        finally:
            self._cleaning.discard(ident)

    # -- explicit scopes --------------------------------------------------

    def push(self) -> Frame:
        """Open a fresh scope inside the current one, until :meth:`pop`.

        Either the scope kind opens a fresh key (the context scope), or the
        current object is set aside, not closed; either way the next use
        creates a new object.
        """
        opened = self._open_scope()
        with self.ledger.lock:
            slot = self._slot()
            saved = None
            if opened is None:
                saved = self._current_entry()
                if saved is not None:
                    self._detach(saved, set_aside=True)
            frame = Frame(slot, saved, opened)
            self.frames.push(frame)
        return frame

    def _check_leaving(self, frame: Frame) -> None:
        """Refuse to leave *frame* from elsewhere or out of order."""
        slot = self._slot()
        if slot != frame.slot:
            msg = (
                f"a scope opened in {self._describe_slot(frame.slot)} cannot be "
                f"left from {self._describe_slot(slot)}: leave it in the thread "
                "or task that opened it"
            )
            raise RuntimeError(msg)
        if self.frames.innermost(slot) is not frame:
            msg = "scopes must be left in the reverse order they were opened"
            raise RuntimeError(msg)

    def _restore(self, frame: Frame) -> None:
        """Drop *frame* and bring back what it set aside or opened."""
        with self.ledger.lock:
            if self.frames.innermost(frame.slot) is frame:
                self.frames.pop(frame)
            saved, frame.saved = frame.saved, None
            if saved is not None:
                self._put(saved)
        if frame.opened is not None:
            self._close_scope(frame.opened)

    def pop(self, frame: Frame) -> None:
        """Leave *frame*: remove its object and bring back the one set aside.

        Must be called from the scope that pushed it, innermost first;
        otherwise a :class:`RuntimeError` says so and nothing changes. The
        outer object comes back whatever happens, ``BaseException`` included.
        """
        self._check_leaving(frame)
        try:
            self.remove()
        finally:
            self._restore(frame)

    async def apop(self, frame: Frame) -> None:
        """:meth:`pop`, awaiting the inner object's close (:meth:`aremove`)."""
        self._check_leaving(frame)
        try:
            await self.aremove()
        finally:
            self._restore(frame)

    # -- introspection ----------------------------------------------------

    def check_leaks(self) -> int:
        """Warn (once each) about sessions past :attr:`leak_after`, and when
        more than :attr:`max_scopes` scopes hold one; return the number of
        new warnings. Nothing is closed: the sessions may still be in use.

        Runs on every creation when a limit is set; call it from a health
        check to notice sessions that stopped being created.
        """
        return self.leaks.check()

    def entries(self) -> list[dict[str, Any]]:
        """The live objects: session id, scope, object, thread and age.

        Cheap enough for a health endpoint: it copies a small table.
        """
        return [entry.describe() for entry in self.ledger.live()]

    def stats(self) -> dict[str, int]:
        """Counters: ``created``, ``removed``, ``cleaned_up`` and ``live``.

        Every snapshot satisfies ``created == removed + cleaned_up + live``.
        """
        return self.ledger.stats()

    # -- fork -------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: start empty without touching the parent's objects.

        Closing them would act on connections the parent still uses, and so
        would letting them be garbage collected (a pooled connection is reset
        when its owner dies), so they are parked for the child's lifetime.
        Open ``scope()`` blocks of the forking thread stay open, emptied.
        """
        orphans = self.ledger.after_fork()
        orphans += self.frames.after_fork(threading.current_thread())
        self._cleaning = set()
        self._pid = os.getpid()
        self._reset_storage()
        _fork_orphans.extend(entry.obj for entry in orphans)
        self.events.emit(REGISTRY_FORKED.level, REGISTRY_FORKED, dropped=len(orphans))


#: Registries alive in this process, so that a fork can reset them all.
_live_registries: weakref.WeakSet[Registry[Any]] = weakref.WeakSet()
#: Objects inherited from the parent by a forked child, kept unreachable.
_fork_orphans: list[object] = []


@_fork.in_child
def _reset_after_fork() -> None:
    for registry in list(_live_registries):
        registry._after_fork()
