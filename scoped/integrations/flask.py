"""Flask: sessions scoped to the application context, removed at its teardown.

::

    from scoped.integrations import flask as scoped_flask

    db_session = scoped_session(
        sessionmaker(bind=engine), scopefunc=scoped_flask.app_context
    )
    scoped_flask.init_app(app, db_session)

Like Flask-SQLAlchemy, each application context (one per request, CLI
command or ``with app.app_context()``) has its own session, removed when the
context ends: after every teardown function has run, even when one of them
raised (Flask up to 3.1 then skips the remaining teardown functions, which
would leave a session registered as one of them in a transaction). Flask's
own documented pattern, a thread-scoped ``scoped_session(sessionmaker(...))``
removed at the end of each context, is accepted as well. The context key is
the context object itself, held weakly: a context that is never popped has
its session closed when it is garbage collected, instead of lingering where
a later context allocated at the same address would find it.

Outside an application context the session is unreachable and using it
raises Flask's ``RuntimeError: Working outside of application context``. A
streamed body can use it only inside ``flask.stream_with_context``, which
pushes the context again while the body is sent; the session the body uses
is removed after its last chunk. (Since Flask 3.1 the context is also torn
down when the view returns, so the body gets a new session: pass it plain
values, not objects the view loaded.)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, Final

import flask
import flask.globals

from scoped.integrations import commit_or_rollback, require_scoped_session
from scoped.scopes import Scope

if TYPE_CHECKING:
    from scoped.session import scoped_session

__all__ = ["AppContextScope", "app_context", "init_app"]

#: Where the response status waits for the teardown, in ``flask.g``.
_STATUS: Final = "_scoped_response_status"
#: No exception was passed to the teardown: Flask reads ``sys.exc_info()``.
_UNSET: Final = object()


class AppContextScope(Scope):
    """The current Flask application context, weakly held.

    The registry keys sessions by the context object (by its ``id()``, while
    a weak reference watches it); when a context is collected with its
    session still registered, that session is closed and logged as
    ``session.scope_ended``.
    """

    kind: ClassVar[str] = "app_context"
    identity_keys: ClassVar[bool] = True

    def fast(self) -> Callable[[], Hashable]:
        # Flask keeps the current context in a ContextVar; reading it
        # directly skips the proxy. Outside a context it raises LookupError,
        # and the registry then calls this scope for Flask's own error.
        current = getattr(flask.globals, "_cv_app", None)
        getter = getattr(current, "get", None)
        return getter if callable(getter) else self

    def __call__(self) -> Hashable:
        return flask.globals.app_ctx._get_current_object()  # type: ignore[attr-defined,no-any-return]


#: Pass as ``scoped_session(..., scopefunc=app_context)`` for :func:`init_app`.
app_context: Final = AppContextScope()


def _per_context(db_session: scoped_session[Any]) -> bool:
    """Tell whether removing at each context's end gives contexts their own
    sessions: app-context scoped, or thread scoped as in Flask's own pattern."""
    registry = db_session.registry
    return (
        getattr(registry, "scopefunc", None) is app_context
        or registry.scope_kind == "thread"
    )


def init_app(
    app: flask.Flask,
    db_session: scoped_session[Any],
    *,
    commit_on_success: bool = False,
) -> None:
    """Remove *db_session*'s session when each application context of *app* ends.

    *db_session* is scoped with ``scopefunc=app_context``, or to the thread
    (no *scopefunc*), as in Flask's documented
    ``db_session = scoped_session(sessionmaker(...))``. The session is removed
    after every teardown function has run, also when one of them raised
    (which makes Flask skip the others). With *commit_on_success*, it is
    first committed when nothing raised and the response status (if the
    context served a request) is below 400, and rolled back otherwise. Call
    it for each app that uses *db_session*. With the thread scope, a context
    pushed inside another one ends by removing the session the outer one was
    using too (which then gets a new one), as in Flask's own pattern.
    """
    checked = require_scoped_session(db_session, "init_app()")
    if not _per_context(checked):
        msg = (
            "init_app() needs a scoped_session scoped to the application "
            "context, scoped_session(factory, "
            "scopefunc=scoped.integrations.flask.app_context), or to the "
            f"thread (no scopefunc); got one scoped to {checked.registry.scope_kind}"
        )
        raise ValueError(msg)
    registry = checked.registry

    if commit_on_success:

        @app.after_request
        def record_status(response: flask.Response) -> flask.Response:
            setattr(flask.g, _STATUS, response.status_code)
            return response

    def end(error: BaseException | None) -> None:
        try:
            if commit_on_success:
                status = flask.g.pop(_STATUS, None)
                ok = error is None and (status is None or status < 400)
                commit_or_rollback(registry, ok=ok)
        finally:
            checked.remove()

    # Not a teardown function: Flask stops calling those at the first that
    # raises, and runs them newest first, so one registered after this call
    # could skip ours. Wrapping the call that runs them all ends every
    # context, and lets all of them still use the session.
    run_teardowns = app.do_teardown_appcontext

    def do_teardown_appcontext(exc: object = _UNSET) -> None:
        error = sys.exc_info()[1] if exc is _UNSET else exc
        try:
            if exc is _UNSET:
                run_teardowns()
            else:
                run_teardowns(exc)  # type: ignore[arg-type]
        except BaseException as failure:
            # The teardown's own error matters more; the registry has logged
            # a failure to remove.
            with contextlib.suppress(Exception):
                end(failure)
            raise
        end(error if isinstance(error, BaseException) else None)

    vars(app)["do_teardown_appcontext"] = do_teardown_appcontext
