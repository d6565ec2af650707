"""Ready scopes to pass as ``scoped_session(..., scopefunc=...)``.

Each scope finds the current scope's key and, unlike a plain scope function,
tells the registry when that scope ends, so its session is closed instead of
being kept until someone calls ``remove()``:

* :data:`thread`: the current thread (the default); the session is closed
  when the thread exits.
* :data:`task`: the current :class:`asyncio.Task`; closed when the task
  finishes, fails or is cancelled.
* :data:`greenlet`: the current greenlet (needs the ``greenlet`` package);
  closed when the greenlet is collected.
* :data:`context`: the current :mod:`contextvars` context; closed when the
  context is gone (its thread exited, its task finished).

They are plain callables too, so SQLAlchemy's own ``scoped_session`` accepts
them (without the cleanup).
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import threading
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, Final

from scoped.errors import require_callable
from scoped.lifecycle import bounded_repr

__all__ = [
    "ContextScope",
    "GreenletScope",
    "ObjectScope",
    "Scope",
    "TaskScope",
    "ThreadScope",
    "context",
    "greenlet",
    "objects",
    "task",
    "thread",
]


class Scope:
    """A kind of scope: how to find the current one and notice its end.

    Subclasses implement :meth:`__call__`. By default the end of a scope is
    noticed when its key object is garbage collected; :meth:`watch` can
    report it sooner, in which case :attr:`strong_keys` lets the registry
    hold the key strongly (a faster lookup than a weak key).
    """

    #: How lifecycle events and introspection name the scope.
    kind: ClassVar[str] = "custom"
    #: True when :meth:`watch` reliably reports every scope's end.
    strong_keys: ClassVar[bool] = False
    #: True when keys are objects compared by identity that can be weakly
    #: referenced: they are stored by ``id()`` and their session is closed
    #: when they are collected.
    identity_keys: ClassVar[bool] = False

    def fast(self) -> Callable[[], Hashable]:
        """A cheaper equivalent of the scope for the proxies' hot path.

        It may raise :class:`LookupError` or return a key with no session
        where :meth:`__call__` would explain the problem: the registry then
        calls the scope itself.
        """
        return self

    def __call__(self) -> Hashable:
        """Return the current scope's key."""
        raise NotImplementedError

    def watch(self, key: Any, ended: Callable[[], None]) -> None:
        """Arrange for *ended* to run when the scope *key* ends, if known."""

    def describe(self, key: Any) -> str:
        """Name the scope *key* in logs and introspection."""
        return bounded_repr(key)

    def open(self) -> Any:
        """Make a fresh scope current, if this kind can; return how to undo it.

        ``db_session.scope()`` uses it to give a block its own key (the
        context scope does); scopes that cannot return ``None`` and the
        registry sets the current scope's session aside instead.
        """
        return None

    def close(self, opened: Any) -> None:
        """Undo what :meth:`open` returned."""

    def __repr__(self) -> str:
        return f"<scoped.scopes.{self.kind}>"


class ThreadScope(Scope):
    """The current thread. ``scoped_session`` stores it in a thread-local."""

    kind: ClassVar[str] = "thread"

    def __call__(self) -> Hashable:
        return threading.current_thread()


class TaskScope(Scope):
    """The current asyncio task; its end is reported by a done callback."""

    kind: ClassVar[str] = "task"
    strong_keys: ClassVar[bool] = True

    def __call__(self) -> Hashable:
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        if current is None:
            msg = (
                "the task scope needs a running asyncio task; use it from "
                "coroutines, or open a scope explicitly with db_session.scope()"
            )
            raise RuntimeError(msg)
        return current

    def fast(self) -> Callable[[], Hashable]:
        return asyncio.current_task

    def watch(self, key: Any, ended: Callable[[], None]) -> None:
        key.add_done_callback(lambda _: ended())

    def describe(self, key: Any) -> str:
        return str(key.get_name())


class GreenletScope(Scope):
    """The current greenlet; its end is noticed when it is collected."""

    kind: ClassVar[str] = "greenlet"
    identity_keys: ClassVar[bool] = True

    def fast(self) -> Callable[[], Hashable]:
        try:
            module = importlib.import_module("greenlet")
        except ImportError:
            msg = "the greenlet scope needs the greenlet package installed"
            raise RuntimeError(msg) from None
        return module.getcurrent  # type: ignore[no-any-return]

    def __call__(self) -> Hashable:
        return self.fast()()


class _ContextToken:
    """Identifies one context; dies with the last context that holds it."""

    __slots__ = ("__weakref__",)


_context_token: Final[contextvars.ContextVar[_ContextToken]] = contextvars.ContextVar(
    "scoped.context_scope"
)


class ContextScope(Scope):
    """The current :mod:`contextvars` context.

    A context gets its token on first use; copies of it (the tasks it
    starts, ``copy_context().run``) share that token and so the session,
    as ``contextvars`` values are shared.
    """

    kind: ClassVar[str] = "context"
    identity_keys: ClassVar[bool] = True

    def fast(self) -> Callable[[], Hashable]:
        return _context_token.get

    def __call__(self) -> Hashable:
        try:
            return _context_token.get()
        except LookupError:
            token = _ContextToken()
            _context_token.set(token)
            return token

    def open(self) -> Any:
        return _context_token.set(_ContextToken())

    def close(self, opened: Any) -> None:
        _context_token.reset(opened)


class ObjectScope(Scope):
    """A custom scope function whose keys are objects compared by identity.

    Wrap a function returning the current request, app context or job object
    in it (``scopefunc=scopes.objects(get_request)``): lookups become as cheap
    as for plain keys, and a session is closed when its object is collected.
    """

    kind: ClassVar[str] = "custom"
    identity_keys: ClassVar[bool] = True

    def __init__(self, func: Callable[[], Any]) -> None:
        require_callable(func, "func")
        self._func = func

    def fast(self) -> Callable[[], Hashable]:
        return self._func

    def __call__(self) -> Hashable:
        return self._func()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"scoped.scopes.objects({self._func!r})"


def objects(func: Callable[[], Any]) -> ObjectScope:
    """Scope by the objects *func* returns; see :class:`ObjectScope`."""
    return ObjectScope(func)


thread: Final = ThreadScope()
task: Final = TaskScope()
greenlet: Final = GreenletScope()
context: Final = ContextScope()
