"""Storage keyed by the value of a user-supplied scope function."""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from scoped.errors import AlreadyPresentError, require_callable
from scoped.events import SESSION_CREATED
from scoped.lifecycle import Entry, bounded_repr
from scoped.registry._base import MISSING, Registry, _Missing
from scoped.registry._lookup import IDENTITY, KEYED
from scoped.scopes import Scope

__all__ = ["ScopedRegistry"]

_T = TypeVar("_T")


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
    dropped; ``set()`` waits for a creation in flight too. A *scopefunc* that
    raises propagates its exception unchanged; an unhashable key is a
    :class:`TypeError` naming the scopefunc and the key's type. Neither
    changes the registry.
    """

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
        # Scopes whose keys are objects compared by identity are stored by
        # id(): a C-level lookup that does not keep the object alive. Their
        # end is noticed by a weak reference, which fires before the id can
        # be reused.
        self._identity = scope is not None and scope.identity_keys
        # The proxies then ask the scope itself, which explains its misses.
        self.lookup = (IDENTITY if self._identity else KEYED).with_misses(
            *(scope.fast_misses if scope is not None else ()),
            calls_python=inspect.isfunction(fast) or inspect.ismethod(fast),
        )
        self._misses = self.lookup.misses
        self._storage = {}
        self._creating: dict[Hashable, _Creation] = {}
        self._key_entries: dict[Hashable, Entry] = {}
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
        except self._misses:
            pass
        # Created outside the except block, as the thread-local registry does.
        return self._get_or_create(None)

    def has(self) -> bool:
        return self.key() in self._storage

    def set(self, obj: _T) -> None:
        self._get_or_create(lambda: obj, replace=True)

    def peek(self) -> _T | _Missing:
        return self._storage.get(self.key(), MISSING)

    def _slot(self) -> Hashable:
        return self.key()

    def _current_entry(self) -> Entry | None:
        return self._key_entries.get(self.key())

    def _detach(self, entry: Entry, *, set_aside: bool = False) -> bool:
        stored = entry.slot
        if self._key_entries.get(stored) is not entry:
            return False
        del self._key_entries[stored]
        self._storage.pop(stored, None)
        # An object set aside by a scope() block still ends with its scope.
        cancel = None if set_aside else self._unwatch.pop(id(entry), None)
        if cancel is not None:
            cancel()
        return True

    def _put(self, entry: Entry) -> None:
        stored = entry.slot
        current = self._key_entries.get(stored)
        if current is not None and current is not entry:
            # Created meanwhile by another thread of the same scope: the
            # block's outer object wins, as if the block had never opened.
            self._discard(current)
        self._storage[stored] = entry.obj  # type: ignore[assignment]
        self._key_entries[stored] = entry

    def _discard(self, entry: Entry) -> None:
        """Take *entry* out of the storage and settle it, without closing."""
        self._detach(entry)
        if self.ledger.claim(entry):
            self.closer.settle(entry, removed=True)

    def _reset_storage(self) -> None:
        self._storage.clear()
        self._key_entries.clear()
        self._creating.clear()
        self._unwatch.clear()

    def end_scopes(self, thread: threading.Thread) -> None:
        """End the scope of every session created by *thread* (loop shutdown)."""
        with self.ledger.lock:
            live = [
                (stored, entry)
                for stored, entry in self._key_entries.items()
                if entry._thread is thread
            ]
        for stored, entry in live:
            self._ended(stored, entry)

    def _track(self, key: Hashable, raw: Any, obj: _T) -> tuple[Entry, Any]:
        """Make the entry of a new object for *key*: its label and weak key."""
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
        entry = Entry(obj, label)
        entry.slot = stored
        # The weak reference must live as long as the entry for its callback
        # to fire.
        entry.watcher = watcher
        return entry, stored

    def _store(self, key: Hashable, raw: Any, obj: _T) -> None:
        """Store a new object for *key*, replacing (discarding) any other,
        and arrange for the scope's end."""
        entry, stored = self._track(key, raw, obj)
        ledger = self.ledger
        with ledger.lock:
            replaced = self._key_entries.get(stored)
            if replaced is not None:
                self._discard(replaced)
            ledger.add(entry)
            self._storage[stored] = obj
            self._key_entries[stored] = entry
        # Asked here first, as on the thread scope: most creations are
        # neither logged nor watched.
        if self.leaks.active or self.events.wants(SESSION_CREATED.level):
            self._announce(entry)
        scope = self._scope
        if scope is not None:
            handle = scope.watch(raw, functools.partial(self._ended, stored, entry))
            if handle is not None:
                with ledger.lock:
                    # Unless the object left its scope meanwhile.
                    if self._key_entries.get(stored) is entry:
                        self._unwatch[id(entry)] = functools.partial(
                            scope.unwatch, raw, handle
                        )
                        return
                scope.unwatch(raw, handle)

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
        with self.ledger.lock:
            ended: list[Entry] = []
            current = self._key_entries.get(stored)
            if current is not None and (entry is None or current is entry):
                self._detach(current, set_aside=True)
                ended.append(current)
            # Without an entry, the scope's object was collected: it ended.
            if ended or entry is None or self.frames.sets_aside(stored, entry):
                ended += self.frames.end(stored)
            for gone in ended:
                # The scope is over: nothing left to cancel, nor to keep alive.
                self._unwatch.pop(id(gone), None)
        for gone in ended:
            self._scope_ended(gone)

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

    def _get_or_create(
        self, factory: Callable[[], _T] | None, *, replace: bool = False
    ) -> _T:
        """Find or create the current object; with *replace*, store
        *factory*'s object whatever the scope holds (``set()``).

        Creations for one key are serialised: a caller that finds one in
        flight waits for it, then looks again.
        """
        key, raw = self._keys()
        while True:
            with self.ledger.lock:
                if not replace:
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
            with self.ledger.lock:
                del self._creating[key]
            pending.busy.release()
