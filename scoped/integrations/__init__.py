"""Request teardown for web frameworks: one scope, and one session, per request.

* :mod:`scoped.integrations.wsgi`: ``ScopedSessionMiddleware(app, db_session)``
  for any WSGI application.
* :mod:`scoped.integrations.asgi`: ``ScopedSessionMiddleware(app, db_session)``
  for Starlette, FastAPI and any ASGI application, and
  ``scoped_dependency(db_session)`` for FastAPI's ``Depends``.
* :mod:`scoped.integrations.flask`: ``init_app(app, db_session)``, sessions
  scoped to Flask's application context.

Each removes the request's session when the response is finished, streamed
bodies and background work included, and can commit on success
(``commit_on_success=True``; off by default, when the session is only closed,
which rolls back whatever was not committed).
"""

from __future__ import annotations

import inspect
from typing import Any

from scoped.errors import describe
from scoped.registry import MISSING, Registry
from scoped.session import ScopeBlock, scoped_session

__all__ = ["RequestBlock", "commit_or_rollback", "require_scoped_session"]


def require_scoped_session(
    db_session: object, what: str, *, allow_async: bool = False
) -> scoped_session[Any]:
    """Return *db_session* if *what* can use it, else raise a clear error.

    It must be a :class:`scoped.scoped_session`; an
    :class:`~scoped.asyncio.async_scoped_session`, whose close must be
    awaited, only where *allow_async*.
    """
    if not isinstance(db_session, scoped_session):
        msg = (
            f"{what} needs a scoped.scoped_session, got {describe(db_session)}"
            "; SQLAlchemy's own scoped_session cannot open a scope per request"
        )
        raise TypeError(msg)
    if not allow_async:
        from scoped.asyncio import async_scoped_session

        if isinstance(db_session, async_scoped_session):
            msg = (
                f"{what} closes sessions without awaiting, so it cannot use an "
                "async_scoped_session; use scoped.integrations.asgi"
            )
            raise TypeError(msg)
    return db_session


def commit_or_rollback(registry: Registry[Any], *, ok: bool) -> Any:
    """Commit the current scope's session if *ok*, else roll it back.

    A scope that never used its session has nothing to end, and none is
    created for it. Returns what the session's method returned: an
    awaitable for an ``AsyncSession``.
    """
    session = registry.peek()
    if session is MISSING:
        return None
    return session.commit() if ok else session.rollback()


def _exc_info(
    error: BaseException | None,
) -> tuple[type[BaseException] | None, BaseException | None, Any]:
    if error is None:
        return None, None, None
    return type(error), error, error.__traceback__


class RequestBlock:
    """One request's ``scope()`` block: opened once, then ended exactly once.

    Ending it commits or rolls back when *commit_on_success* asks for that,
    then leaves the scope, which removes the request's session. It must end
    in the thread (or task) that opened it. :meth:`open` and :meth:`end`
    serve synchronous servers; :meth:`aopen` and :meth:`aend` asynchronous
    ones, and also await an async session's commit and close.
    """

    __slots__ = ("_block", "_commit", "_registry", "ended", "status")

    def __init__(
        self, db_session: scoped_session[Any], *, commit_on_success: bool
    ) -> None:
        self._registry = db_session.registry
        self._commit = commit_on_success
        #: The response status, once the application chose one.
        self.status: int | None = None
        self.ended = False
        self._block: ScopeBlock = db_session.scope()

    def open(self) -> RequestBlock:
        """Enter the scope."""
        self._block.__enter__()
        return self

    async def aopen(self) -> RequestBlock:
        """Enter the scope, in a coroutine."""
        await self._block.__aenter__()
        return self

    async def __aenter__(self) -> RequestBlock:
        return await self.aopen()

    async def __aexit__(
        self, kind: object, exc: BaseException | None, tb: object
    ) -> None:
        await self.aend(exc)

    def _settle(self, error: BaseException | None) -> Any:
        if not self._commit:
            return None
        status = self.status
        ok = error is None and status is not None and status < 400
        return commit_or_rollback(self._registry, ok=ok)

    def end(self, error: BaseException | None = None) -> None:
        """Leave the scope; *error* is what made the request fail, if anything.

        The request succeeded when nothing failed and its status is below
        400. A failure to commit is raised after the session was removed.
        """
        if self.ended:
            return
        self.ended = True
        try:
            self._settle(error)
        except BaseException as exc:
            self._block.__exit__(*_exc_info(exc))
            raise
        self._block.__exit__(*_exc_info(error))

    async def aend(self, error: BaseException | None = None) -> None:
        """:meth:`end`, in a coroutine: an async session's work is awaited."""
        if self.ended:
            return
        self.ended = True
        try:
            settled = self._settle(error)
            if inspect.isawaitable(settled):
                await settled
        except BaseException as exc:
            await self._block.__aexit__(*_exc_info(exc))
            raise
        await self._block.__aexit__(*_exc_info(error))
