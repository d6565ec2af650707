"""An ASGI middleware and a FastAPI dependency: one scope and session per request.

::

    from scoped import scopes
    from scoped.integrations.asgi import ScopedSessionMiddleware

    db_session = scoped_session(sessionmaker(bind=engine), scopefunc=scopes.context)
    app.add_middleware(ScopedSessionMiddleware, db_session=db_session)  # Starlette
    # or: app = ScopedSessionMiddleware(app, db_session)

The middleware opens a fresh scope around the whole application call of an
HTTP request (a websocket: its whole connection) and removes the session when
that call returns. Starlette sends a streamed body and then runs the
response's background tasks inside that call, so both still see the request's
session, and it is removed after them, also when the client disconnects
mid-stream or the application raises. Lifespan events pass through.

FastAPI's ``Depends`` style::

    from scoped.integrations.asgi import scoped_dependency

    SessionDep = Annotated[Session, Depends(scoped_dependency(db_session))]

    @app.post("/users")
    def create_user(session: SessionDep) -> ...: ...

The dependency yields the session of a fresh scope and removes it when
FastAPI closes the dependency, after the response and its background tasks.
Use the middleware or the dependency, not both (each would open its own scope).

Which scope: ``scopefunc=scoped.scopes.context``. Starlette and FastAPI run
sync endpoints, sync dependencies and sync streaming iterators in worker
threads that receive a *copy* of the request's context, so the context scope
hands them the request's session. Other scopes go wrong:

* the default thread scope is refused: an ASGI server runs every request on
  the event loop's thread, so concurrent requests would share one slot;
* ``scopes.task`` works while everything is ``async def``, but a sync
  endpoint fails on its first query with ``RuntimeError: the task scope needs
  a running asyncio task``.

With the context scope, tasks that a request starts (``asyncio.gather``,
``create_task``) copy its context as well and so share its session, which
must not be used concurrently: give such tasks their own
``db_session.scope()``.

Both accept a :class:`scoped.asyncio.async_scoped_session` too, whose
commit and close they await. Its default task scope gives every task its
own ``AsyncSession``: a body that Starlette streams from a task of its own
(as it does under uvicorn) gets a session of its own, closed when the
stream ends.

A synchronous session is closed on the event loop's thread when the request
ends: with a connection still checked out, that is one ROLLBACK round trip
to the database, as in a FastAPI ``yield`` dependency that closes its
session in ``async def``.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from scoped.errors import require_callable
from scoped.integrations import RequestBlock, require_scoped_session
from scoped.session import scoped_session

__all__ = ["ScopedSessionMiddleware", "scoped_dependency"]

_S = TypeVar("_S")

# ASGI calls its connection dict the "scope"; here a scope is a session's.
Connection = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Connection, Receive, Send], Awaitable[None]]

#: Scope kinds that an event loop shares between all of its requests.
_SHARED_BY_REQUESTS = frozenset({"thread", "greenlet"})


def _require_request_scope(db_session: object, what: str) -> scoped_session[Any]:
    """Refuse a scoped_session whose scope cannot tell concurrent requests apart."""
    checked = require_scoped_session(db_session, what, allow_async=True)
    kind = checked.registry.scope_kind
    if kind in _SHARED_BY_REQUESTS:
        msg = (
            f"{what} cannot use a scoped_session scoped to the {kind}: an ASGI "
            f"server runs all requests in one {kind}, so they would share one "
            "session; create it with scoped_session(..., "
            "scopefunc=scoped.scopes.context)"
        )
        raise ValueError(msg)
    return checked


class ScopedSessionMiddleware:
    """Wrap an ASGI application so that each request has its own session.

    Args:
        app: The ASGI application.
        db_session: The :class:`~scoped.scoped_session` the application uses,
            scoped with ``scopefunc=scoped.scopes.context``.
        commit_on_success: Commit the request's session when the response
            status is below 400 and nothing raised (for a websocket: when
            nothing raised), roll it back otherwise. Off by default: the
            session is only closed, which discards whatever was not
            committed. The commit happens after the response was sent, so a
            failure to commit reaches the server's error log, not the client.
    """

    __slots__ = ("app", "commit_on_success", "db_session")

    def __init__(
        self,
        app: ASGIApp,
        db_session: scoped_session[Any],
        *,
        commit_on_success: bool = False,
    ) -> None:
        require_callable(app, "app")
        self.app = app
        self.db_session = _require_request_scope(db_session, "ScopedSessionMiddleware")
        self.commit_on_success = commit_on_success

    async def __call__(
        self, connection: Connection, receive: Receive, send: Send
    ) -> None:
        kind = connection["type"]
        if kind not in {"http", "websocket"}:
            await self.app(connection, receive, send)
            return
        commit = self.commit_on_success
        request = RequestBlock(self.db_session, commit_on_success=commit)
        send_and_watch: Send = send
        if kind == "websocket":
            # A websocket has no status; it succeeded unless something raised.
            request.status = 0
        elif commit:
            # Only a commit needs the status: other requests skip the wrapper.

            async def send_and_watch(message: Message) -> None:
                if message["type"] == "http.response.start":
                    request.status = message["status"]
                await send(message)

        async with request:
            await self.app(connection, receive, send_and_watch)


_dependencies: weakref.WeakKeyDictionary[
    scoped_session[Any], dict[bool, Callable[[], AsyncIterator[Any]]]
] = weakref.WeakKeyDictionary()


def scoped_dependency(
    db_session: scoped_session[_S], *, commit_on_success: bool = False
) -> Callable[[], AsyncIterator[_S]]:
    """A FastAPI dependency yielding the session of a fresh per-request scope.

    ``Depends(scoped_dependency(db_session))`` gives the endpoint (and any
    other dependency asking for it) the request's session; FastAPI closes the
    dependency after the response and its background tasks, which removes
    the session. The same *db_session* always gets the same dependency
    function, so FastAPI resolves it once per request.

    With *commit_on_success*, the session is committed when the request
    raised nothing and rolled back otherwise (a dependency does not see the
    response status).
    """
    checked = _require_request_scope(db_session, "scoped_dependency()")
    made = _dependencies.setdefault(checked, {})
    dependency = made.get(commit_on_success)
    if dependency is None:
        dependency = made[commit_on_success] = _make_dependency(
            checked, commit_on_success
        )
    return dependency


def _make_dependency(
    db_session: scoped_session[_S], commit_on_success: bool
) -> Callable[[], AsyncIterator[_S]]:
    # Weakly: the cache holds this function strongly, and a strong reference
    # to its key would keep both alive for good.
    db_session_ref = weakref.ref(db_session)

    async def scoped_session_dependency() -> AsyncIterator[_S]:
        db = db_session_ref()
        if db is None:
            msg = "the scoped_session of this dependency no longer exists"
            raise RuntimeError(msg)
        async with RequestBlock(db, commit_on_success=commit_on_success) as request:
            # A dependency sees exceptions, not statuses: no exception is success.
            request.status = 0
            yield db()

    return scoped_session_dependency
