"""The ledger: every live entry of one registry, and counts that add up.

One lock guards the entries, the claims on them and the counters, so that
each entry is settled (counted as removed or cleaned up) exactly once. The
number created is not counted apart: it *is* ``removed + cleaned_up +
live``, so every snapshot adds up by construction, and adding an entry is a
single dictionary store. The storage strategies take the same lock for
their own structural changes: one registry, one lock.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scoped.lifecycle import Entry

__all__ = ["Ledger"]


class Ledger:
    """Live entries in creation order, claims on them, and their counts.

    An entry is *claimed* by whoever closes it (a ``remove()``, the end of
    its scope); a second claim fails, so no object is closed twice. It stays
    live until its close has finished and it is *settled*.
    """

    __slots__ = ("_claimed", "_entries", "cleaned_up", "lock", "removed")

    def __init__(self) -> None:
        # Reentrant: a scope key collected by the garbage collector ends its
        # scope from a weakref callback, which can run inside any allocation,
        # including one made while this thread holds the lock.
        self.lock = threading.RLock()
        self._entries: dict[int, Entry] = {}
        self._claimed: set[int] = set()
        self.removed = self.cleaned_up = 0

    def add(self, entry: Entry) -> None:
        """Record a new entry, with :attr:`lock` held or not.

        One dictionary store, atomic on its own: no snapshot can see half of
        it, since the count of creations is derived from the entries.
        """
        self._entries[id(entry)] = entry

    def claim(self, entry: Entry) -> bool:
        """Take *entry* for closing; ``False`` if it is gone or taken already."""
        key = id(entry)
        with self.lock:
            if key in self._claimed or self._entries.get(key) is not entry:
                return False
            self._claimed.add(key)
            return True

    def claimed(self, entry: Entry) -> bool:
        """Tell whether someone is closing *entry* now."""
        return id(entry) in self._claimed

    def settle(self, entry: Entry, *, removed: bool) -> bool:
        """Forget *entry* and count it, exactly once; tell whether it was live."""
        key = id(entry)
        with self.lock:
            # The entry is alive (the caller holds it), so its id is its own.
            if self._entries.pop(key, None) is None:
                return False
            if removed:
                self.removed += 1
            else:
                self.cleaned_up += 1
            if self._claimed:
                self._claimed.discard(key)
        return True

    def live(self) -> list[Entry]:
        """A copy of the live entries, oldest first."""
        with self.lock:
            return list(self._entries.values())

    def newest(self) -> Entry | None:
        with self.lock:
            return next(reversed(self._entries.values()), None)

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
        orphans = list(self._entries.values())
        self._entries.clear()
        self._claimed.clear()
        self.removed = self.cleaned_up = 0
        return orphans
