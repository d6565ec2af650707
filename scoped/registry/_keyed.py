"""Storage keyed by the value of a user-supplied scope function."""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, TypeVar

from scoped.errors import AlreadyPresentError, require_callable
from scoped.lifecycle import Entry, bounded_repr
from scoped.registry._base import MISSING, Frame, Registry, _Missing
from scoped.scopes import Scope

__all__ = ["ScopedRegistry"]

_T = TypeVar("_T")


def _sets_aside(frame: Frame, entry: Entry | None) -> bool:
    """Whether the ``scope()`` block *frame* set aside the object of *entry*."""
    return entry is not None and frame.saved is not None and frame.saved[2] is entry


class _Creation:
    """One in-flight creation for one scope key; other threads wait on it.

    ``busy`` is held by the creating thread until the creation ended: a bare
    lock, since a :class:`threading.Event` would cost microseconds on every
    creation for the rare case that another thread waits.
    """

    __slots__ = ("busy", "owner")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.busy = threading.Lock()
        self.busy.acquire()

    def wait(self) -> None:
        """Block until the creation ended."""
        with self.busy:
            pass


class _WeakKey(weakref.ref):  # type: ignore[type-arg]
    """A dictionary key that stands for a scope object without keeping it alive.

    It hashes like the object and compares equal to it, so a lookup with the
    object itself finds the entry; when the object is collected, the
    callback ends the scope.
    """

    __slots__ = ("_hash",)

    def __init__(self, obj: object, callback: Callable[[Any], None]) -> None:
        # weakref.ref.__new__ has already bound obj and callback.
        self._hash = hash(obj)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        target = self()
        if isinstance(other, _WeakKey):
            other = other()
        return target is not None and target is other


def _identity_object(key: object) -> bool:
    """Tell whether *key* is an object compared by identity that can be weakly held.

    Only such keys can be collected while their scope's session lives: a key
    with value semantics (a str, an int, a frozen dataclass) may be a new but
    equal object on every call, so its collection says nothing.
    """
    kind = type(key)
    if kind.__hash__ is not object.__hash__ or kind.__eq__ is not object.__eq__:
        return False
    try:
        weakref.ref(key)
    except TypeError:
        return False
    return True


def _describe(func: Callable[..., Any]) -> str:
    """Name a scope function in an error message."""
    if inspect.isroutine(func):
        return f"{func.__module__}.{func.__qualname__}"
    # A callable instance: its own repr says more than its class's name.
    return repr(func)


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
    # LookupError also covers a ContextVar that has no value yet.
    lookup_misses: ClassVar[tuple[type[BaseException], ...]] = (
        LookupError,
        TypeError,
    )
    # A miss is raised by the subscript in the proxy's own frame (nothing
    # deeper in the traceback) while the scope holds nothing; has() also
    # turns an unhashable key into the clear TypeError. An error the session
    # or the scopefunc raises always has a frame of its own, or leaves the
    # scope's object in place.
    lookup_miss_test: ClassVar[str] = (
        "{error}.__traceback__.tb_next is None and not {self}.registry.has()"
    )

    _storage: dict[Hashable, _T]
    _scopefunc: Callable[[], Any]

    def __init__(
        self,
        createfunc: Callable[[], _T],
        scopefunc: Callable[[], Any],
        **options: Any,
    ) -> None:
        require_callable(scopefunc, "scopefunc")
        scope = scopefunc if isinstance(scopefunc, Scope) else None
        if scope is not None:
            # Before the base class hands it to the registry's events.
            self.scope_kind = scope.kind  # type: ignore[misc]
        # options: close, events, leak_after, max_scopes (see Registry).
        super().__init__(createfunc, **options)
        self._scope = scope
        #: What the user passed; checked (hashability, clear errors) off the
        #: hot path. ``_scopefunc`` is what proxies call on every access.
        self._checked_scopefunc = scopefunc
        self._scopefunc = scope.fast() if scope is not None else scopefunc
        fast = self._scopefunc
        self.lookup_calls_python = inspect.isfunction(fast) or inspect.ismethod(fast)  # type: ignore[misc]
        # Scopes whose keys are objects compared by identity are stored by
        # id(): a C-level lookup that does not keep the object alive. Their
        # end is noticed by a weak reference, which fires before the id can
        # be reused.
        self._identity = scope is not None and scope.identity_keys
        if self._identity:
            self.lookup = "{storage}[id({scopefunc}())]"  # type: ignore[misc]
        if scope is not None and scope.fast_misses:
            # The proxies then ask the scope itself, which explains.
            self.lookup_misses = (*self.lookup_misses, *scope.fast_misses)  # type: ignore[misc]
        self._storage = {}
        # Reentrant for the same reason as the entries lock: _collected()
        # runs wherever the garbage collector happens to run.
        self._lock = threading.RLock()
        self._creating: dict[Hashable, _Creation] = {}
        self._key_entries: dict[Hashable, Entry] = {}
        self._frames: dict[Hashable, list[Frame]] = {}
        # How to cancel the scope's watch of each live entry (by id()), for
        # scopes that watch with callbacks: a long-lived task that creates
        # and removes many sessions must not pile up done callbacks that
        # keep every one of them alive until the task ends.
        self._unwatch: dict[int, Callable[[], None]] = {}

    @property
    def scopefunc(self) -> Callable[[], Any]:
        """The function whose return value identifies the current scope."""
        return self._checked_scopefunc

    def key(self) -> Hashable:
        """Return the current scope's storage key, checked.

        That is the scope function's value, or its ``id()`` for scopes keyed
        by identity.
        """
        return self._keys()[0]

    def _keys(self) -> tuple[Hashable, Any]:
        """The current storage key and the scope function's own value."""
        key = self._checked_scopefunc()
        if self._identity:
            if not _identity_object(key):
                msg = (
                    f"{_describe(self._checked_scopefunc)} returned a "
                    f"{type(key).__name__!r}, but its keys must be objects "
                    "compared by identity that can be weakly referenced"
                )
                raise TypeError(msg)
            return id(key), key
        try:
            hash(key)
        except TypeError:
            msg = (
                f"scopefunc {_describe(self._checked_scopefunc)} returned an "
                "unhashable "
                f"scope key of type {type(key).__name__!r}; scope keys must be "
                "hashable (return an id, a name or the scope object itself)"
            )
            raise TypeError(msg) from None
        return key, key

    def __call__(self) -> _T:
        try:
            if self._identity:
                return self._storage[id(self._scopefunc())]
            return self._storage[self._scopefunc()]
        except self.lookup_misses:
            pass
        # Created outside the except block, as the thread-local registry does.
        return self._get_or_create(None)

    def has(self) -> bool:
        return self.key() in self._storage

    def set(self, obj: _T) -> None:
        key, raw = self._keys()
        self._clear_key(key)
        self._store(key, raw, obj)

    def clear(self) -> None:
        self._clear_key(self.key())

    def _clear_key(self, key: Hashable) -> None:
        with self._lock:
            self._storage.pop(key, None)
            entry = self._key_entries.pop(key, None)
        self._unwatched(entry)
        self._discarded(entry)

    def _unwatched(self, entry: Entry | None) -> None:
        """Cancel the scope's watch of *entry*, which left its scope early."""
        if self._unwatch and entry is not None:
            cancel = self._unwatch.pop(id(entry), None)
            if cancel is not None:
                cancel()

    def peek(self) -> _T | _Missing:
        return self._storage.get(self.key(), MISSING)

    def _current_entry(self) -> Entry | None:
        return self._key_entries.get(self.key())

    def _drop_all(self) -> None:
        # Another thread may have held the lock at fork time: start afresh.
        self._lock = threading.RLock()
        self._storage.clear()
        self._key_entries.clear()
        self._creating.clear()
        self._frames.clear()
        self._unwatch.clear()

    def _store(self, key: Hashable, raw: Any, obj: _T) -> None:
        """Store a new object for *key* and arrange for the scope's end."""
        scope = self._scope
        stored: Hashable = key
        watcher: object = None
        if scope is not None and self._identity:
            watcher = weakref.ref(raw, functools.partial(self._collected_id, key))
            label = scope.describe(raw)
        elif scope is not None and scope.strong_keys:
            label = scope.describe(key)
        elif _identity_object(key):
            stored = _WeakKey(key, self._collected)
            label = bounded_repr(key)
        else:
            label = key  # type: ignore[assignment]
        entry = self._track(obj, label)
        entry.slot = stored
        # The weak reference must live as long as the entry for its callback
        # to fire.
        entry.watcher = watcher
        with self._lock:
            self._storage[stored] = obj
            self._key_entries[stored] = entry
        if scope is not None:
            handle = scope.watch(raw, functools.partial(self._ended, stored, entry))
            if handle is not None:
                self._unwatch[id(entry)] = functools.partial(scope.unwatch, raw, handle)

    def _collected(self, stored: Hashable) -> None:
        self._ended(stored, None)

    def _collected_id(self, key: Hashable, _ref: object) -> None:
        self._ended(key, None)

    def _ended(self, stored: Hashable, entry: Entry | None) -> None:
        """The scope of *stored* ended: clean up whatever it still holds.

        That is its current object and, when a ``scope()`` block in it was
        never left, the objects such blocks set aside (each scope end is
        noticed once per object, in no set order). A call about an object
        the scope no longer holds changes nothing.
        """
        with self._lock:
            ended: list[Entry] = []
            current = self._key_entries.get(stored)
            if current is not None and (entry is None or current is entry):
                del self._key_entries[stored]
                self._storage.pop(stored, None)
                ended.append(current)
            frames = self._frames.get(stored, ())
            # Without an entry, the scope's object was collected: it ended.
            if ended or entry is None or any(_sets_aside(f, entry) for f in frames):
                # No block of an ended scope can be left any more.
                for frame in self._frames.pop(stored, ()):
                    if frame.saved is not None:
                        ended.append(frame.saved[2])
                        frame.saved = None
            for gone in ended:
                self._unwatch.pop(id(gone), None)
        for gone in ended:
            self._scope_ended(gone)

    def _slot(self) -> Hashable:
        return self.key()

    def _describe_slot(self, slot: Hashable) -> str:
        scope = self._scope
        if self._identity:
            # The slot is an id(); the scope's session, if any, has its name.
            entry = self._key_entries.get(slot)
            named = bounded_repr(slot) if entry is None else str(entry.scope)
        else:
            named = bounded_repr(slot) if scope is None else scope.describe(slot)
        return f"{self.scope_kind} scope {named}"

    def _open_scope(self) -> Any:
        return None if self._scope is None else self._scope.open()

    def _close_scope(self, opened: Any) -> None:
        if self._scope is not None:
            self._scope.close(opened)

    def _frame_stack(self, slot: Hashable, *, create: bool) -> list[Any] | None:
        if create:
            return self._frames.setdefault(slot, [])
        return self._frames.get(slot)

    def _forget_frames(self, slot: Hashable) -> None:
        self._frames.pop(slot, None)

    def _take(self) -> Any:
        key = self.key()
        with self._lock:
            entry = self._key_entries.pop(key, None)
            if entry is None:
                return None
            obj = self._storage.pop(key)
        return (entry.slot, obj, entry)

    def _put(self, saved: Any) -> None:
        if saved is None:
            return
        stored, obj, entry = saved
        with self._lock:
            self._storage[stored] = obj
            self._key_entries[stored] = entry

    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        key, raw = self._keys()
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
            pending.wait()
        try:
            obj = (factory or self.createfunc)()
            self._store(key, raw, obj)
            return obj
        finally:
            with self._lock:
                del self._creating[key]
            pending.busy.release()
