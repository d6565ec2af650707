"""The registry contract shared by every kind of scope storage."""

from __future__ import annotations

import abc
import inspect
import logging
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ClassVar, Final, Generic, TypeVar

from scoped.errors import describe, require_callable
from scoped.lifecycle import Entry, Events, bounded_repr

__all__ = ["MISSING", "Registry"]

_T = TypeVar("_T")


class _Missing:
    """Sentinel for "no object in this scope"; distinct from a stored ``None``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


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


def _check_limits(leak_after: object, max_scopes: object) -> None:
    """Reject leak limits of the wrong type or range, naming the argument."""
    if leak_after is not None:
        if isinstance(leak_after, bool) or not isinstance(leak_after, (int, float)):
            msg = f"leak_after must be a number of seconds, got {describe(leak_after)}"
            raise TypeError(msg)
        if not leak_after > 0:
            msg = f"leak_after must be a positive number of seconds, got {leak_after!r}"
            raise ValueError(msg)
    if max_scopes is not None:
        if isinstance(max_scopes, bool) or not isinstance(max_scopes, int):
            msg = f"max_scopes must be a whole number, got {describe(max_scopes)}"
            raise TypeError(msg)
        if max_scopes < 1:
            msg = f"max_scopes must be at least 1, got {max_scopes!r}"
            raise ValueError(msg)


class Registry(abc.ABC, Generic[_T]):
    """Holds one object per scope and creates it on first use.

    Calling the registry returns the current scope's object, creating it with
    *createfunc* when the scope has none. ``has()``, ``set()`` and ``clear()``
    inspect and change the current scope only.

    Subclasses declare how generated proxies read the current object without
    a Python-level call: :attr:`lookup` is a source expression over the names
    ``storage`` and ``scopefunc`` (bound to :attr:`_storage` and
    :attr:`_scopefunc`), and :attr:`lookup_misses` the exceptions that mean
    "not created yet", after which proxies call :meth:`_create_current`.
    :attr:`lookup_miss_test` is a source expression over ``error``,
    ``storage`` and ``self`` (the proxy) that is true only for a miss raised
    by the lookup itself, so that proxies can forward from inside the ``try``.
    :attr:`lookup_calls_python` says that the lookup runs Python code (a
    scope function written in Python).
    """

    lookup: ClassVar[str]
    lookup_misses: ClassVar[tuple[type[BaseException], ...]]
    lookup_miss_test: ClassVar[str]
    lookup_calls_python: ClassVar[bool] = False
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
        _check_limits(leak_after, max_scopes)
        #: Warn about sessions older than this many seconds (``None``: never).
        self.leak_after = leak_after
        #: Warn when more scopes than this hold a session (``None``: never).
        self.max_scopes = max_scopes
        self._over_limit = False
        self._next_age_scan = 0.0
        # Threads currently closing a session whose scope ended; almost
        # always empty, so remove() checks it with one truth test.
        self._cleaning: set[int] = set()
        self.createfunc = createfunc
        #: Called on an object when its scope is removed or ends; ``None``
        #: discards objects without closing them.
        self.close = close
        if events is None:
            events = Events(f"{type(self).__name__}@{id(self):x}", enabled=False)
        # Events name the kind of scope, which only the registry knows.
        events.scope_kind = self.scope_kind
        self.events = events
        # Reentrant: a scope key collected by the garbage collector ends its
        # scope from a weakref callback, which can run inside any allocation,
        # including one made while this thread holds the lock.
        self._entries_lock = threading.RLock()
        self._entries: dict[int, Entry] = {}
        self._created = self._removed = self._cleaned_up = 0
        self._pid = os.getpid()
        _live_registries.add(self)

    @abc.abstractmethod
    def __call__(self) -> _T:
        """Return the current scope's object, creating it on first use."""

    @abc.abstractmethod
    def has(self) -> bool:
        """Tell whether the current scope holds an object."""

    @abc.abstractmethod
    def set(self, obj: _T) -> None:
        """Store *obj* as the current scope's object, replacing any other."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget the current scope's object, if any; it is not closed."""

    @abc.abstractmethod
    def peek(self) -> _T | _Missing:
        """Return the current scope's object, or :data:`MISSING`; never create."""

    @abc.abstractmethod
    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        """Return the current object, creating it with *factory* when absent.

        With an explicit *factory*, an existing object is an error instead:
        subclasses raise :class:`LookupError` for the caller to translate.
        """

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

    @abc.abstractmethod
    def _current_entry(self) -> Entry | None:
        """The bookkeeping entry of the current scope's object, if any.

        Every stored object has one: storing an object tracks it.
        """

    # -- bookkeeping shared by every kind of registry -------------------

    def _track(self, obj: _T, scope: object) -> Entry:
        """Record a newly created object; called by subclasses once stored."""
        entry = Entry(obj, scope)
        with self._entries_lock:
            self._entries[id(entry)] = entry
            self._created += 1
        self._announce(entry)
        return entry

    def _announce(self, entry: Entry) -> None:
        """Log a new entry and run the leak checks, as configured."""
        obj = entry.obj
        events = self.events
        if events.wants(logging.DEBUG):
            entry.logged = True
            events.emit(
                logging.DEBUG,
                "session.created",
                entry,
                session_class=type(obj).__qualname__,
            )
            events.attach(entry)
        if self.leak_after is not None or self.max_scopes is not None:
            self._check_created(entry)

    def _forget(self, entry: Entry) -> bool:
        """Drop a removed entry and count it; tell whether it was live."""
        return self._drop(entry, removed=True)

    def _drop(self, entry: Entry, *, removed: bool) -> bool:
        """Pop *entry* and count it as removed or cleaned up, exactly once."""
        with self._entries_lock:
            if self._entries.pop(id(entry), None) is None:
                return False
            if removed:
                self._removed += 1
            else:
                self._cleaned_up += 1
        return True

    def _untrack(self, entry: Entry) -> bool:
        """Forget an entry whose scope ended; tell whether it was live (once)."""
        if entry.attached is not None:
            self.events.detach(entry)
        return self._drop(entry, removed=False)

    def _discarded(self, entry: Entry | None) -> None:
        """An object left its scope through ``clear()`` (or ``remove()``)."""
        if entry is None:
            return
        if entry.attached is not None:
            self.events.detach(entry)
        if not self._forget(entry):
            return
        if entry.logged:
            self.events.ended(logging.DEBUG, "session.removed", entry)

    def _close(self, entry: Entry, *, during: str) -> BaseException | None:
        """Close *entry*'s object; log and return a failure instead of raising.

        A close method that returns an awaitable (a coroutine method, called
        where nothing can await it: a scope's end, a plain ``remove()``) is
        finished on the event loop by :mod:`scoped.asyncio`.
        """
        if self.close is not None and entry.attached is None:
            # The common case without the helper's extra call: a plain close.
            try:
                result: object = self.close(entry.obj)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - reported, then handled by the caller
                return self._close_failed(entry, exc, during=during)
            if result is None or not inspect.isawaitable(result):
                return None
        else:
            started = self._start_close(entry, during=during)
            if started is None or isinstance(started, BaseException):
                return started
            result = started
        from scoped.asyncio import close_soon

        close_soon(self, entry, result, during=during)
        return None

    def _start_close(
        self, entry: Entry, *, during: str
    ) -> BaseException | Awaitable[object] | None:
        """Call the close method on *entry*'s object.

        Returns the failure (already logged), the awaitable that an async
        close method returned, or ``None``.
        """
        if self.close is None:
            return None
        # Closing as part of removal is reported as the removal itself, not
        # as a user's close() or the rollback that close() performs.
        if entry.attached is not None:
            self.events.detach(entry)
        try:
            result = self.close(entry.obj)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - reported, then handled by the caller
            return self._close_failed(entry, exc, during=during)
        if result is not None and inspect.isawaitable(result):
            return result
        return None

    def _close_failed(
        self, entry: Entry, exc: BaseException, *, during: str
    ) -> BaseException:
        """Report that closing *entry*'s object failed; return the failure."""
        self.events.ended(
            logging.ERROR,
            "session.close_failed",
            entry,
            in_scope=during == "scope_end",
            during=during,
            exception=f"{type(exc).__name__}: {exc}",
        )
        return exc

    async def _aclose(self, entry: Entry, *, during: str) -> BaseException | None:
        """:meth:`_close` that awaits an async close method here."""
        result = self._start_close(entry, during=during)
        if result is None or isinstance(result, BaseException):
            return result
        try:
            await result
        except Exception as exc:  # noqa: BLE001 - reported, then handled by the caller
            return self._close_failed(entry, exc, during=during)
        return None

    def remove(self) -> None:
        """Close the current scope's object, then discard it.

        Does nothing when the scope holds no object. The object is discarded
        even if closing it fails; the failure is logged and then raised.
        """
        entry = self._removable()
        if entry is None:
            return
        try:
            failure = self._close(entry, during="remove")
        finally:
            self.clear()
        if failure is not None:
            raise failure

    async def aremove(self) -> None:
        """:meth:`remove` for async close methods: the close is awaited here."""
        entry = self._removable()
        if entry is None:
            return
        try:
            failure = await self._aclose(entry, during="remove")
        finally:
            self.clear()
        if failure is not None:
            raise failure

    def _removable(self) -> Entry | None:
        """What ``remove()`` acts on: the current object's entry."""
        self._refuse_in_cleanup()
        return self._current_entry()

    def _refuse_in_cleanup(self) -> None:
        if self._cleaning and threading.get_ident() in self._cleaning:
            msg = (
                "remove() was called while the registry was closing a session "
                "whose scope ended (from that session's close()); a scope that "
                "ended has nothing left to remove"
            )
            raise RuntimeError(msg)

    def _scope_ended(self, entry: Entry) -> None:
        """A scope ended without ``remove()``: close its object and forget it.

        Runs wherever the end was noticed (a dying thread, a task's done
        callback, a weak reference callback), so it never raises.
        """
        if os.getpid() != self._pid or not self._untrack(entry):
            return
        ident = threading.get_ident()
        self._cleaning.add(ident)
        try:
            self._close(entry, during="scope_end")
        finally:
            self._cleaning.discard(ident)
        if entry.logged:
            self.events.ended(
                logging.DEBUG, "session.scope_ended", entry, in_scope=True
            )

    # -- leaks ----------------------------------------------------------

    def check_leaks(self) -> int:
        """Warn (once each) about sessions past :attr:`leak_after`, and when
        more than :attr:`max_scopes` scopes hold one; return the number of
        new warnings. Nothing is closed: the sessions may still be in use.

        Runs on every creation when a limit is set; call it from a health
        check to notice sessions that stopped being created.
        """
        warned = 0
        if self.leak_after is not None:
            warned += self._warn_old(self.leak_after)
        if self.max_scopes is not None:
            with self._entries_lock:
                newest = next(reversed(self._entries.values()), None)
            if newest is not None:
                warned += self._warn_crowded(self.max_scopes, newest)
        return warned

    def _check_created(self, entry: Entry) -> None:
        """:meth:`check_leaks` on creation, in constant time but for an age scan.

        The scan copies the table of live sessions, so it runs at most ten
        times per ``leak_after``: creation stays independent of how many
        scopes are live, and a warning comes at most 10% late.
        """
        if self.max_scopes is not None:
            self._warn_crowded(self.max_scopes, entry)
        limit = self.leak_after
        if limit is not None and entry.created >= self._next_age_scan:
            self._next_age_scan = entry.created + limit / 10
            self._warn_old(limit)

    def _warn_old(self, limit: float) -> int:
        """Warn once about each session older than *limit* seconds."""
        with self._entries_lock:
            live = list(self._entries.values())
        warned = 0
        # Entries are in creation order, so the first young one ends it.
        for entry in live:
            if entry.age < limit:
                break
            if not entry.warned:
                entry.warned = True
                warned += 1
                self.events.ended(
                    logging.WARNING,
                    "session.leak_suspected",
                    entry,
                    in_scope=True,
                    reason="age",
                    leak_after=limit,
                )
        return warned

    def _warn_crowded(self, bound: int, newest: Entry) -> int:
        """Warn when the live sessions first exceed *bound*, naming *newest*."""
        live = len(self._entries)
        over = live > bound
        warn = over and not self._over_limit
        self._over_limit = over
        if warn:
            self.events.emit(
                logging.WARNING,
                "session.leak_suspected",
                newest,
                reason="max_scopes",
                live=live,
                max_scopes=bound,
            )
        return int(warn)

    # -- explicit scopes ------------------------------------------------

    @abc.abstractmethod
    def _slot(self) -> Hashable:
        """Identify where the current scope's object lives (thread or key)."""

    @abc.abstractmethod
    def _frame_stack(self, slot: Hashable, *, create: bool) -> list[Any] | None:
        """The stack of open :meth:`push` frames for *slot*."""

    @abc.abstractmethod
    def _forget_frames(self, slot: Hashable) -> None:
        """Drop the (empty) frame stack of *slot*."""

    @abc.abstractmethod
    def _take(self) -> Any:
        """Detach the current object and its bookkeeping, untouched."""

    @abc.abstractmethod
    def _put(self, saved: Any) -> None:
        """Reattach what :meth:`_take` detached."""

    def _describe_slot(self, slot: Hashable) -> str:
        """Name the scope of *slot* (see :meth:`_slot`) in an error message.

        Only errors call it, so :meth:`push` pays nothing for it.
        """
        return bounded_repr(slot)

    def _open_scope(self) -> Any:
        """Let the scope open a fresh key for :meth:`push`, if it can."""
        return None

    def _close_scope(self, opened: Any) -> None:
        """Undo :meth:`_open_scope`."""

    def push(self) -> Frame:
        """Open a fresh scope inside the current one, until :meth:`pop`.

        Either the scope kind opens a fresh key (the context scope), or the
        current object is set aside, not closed; either way the next use
        creates a new object.
        """
        opened = self._open_scope()
        slot = self._slot()
        frame = Frame(slot, None if opened is not None else self._take(), opened)
        stack = self._frame_stack(slot, create=True)
        assert stack is not None
        stack.append(frame)
        return frame

    def pop(self, frame: Frame) -> None:
        """Leave *frame*: remove its object and bring back the one set aside.

        Must be called from the scope that pushed it, innermost first;
        otherwise a :class:`RuntimeError` says so and nothing changes.
        """
        slot = self._slot()
        if slot != frame.slot:
            msg = (
                f"a scope opened in {self._describe_slot(frame.slot)} cannot be "
                f"left from {self._describe_slot(slot)}: leave it in the thread "
                "or task that opened it"
            )
            raise RuntimeError(msg)
        stack = self._frame_stack(slot, create=False)
        if not stack or stack[-1] is not frame:
            msg = "scopes must be left in the reverse order they were opened"
            raise RuntimeError(msg)
        try:
            self.remove()
        finally:
            stack.pop()
            if not stack:
                self._forget_frames(slot)
            if frame.opened is not None:
                self._close_scope(frame.opened)
            else:
                self._put(frame.saved)

    # -- introspection --------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """The live objects: session id, scope, object, thread and age.

        Cheap enough for a health endpoint: it copies a small table.
        """
        with self._entries_lock:
            live = list(self._entries.values())
        return [entry.describe() for entry in live]

    def stats(self) -> dict[str, int]:
        """Counters: ``created``, ``removed``, ``cleaned_up`` and ``live``."""
        with self._entries_lock:
            created, removed = self._counted()
            return {
                "created": created,
                "removed": removed,
                "cleaned_up": self._cleaned_up,
                "live": len(self._entries),
            }

    def _counted(self) -> tuple[int, int]:
        """Sessions created and removed so far (called with the lock held)."""
        return self._created, self._removed

    # -- fork -----------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: start empty without touching the parent's objects.

        Closing them would act on connections the parent still uses, and so
        would letting them be garbage collected (a pooled connection is reset
        when its owner dies), so they are parked for the child's lifetime.
        """
        # Another thread may have held the lock at fork time, and only this
        # thread lives on in the child: replace the lock, never wait for it.
        self._entries_lock = threading.RLock()
        orphans = [entry.obj for entry in self._entries.values()]
        self._entries.clear()
        self._pid = os.getpid()
        self._drop_all()
        _fork_orphans.extend(orphans)
        self.events.emit(logging.DEBUG, "registry.forked", dropped=len(orphans))

    @abc.abstractmethod
    def _drop_all(self) -> None:
        """Empty the storage in place (proxies hold a handle to it)."""


class Frame:
    """One open :meth:`Registry.push`: where, what it set aside or opened."""

    __slots__ = ("opened", "saved", "slot")

    def __init__(self, slot: Hashable, saved: Any, opened: Any = None) -> None:
        self.slot = slot
        self.saved = saved
        self.opened = opened


#: Registries alive in this process, so that a fork can reset them all.
_live_registries: weakref.WeakSet[Registry[Any]] = weakref.WeakSet()
#: Objects inherited from the parent by a forked child, kept unreachable.
_fork_orphans: list[object] = []


def _reset_after_fork() -> None:
    for registry in list(_live_registries):
        registry._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
