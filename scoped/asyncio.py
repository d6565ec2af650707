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

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from scoped import scopes
from scoped.registry import Registry, ScopedRegistry, _loops
from scoped.session import ScopeBlock, scoped_session

__all__ = [
    "AnyAsyncScopedSession",
    "AsyncScopeBlock",
    "async_scoped_session",
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
        if isinstance(registry, ScopedRegistry):
            # Loop shutdown closes what this proxy's scopes still hold.
            _loops.watch(registry)

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
        await _loops.wait_closed(self._scoped_registry.closer)

    async def remove_all(self) -> None:
        """Close and discard the session of every scope of this thread's loop.

        For shutdown: a session that a running task still uses is closed
        under it. Sessions of other threads (other loops) are left alone.
        """
        registry = self._scoped_registry
        if isinstance(registry, ScopedRegistry):
            registry.end_scopes(threading.current_thread())
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
        frame = self._frame
        if frame is None:
            msg = "this scope block was not opened"
            raise RuntimeError(msg)
        try:
            await self._registry.apop(frame)
        except Exception:
            if exc is None:
                raise
            # The block's own exception matters more than a failure to close
            # its session, which the registry has already logged.
        self._frame = None
