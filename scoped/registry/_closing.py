"""Closing: how a registry ends its objects, and settles their entries.

Every path that ends an object (``remove()``, ``aremove()``, ``clear()``,
the end of its scope) claims its entry in the ledger first, so that it is
closed at most once, and settles it (counts it, reports it) only once the
close has ended: an interrupted or handed-off close is never counted early.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from scoped.events import SESSION_CLOSE_FAILED, SESSION_REMOVED, SESSION_SCOPE_ENDED
from scoped.registry import _loops

if TYPE_CHECKING:
    from scoped.lifecycle import Entry, Events
    from scoped.registry._ledger import Ledger

__all__ = ["Closer"]


class Closer:
    """Closes claimed entries' objects with *close* and settles them.

    *close* is called on the object (``None``: objects are discarded without
    closing). A close that returns an awaitable is finished on the event
    loop (:mod:`scoped.registry._loops`) unless the caller awaits it.
    """

    __slots__ = ("_events", "_ledger", "close")

    def __init__(
        self,
        close: Callable[[Any], object] | None,
        ledger: Ledger,
        events: Events,
    ) -> None:
        self.close = close
        self._ledger = ledger
        self._events = events

    def settle(self, entry: Entry, *, removed: bool) -> None:
        """Count *entry* as removed or cleaned up, once, and report it."""
        if entry.attached is not None:
            self._events.detach(entry)
        if self._ledger.settle(entry, removed=removed) and entry.logged:
            self._report(entry, removed=removed)

    def _report(self, entry: Entry, *, removed: bool) -> None:
        if removed:
            self._events.ended(SESSION_REMOVED.level, SESSION_REMOVED, entry)
        else:
            self._events.ended(
                SESSION_SCOPE_ENDED.level, SESSION_SCOPE_ENDED, entry, in_scope=True
            )

    def failed(self, entry: Entry, exc: BaseException, during: str) -> BaseException:
        """Report that closing *entry*'s object failed; return the failure."""
        self._events.ended(
            SESSION_CLOSE_FAILED.level,
            SESSION_CLOSE_FAILED,
            entry,
            in_scope=during == "scope_end",
            during=during,
            exception=f"{type(exc).__name__}: {exc}",
        )
        return exc

    def _start(
        self, entry: Entry, during: str
    ) -> BaseException | Awaitable[object] | None:
        """Call the close method: its failure, its awaitable, or ``None``."""
        close = self.close
        if close is None:
            return None
        # Closing as part of removal is reported as the removal itself, not
        # as a user's close() or the rollback that close() performs.
        if entry.attached is not None:
            self._events.detach(entry)
        try:
            result = close(entry.obj)
        except Exception as exc:  # noqa: BLE001 - reported, then raised by the caller
            return self.failed(entry, exc, during)
        if result is not None and inspect.isawaitable(result):
            return result
        return None

    def end(self, entry: Entry, during: str, removed: bool) -> BaseException | None:
        """Close a claimed entry's object, then settle it; return a failure.

        An awaitable close is finished on the loop and settles when done.
        """
        close = self.close
        if close is not None and entry.attached is None:
            # The common case, without _start()'s extra call: it runs at
            # every request teardown.
            try:
                result: object = close(entry.obj)
            except Exception as exc:  # noqa: BLE001 - reported, then raised by the caller
                started: BaseException | Awaitable[object] | None = self.failed(
                    entry, exc, during
                )
            else:
                if result is None or not inspect.isawaitable(result):
                    # settle(), inline: nothing is attached to detach.
                    if self._ledger.settle(entry, removed=removed) and entry.logged:
                        self._report(entry, removed=removed)
                    return None
                started = result
        else:
            started = self._start(entry, during)
        if started is None or isinstance(started, BaseException):
            self.settle(entry, removed=removed)
            return started
        _loops.close_soon(self, entry, started, during=during, removed=removed)
        return None

    async def aend(
        self, entry: Entry, *, during: str, removed: bool
    ) -> BaseException | None:
        """:meth:`end`, awaiting an async close here.

        The close runs shielded: if the caller is cancelled, the close goes
        on in the loop's closer and settles when it finishes, while the
        cancellation propagates to the caller.
        """
        started = self._start(entry, during)
        if started is None or isinstance(started, BaseException):
            self.settle(entry, removed=removed)
            return started
        closer = _loops.closer_for(asyncio.get_running_loop())
        task = closer.start(self, entry, started, during=during, removed=removed)
        return await asyncio.shield(task)
