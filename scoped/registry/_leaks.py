"""The leak watch: warnings about sessions that live too long or too many."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scoped.errors import describe
from scoped.events import SESSION_LEAK_SUSPECTED

if TYPE_CHECKING:
    from scoped.lifecycle import Entry, Events
    from scoped.registry._ledger import Ledger

__all__ = ["LeakWatch", "check_limits"]


def check_limits(leak_after: object, max_scopes: object) -> None:
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


class LeakWatch:
    """Warns, once each, about sessions older than *leak_after* seconds and
    when more than *max_scopes* scopes hold one. Nothing is closed."""

    __slots__ = (
        "_events",
        "_ledger",
        "_next_age_scan",
        "_over_limit",
        "active",
        "leak_after",
        "max_scopes",
    )

    def __init__(
        self,
        ledger: Ledger,
        events: Events,
        leak_after: float | None,
        max_scopes: int | None,
    ) -> None:
        self._ledger = ledger
        self._events = events
        self._over_limit = False
        self.limit(leak_after, max_scopes)

    def limit(self, leak_after: float | None, max_scopes: int | None) -> None:
        """Set both limits (``None``: no limit), checked."""
        check_limits(leak_after, max_scopes)
        self.leak_after = leak_after
        self.max_scopes = max_scopes
        self._next_age_scan = 0.0
        #: Whether any limit is set (creations then run :meth:`created`).
        self.active = leak_after is not None or max_scopes is not None

    def check(self) -> int:
        """Run both checks now; return the number of new warnings."""
        warned = 0
        if self.leak_after is not None:
            warned += self._warn_old(self.leak_after)
        if self.max_scopes is not None:
            newest = self._ledger.newest()
            if newest is not None:
                warned += self._warn_crowded(self.max_scopes, newest)
        return warned

    def created(self, entry: Entry) -> None:
        """The checks on a creation, in constant time but for an age scan.

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
        ledger = self._ledger
        due: list[Entry] = []
        with ledger.lock:
            # Entries are in creation order, so the first young one ends it;
            # marked under the lock, so two threads never warn about one.
            for entry in ledger.live():
                if entry.age < limit:
                    break
                if not entry.warned:
                    entry.warned = True
                    due.append(entry)
        for entry in due:
            self._events.ended(
                SESSION_LEAK_SUSPECTED.level,
                SESSION_LEAK_SUSPECTED,
                entry,
                in_scope=True,
                reason="age",
                leak_after=limit,
            )
        return len(due)

    def _warn_crowded(self, bound: int, newest: Entry) -> int:
        # acquire()/release() rather than "with": this runs on every
        # creation while max_scopes is set.
        lock = self._ledger.lock
        lock.acquire()
        try:
            live = len(self._ledger)
            over = live > bound
            warn = over and not self._over_limit
            self._over_limit = over
        finally:
            lock.release()
        if warn:
            self._events.emit(
                SESSION_LEAK_SUSPECTED.level,
                SESSION_LEAK_SUSPECTED,
                newest,
                reason="max_scopes",
                live=live,
                max_scopes=bound,
            )
        return int(warn)
