"""Closes that nothing awaits, finished on the event loop they belong to.

An async close method (``AsyncSession.close``) returns a coroutine, and the
end of a scope is often noticed where nothing can await it: a task's done
callback, a weak reference callback, a plain ``remove()``. Such a close runs
in a task of its own on the loop, kept referenced until it finishes, which
neither a cancelled awaiter nor a shutting-down loop can abandon half-way.
When :func:`asyncio.run` shuts the loop down, the closes still running and
the sessions still live in that thread's watched registries are closed
before the loop is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from scoped import _fork

if TYPE_CHECKING:
    from scoped.lifecycle import Entry

__all__ = ["LoopCloser", "close_soon", "closer_for", "wait_closed", "watch"]


class Settles(Protocol):
    """What a close on the loop reports to: a registry's closer."""

    def failed(self, entry: Entry, exc: BaseException, during: str) -> BaseException:
        """Report that closing *entry*'s object failed; return the failure."""

    def settle(self, entry: Entry, *, removed: bool) -> None:
        """Count and report *entry*, whose close has ended."""


class EndsScopes(Protocol):
    """A registry whose live scopes loop shutdown can end, thread by thread."""

    def end_scopes(self, thread: threading.Thread) -> None: ...


class _CloseTask(asyncio.Task[Any]):
    """Runs one close; a shutting-down loop's ``cancel()`` must not abandon it.

    :func:`asyncio.run` cancels every task left when the main coroutine
    returns, this one included; cancelled half-way, the close would leave its
    connection neither closed nor back in the pool.
    """

    def cancel(self, msg: Any | None = None) -> bool:
        return False


class LoopCloser:
    """The closes running on one event loop, and its shutdown guard."""

    __slots__ = ("guard", "loop", "tasks", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # The thread object, not its ident: idents are reused by new threads.
        self.thread = threading.current_thread()
        self.tasks: dict[asyncio.Task[Any], object] = {}
        self.guard: AsyncGenerator[None, None] | None = None
        # Too late for a guard once the loop has finalised its generators
        # (and the loop would warn about a new one).
        if not getattr(loop, "_asyncgens_shutdown_called", False):
            guard = _guard(self)
            # The first step registers it with the running loop and stops at
            # its yield, without ever suspending.
            with contextlib.suppress(StopIteration):
                guard.asend(None).send(None)
            self.guard = guard

    def start(
        self,
        owner: Settles,
        entry: Entry,
        awaitable: Awaitable[object],
        *,
        during: str,
        removed: bool,
    ) -> asyncio.Task[BaseException | None]:
        """Finish *awaitable*, the close of *entry*'s object, in a task.

        The task's result is the failure (reported to *owner*) or ``None``;
        *owner* settles the entry once the close has ended, however it ended.
        """
        task: asyncio.Task[BaseException | None] = _CloseTask(
            _finish(owner, entry, awaitable, during=during, removed=removed),
            loop=self.loop,
            name=f"scoped: close session {entry.session_id}",
        )
        self.tasks[task] = owner
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.pop(task, None)

    async def wait(self, owner: object | None = None) -> None:
        """Wait for the closes of *owner* (``None``: all) to finish."""
        while True:
            pending = [
                task
                for task, whose in list(self.tasks.items())
                if owner is None or whose is owner
            ]
            if not pending:
                return
            await asyncio.wait(pending)

    async def shutdown(self) -> None:
        """Close everything left on the loop before it closes.

        The closes already running, and every session still live in this
        thread: its task is gone, or it belongs to a scope that is not a
        task's. Closes can end further scopes, hence the loop.
        """
        while True:
            for registry in list(_watched):
                registry.end_scopes(self.thread)
            if not self.tasks:
                break
            await self.wait()
        with _lock:
            if _closers.get(self.loop) is self:
                del _closers[self.loop]


async def _finish(
    owner: Settles,
    entry: Entry,
    awaitable: Awaitable[object],
    *,
    during: str,
    removed: bool,
) -> BaseException | None:
    try:
        await awaitable
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - reported
        # The close's own cancellation included: it ended without closing.
        return owner.failed(entry, exc, during)
    finally:
        owner.settle(entry, removed=removed)
    return None


async def _guard(closer: LoopCloser) -> AsyncGenerator[None, None]:
    """Suspended until the loop's ``shutdown_asyncgens()``, then closes what is left.

    :func:`asyncio.run` (and ``asyncio.Runner``) call that after cancelling
    the remaining tasks and before closing the loop, which is the last
    moment a close can still be awaited.
    """
    try:
        yield
    finally:
        await closer.shutdown()


# The closers of the loops that have closes to run. Loops in several threads
# add and drop theirs concurrently: every access holds the lock.
_closers: dict[asyncio.AbstractEventLoop, LoopCloser] = {}
_lock = _fork.Lock()
# Registries whose live scopes a loop's shutdown ends.
_watched: weakref.WeakSet[EndsScopes] = weakref.WeakSet()


@_fork.in_child
def _forget_loops() -> None:
    # The parent's loops do not run in the child.
    _closers.clear()


def watch(registry: EndsScopes) -> None:
    """Have loop shutdown end *registry*'s scopes of the loop's thread."""
    with _lock:
        _watched.add(registry)


def closer_for(loop: asyncio.AbstractEventLoop) -> LoopCloser:
    """The closer of *loop*, which must be running in this thread."""
    with _lock:
        closer = _closers.get(loop)
        if closer is not None:
            return closer
        # Loops closed without a shutdown (run by hand): nothing can run on
        # them any more, and their suspended guards are dropped harmlessly.
        for closed in [other for other in _closers if other.is_closed()]:
            del _closers[closed]
    closer = LoopCloser(loop)
    with _lock:
        return _closers.setdefault(loop, closer)


async def wait_closed(owner: object | None = None) -> None:
    """Wait for the running loop's closes of *owner* (``None``: all)."""
    # A task awaited directly wakes its awaiter before its own done
    # callbacks run, which start the close: let them run first.
    await asyncio.sleep(0)
    with _lock:
        closer = _closers.get(asyncio.get_running_loop())
    if closer is not None:
        await closer.wait(owner)


def close_soon(
    owner: Settles,
    entry: Entry,
    awaitable: Awaitable[object],
    *,
    during: str,
    removed: bool,
) -> None:
    """Finish an async close started where nothing can await it.

    On the running loop when there is one; else on the loop of the thread
    that created the session, if it still runs (a scope key collected
    elsewhere). Otherwise the close cannot happen: the failure is reported
    and the entry settled at once.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        closer_for(loop).start(owner, entry, awaitable, during=during, removed=removed)
        return
    with _lock:
        closers = list(_closers.values())
    for closer in closers:
        if closer.thread is entry._thread and closer.loop.is_running():
            start = functools.partial(
                closer.start, owner, entry, awaitable, during=during, removed=removed
            )
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                closer.loop.call_soon_threadsafe(start)
                return
    close = getattr(awaitable, "close", None)
    if callable(close):
        # A coroutine that never ran: closing it is all that can be done,
        # and it keeps Python from warning that it was never awaited.
        close()
    failure = RuntimeError(
        "no running event loop to close the session on; close async sessions "
        "with 'await db.remove()' before their loop stops"
    )
    try:
        owner.failed(entry, failure, during)
    finally:
        owner.settle(entry, removed=removed)
