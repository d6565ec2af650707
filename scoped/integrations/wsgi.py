"""A WSGI middleware that gives each request its own scope and session.

::

    from scoped.integrations.wsgi import ScopedSessionMiddleware

    db_session = scoped_session(sessionmaker(bind=engine))
    app = ScopedSessionMiddleware(app, db_session)

Each request runs in a fresh scope (``db_session.scope()``), so it gets a new
session on first use even on a server thread that served other requests
before. The session is removed when the response is finished: when the
application raises, when the response iterable is exhausted, and when the
server closes it, which PEP 3333 servers do after the last chunk, on errors
and when the client disconnects mid-stream. A streamed body can therefore use
the session until its last chunk.

Servers call the iterable's ``close()`` in the thread that served the
request, which is where the scope must be left; a server that closed it
elsewhere would get a :class:`RuntimeError` saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import wrapt

from scoped.errors import require_callable
from scoped.integrations import RequestBlock, require_scoped_session

if TYPE_CHECKING:
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from scoped.session import scoped_session

    _ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

__all__ = ["ScopedSessionMiddleware"]


def _status_code(status: str) -> int | None:
    """The number of a WSGI status line such as ``"200 OK"``; ``None`` if
    garbled, which is no success."""
    try:
        return int(status[:3])
    except ValueError:
        return None


class ScopedSessionMiddleware:
    """Wrap a WSGI application so that each request has its own session.

    Args:
        app: The WSGI application.
        db_session: The :class:`~scoped.scoped_session` the application uses.
        commit_on_success: Commit the request's session when the response
            status is below 400 and nothing raised, roll it back otherwise.
            Off by default: the session is only closed, which discards
            whatever was not committed. The commit happens after the body
            was sent, so a failure to commit reaches the server's error log,
            not the client; commit in the view when the client must know.
    """

    __slots__ = ("app", "commit_on_success", "db_session")

    def __init__(
        self,
        app: WSGIApplication,
        db_session: scoped_session[Any],
        *,
        commit_on_success: bool = False,
    ) -> None:
        require_callable(app, "app")
        self.app = app
        self.db_session = require_scoped_session(db_session, "ScopedSessionMiddleware")
        self.commit_on_success = commit_on_success

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        request = RequestBlock(
            self.db_session, commit_on_success=self.commit_on_success
        ).open()
        if self.commit_on_success:
            # Only a commit needs the status: other requests skip the wrapper.
            start_response = _recording_status(start_response, request)
        try:
            result = self.app(environ, start_response)
        except BaseException as exc:
            request.end(exc)
            raise
        return _ScopedResponse(result, request)


def _recording_status(
    start_response: StartResponse, request: RequestBlock
) -> StartResponse:
    """Wrap *start_response* to note the status on *request*."""

    def start(
        status: str,
        headers: list[tuple[str, str]],
        exc_info: _ExcInfo | tuple[None, None, None] | None = None,
    ) -> Callable[[bytes], object]:
        request.status = _status_code(status)
        return start_response(status, headers, exc_info)

    return start


class _ScopedResponse(wrapt.ObjectProxy[Iterable[bytes]]):
    """The application's response iterable; finishing it ends the request.

    Everything else (``len()``, ``isinstance`` against the server's
    ``wsgi.file_wrapper``, a file wrapper's ``filelike``) reaches the wrapped
    iterable, so servers that send files natively still do.
    """

    def __init__(self, wrapped: Iterable[bytes], request: RequestBlock) -> None:
        super().__init__(wrapped)
        self._self_request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            # A plain loop, not ``yield from``: if the server abandons this
            # generator, closing it must not close the wrapped iterable a
            # second time from wherever the generator is collected.
            for chunk in self.__wrapped__:  # noqa: UP028
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._self_finish(exc)
            raise
        # Some callers never call close() after the last chunk (test code
        # joining the body, for one): exhaustion finishes the request too.
        self.close()

    def close(self) -> None:
        """Close the wrapped iterable, then end the request's scope."""
        self._self_finish(None)

    def _self_finish(self, error: BaseException | None) -> None:
        request = self._self_request
        if request.ended:
            return
        close = getattr(self.__wrapped__, "close", None)
        try:
            if close is not None:
                close()
        except BaseException as exc:
            request.end(exc)
            raise
        request.end(error)
