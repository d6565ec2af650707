"""``async_scoped_session``: one session per asyncio task, closed when it ends.

A drop-in for :class:`sqlalchemy.ext.asyncio.async_scoped_session` whose
default scope is the current task (:data:`scoped.scopes.task`)::

    db = async_scoped_session(async_sessionmaker(engine))

    async def handler() -> None:
        await db.execute(...)
        await db.commit()
        # no ``await db.remove()`` needed: the session is closed when the
        # task ends, however it ends

Closing an ``AsyncSession`` is a coroutine, and a task's end is noticed in a
done callback, where nothing can await it. The close therefore runs in a
task of its own on the same loop, which is kept referenced until it finishes
and which the ``cancel()`` of a shutting-down loop cannot abandon half-way.
:meth:`async_scoped_session.wait_closed` waits for those closes (before an
``engine.dispose()``, say). When :func:`asyncio.run` shuts the loop down, the
closes still running and the sessions still live in that thread are closed
before the loop is: nothing is left for the garbage collector to warn about.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from scoped import scopes
from scoped.lifecycle import Entry
from scoped.registry import Registry, ScopedRegistry
from scoped.session import ScopeBlock, scoped_session

__all__ = [
    "AnyAsyncScopedSession",
    "AsyncScopeBlock",
    "async_scoped_session",
    "close_soon",
]

_S = TypeVar("_S")

if TYPE_CHECKING:
    # Type checkers see SQLAlchemy's own statically typed AsyncSession
    # proxies (awaitable where the session's methods are); the members the
    # two bases both define are this class's own at run time.
    from sqlalchemy.ext import asyncio as _sa_asyncio
    from sqlalchemy.ext.asyncio import AsyncSession
    from typing_extensions import Unpack

    from scoped.proxies._session_typing import AnyProxies
    from scoped.session import _Options

    class _AsyncBase(  # type: ignore[misc]
        _sa_asyncio.async_scoped_session[Any], scoped_session[_S]
    ):
        pass

else:
    _AsyncBase = scoped_session

_T = TypeVar("_T")
#: An AsyncSession class: its proxies are typed as SQLAlchemy's async ones.
_AsyncSession = TypeVar("_AsyncSession", bound="AsyncSession")


class async_scoped_session(_AsyncBase[_S]):  # noqa: N801 - SQLAlchemy's name
    """One async session per task, reached through one global object.

    ``async_scoped_session(async_sessionmaker(engine))`` gives every asyncio
    task its own session, created on first use and closed when the task
    finishes, fails or is cancelled; ``await db.remove()`` closes it sooner.
    Coroutine methods of the session class stay coroutines on the proxy
    (``await db.commit()``); other methods and attributes forward as they
    are. Child tasks get sessions of their own, never their parent's: an
    ``AsyncSession`` must not be used by two tasks at once.

    The arguments are those of :class:`scoped.scoped_session`; *scopefunc*
    defaults to :data:`scoped.scopes.task` instead of the thread, and
    *close_method* may name a coroutine method (``close_method="aclose"``
    for a client class that has one) or a plain one.

    When the factory makes ``AsyncSession`` objects the instance is also an
    instance of :class:`sqlalchemy.ext.asyncio.async_scoped_session`.
    """

    #: The scope when none is given (or a false one, as SQLAlchemy tests it).
    _scoped_default_scope: ClassVar[Callable[[], Any] | None] = scopes.task

    if TYPE_CHECKING:
        # As for scoped_session: AsyncSession factories get SQLAlchemy's
        # typed async proxies, any other class members typed Any. The
        # constructor itself is scoped_session's.
        @overload
        def __new__(  # type: ignore[overload-overlap]
            cls,
            session_factory: Callable[..., _AsyncSession],
            scopefunc: Callable[[], Any] | None = None,
            *,
            class_: type[_AsyncSession] | None = None,
            **options: Unpack[_Options],
        ) -> async_scoped_session[_AsyncSession]: ...
        @overload
        def __new__(
            cls,
            session_factory: Callable[..., _T],
            scopefunc: Callable[[], Any] | None = None,
            *,
            class_: type[_T] | None = None,
            **options: Unpack[_Options],
        ) -> AnyAsyncScopedSession[_T]: ...
        def __new__(cls, *args: Any, **kwargs: Any) -> Any: ...

    def _scoped_attach(self, registry: Registry[_S]) -> None:
        super()._scoped_attach(registry)
        # Loop shutdown closes what this proxy's scopes still hold.
        _instances.add(self)

    @classmethod
    def _sqlalchemy_options(cls, target: type) -> dict[str, Any] | None:
        from scoped import _sqlalchemy

        return _sqlalchemy.async_proxy_options(target)

    if TYPE_CHECKING:
        # What scoped_session provides at run time, with this class's types
        # rather than those SQLAlchemy's class declares.
        session_factory: Callable[..., _S]  # type: ignore[assignment]
        registry: Registry[_S]  # type: ignore[assignment]

        def __call__(self, **kw: Any) -> _S:
            """Return the current scope's session, creating it on first use."""

    async def remove(self) -> None:  # type: ignore[override]
        """Close the current scope's session, awaiting the close, then discard it.

        The next use in this scope creates a new session. Without a session
        this does nothing. The session is discarded even if closing it fails,
        so a broken session is never handed out again.
        """
        await self._scoped_registry.aremove()

    async def wait_closed(self) -> None:
        """Wait until the sessions of ended scopes on this loop are closed.

        Their closes run in the background after each task ends; wait for
        them before disposing of the engine, or to see every connection back
        in the pool.
        """
        # A task awaited directly wakes its awaiter before its own done
        # callbacks run, which start the close: let them run first.
        await asyncio.sleep(0)
        closer = _closers.get(asyncio.get_running_loop())
        if closer is not None:
            await closer.wait(self._scoped_registry)

    async def remove_all(self) -> None:
        """Close and discard the session of every scope of this thread's loop.

        For shutdown: a session that a running task still uses is closed
        under it. Sessions of other threads (other loops) are left alone.
        """
        registry = self._scoped_registry
        if isinstance(registry, ScopedRegistry):
            _end_scopes(registry, threading.get_ident())
        else:
            await self.remove()
        await self.wait_closed()

    def scope(self) -> AsyncScopeBlock:
        """Open a fresh scope for a block: ``async with db.scope(): ...``.

        As :meth:`scoped.scoped_session.scope`, with the session's close
        awaited on the way out; ``async with`` only.
        """
        return AsyncScopeBlock(self._scoped_registry)


if TYPE_CHECKING:

    class AnyAsyncScopedSession(AnyProxies, async_scoped_session[_S]):
        """How type checkers see an ``async_scoped_session`` of a class other
        than an ``AsyncSession``: its members are ``Any`` (they are generated
        from that class at run time), the registry's own API stays typed."""

else:
    #: The type of ``async_scoped_session(Client)`` for type checkers, whose
    #: proxied members are ``Any``; at run time, ``async_scoped_session``.
    AnyAsyncScopedSession = async_scoped_session


class AsyncScopeBlock(ScopeBlock):
    """The context manager :meth:`async_scoped_session.scope` returns."""

    __slots__ = ()

    def __enter__(self) -> ScopeBlock:
        msg = (
            "use 'async with db.scope():' - leaving the scope awaits the "
            "session's close"
        )
        raise TypeError(msg)

    async def __aenter__(self) -> AsyncScopeBlock:
        ScopeBlock.__enter__(self)
        return self

    async def __aexit__(
        self, kind: object, exc: BaseException | None, tb: object
    ) -> None:
        registry, frame = self._registry, self._frame
        failure: BaseException | None = None
        # Only where leaving will succeed; otherwise __exit__ says why.
        if frame is not None and frame.slot == registry._slot():
            stack = registry._frame_stack(frame.slot, create=False)
            if stack and stack[-1] is frame:
                try:
                    await registry.aremove()
                except Exception as error:  # noqa: BLE001 - raised below unless exc
                    failure = error
        # Restores the scope; its own remove() finds nothing left to close.
        self.__exit__(kind, exc, tb)
        if failure is not None and exc is None:
            raise failure


# -- closes that nothing awaits ------------------------------------------------


class _CloseTask(asyncio.Task[None]):
    """Runs one close; a shutting-down loop's ``cancel()`` must not abandon it.

    :func:`asyncio.run` cancels every task left when the main coroutine
    returns, this one included; cancelled half-way, the close would leave its
    connection neither closed nor back in the pool.
    """

    def cancel(self, msg: Any | None = None) -> bool:
        return False


class _LoopCloser:
    """The closes running on one event loop, and its shutdown guard."""

    __slots__ = ("guard", "loop", "tasks", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.tasks: dict[asyncio.Task[None], Registry[Any]] = {}
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
        registry: Registry[Any],
        entry: Entry,
        awaitable: Awaitable[object],
        during: str,
    ) -> None:
        """Finish *awaitable*, the close of *entry*'s object, in a task."""
        task = _CloseTask(
            self._finish(registry, entry, awaitable, during),
            loop=self.loop,
            name=f"scoped: close session {entry.session_id}",
        )
        self.tasks[task] = registry
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)

    @staticmethod
    async def _finish(
        registry: Registry[Any],
        entry: Entry,
        awaitable: Awaitable[object],
        during: str,
    ) -> None:
        try:
            await awaitable
        except Exception as exc:  # noqa: BLE001 - logged as the registry does
            registry._close_failed(entry, exc, during=during)

    async def wait(self, registry: Registry[Any] | None = None) -> None:
        """Wait for the closes of *registry* (``None``: all) to finish."""
        while True:
            pending = [
                task
                for task, owner in self.tasks.items()
                if registry is None or owner is registry
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
            for scoped in list(_instances):
                registry = scoped._scoped_registry
                if isinstance(registry, ScopedRegistry):
                    _end_scopes(registry, self.thread_id)
            if not self.tasks:
                break
            await self.wait()
        if _closers.get(self.loop) is self:
            del _closers[self.loop]


async def _guard(closer: _LoopCloser) -> AsyncGenerator[None, None]:
    """Suspended until the loop's ``shutdown_asyncgens()``, then closes what is left.

    :func:`asyncio.run` (and ``asyncio.Runner``) call that after cancelling
    the remaining tasks and before closing the loop, which is the last
    moment a close can still be awaited.
    """
    try:
        yield
    finally:
        await closer.shutdown()


#: The closers of the loops that have closes to run.
_closers: dict[asyncio.AbstractEventLoop, _LoopCloser] = {}
#: Every async_scoped_session, for the shutdown guard.
_instances: weakref.WeakSet[async_scoped_session[Any]] = weakref.WeakSet()


def _closer(loop: asyncio.AbstractEventLoop) -> _LoopCloser:
    closer = _closers.get(loop)
    if closer is None:
        # Loops closed without a shutdown (run by hand): nothing can run on
        # them any more, and their suspended guards are dropped harmlessly.
        for closed in [other for other in _closers if other.is_closed()]:
            del _closers[closed]
        closer = _closers[loop] = _LoopCloser(loop)
    return closer


def _end_scopes(registry: ScopedRegistry[Any], thread_id: int | None) -> None:
    """End the scope of every session *registry* holds for *thread_id*."""
    with registry._lock:
        live = [
            (stored, entry)
            for stored, entry in registry._key_entries.items()
            if entry.thread_id == thread_id
        ]
    for stored, entry in live:
        registry._ended(stored, entry)


def close_soon(
    registry: Registry[Any],
    entry: Entry,
    awaitable: Awaitable[object],
    *,
    during: str,
) -> None:
    """Finish an async close started where nothing can await it.

    On the running loop when there is one (a task's done callback); else on
    the loop of the thread that created the session, if it still runs (a
    scope key collected elsewhere). Otherwise the close cannot happen: the
    failure is reported as a ``session.close_failed`` event.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        _closer(loop).start(registry, entry, awaitable, during)
        return
    for closer in list(_closers.values()):
        if closer.thread_id == entry.thread_id and closer.loop.is_running():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                closer.loop.call_soon_threadsafe(
                    closer.start, registry, entry, awaitable, during
                )
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
    registry._close_failed(entry, failure, during=during)
