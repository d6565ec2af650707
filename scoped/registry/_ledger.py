"""The ledger: every live entry of one registry, and counts that add up.

One lock guards the entries, the claims on them and the counters, so that
each entry is settled (counted as removed or cleaned up) exactly once. The
number created is not counted apart: it *is* ``removed + cleaned_up +
live``, so every snapshot adds up by construction, and adding an entry is a
single dictionary store. Entries are their own keys: they hash by identity,
in C, with no key object to allocate. The storage strategies take the same
lock for their own structural changes: one registry, one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from scoped._extension import compiled

if TYPE_CHECKING:
    from scoped.lifecycle import Entry

__all__ = ["Ledger", "LedgerFields"]


class LedgerFields:
    """The fields of a :class:`Ledger` and :meth:`settle`, as the C extension
    holds them.

    :mod:`scoped._speedups` has the same type in C, used when it is built:
    settling is on every session's end.
    """

    __slots__ = ("_claimed", "_entries", "cleaned_up", "lock", "removed")

    def __init__(self) -> None:
        # Reentrant: a scope key collected by the garbage collector ends its
        # scope from a weakref callback, which can run inside any allocation,
        # including one made while this thread holds the lock.
        self.lock = threading.RLock()
        # Ordered by creation; the values are unused.
        self._entries: dict[Entry, None] = {}
        self._claimed: set[Entry] = set()
        self.removed = self.cleaned_up = 0

    def settle(self, entry: Entry, *, removed: bool) -> bool:
        """Forget *entry* and count it, exactly once; tell whether it was live."""
        # acquire()/release() rather than "with": a thousand instructions
        # less on every session's end.
        lock = self.lock
        lock.acquire()
        try:
            if self._entries.pop(entry, False) is False:
                return False
            if removed:
                self.removed += 1
            else:
                self.cleaned_up += 1
            if self._claimed:
                self._claimed.discard(entry)
        finally:
            lock.release()
        return True


if TYPE_CHECKING:
    _Fields = LedgerFields
else:
    _Fields = compiled("LedgerFields") or LedgerFields


class Ledger(_Fields):
    """Live entries in creation order, claims on them, and their counts.

    An entry is *claimed* by whoever closes it (a ``remove()``, the end of
    its scope); a second claim fails, so no object is closed twice. It stays
    live until its close has finished and it is *settled*.
    """

    __slots__ = ("add",)

    def __init__(self) -> None:
        super().__init__()
        #: ``add(entry)`` records a new entry, with :attr:`lock` held or not:
        #: one dictionary store, atomic on its own, and no Python frame on
        #: every creation. No snapshot can see half of it, since the count
        #: of creations is derived from the entries.
        self.add: Callable[[Entry], object] = self._entries.setdefault

    def claim(self, entry: Entry) -> bool:
        """Take *entry* for closing; ``False`` if it is gone or taken already."""
        with self.lock:
            if entry in self._claimed or entry not in self._entries:
                return False
            self._claimed.add(entry)
            return True

    def claimed(self, entry: Entry) -> bool:
        """Tell whether someone is closing *entry* now."""
        return entry in self._claimed

    def live(self) -> list[Entry]:
        """A copy of the live entries, oldest first."""
        with self.lock:
            return list(self._entries)

    def newest(self) -> Entry | None:
        with self.lock:
            return next(reversed(self._entries), None)

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        """One consistent snapshot of the counters."""
        with self.lock:
            live = len(self._entries)
            removed, cleaned_up = self.removed, self.cleaned_up
        return {
            "created": removed + cleaned_up + live,
            "removed": removed,
            "cleaned_up": cleaned_up,
            "live": live,
        }

    def after_fork(self) -> list[Entry]:
        """In a forked child: start afresh; return the parent's entries.

        The counts start from zero with the entries, so that the child's
        snapshots add up; the parent's objects are not the child's to count.
        """
        # Another thread may have held the lock at fork time.
        self.lock = threading.RLock()
        orphans = list(self._entries)
        self._entries.clear()
        self._claimed.clear()
        self.removed = self.cleaned_up = 0
        return orphans
