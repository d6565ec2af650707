"""Ready scopes to pass as ``scoped_session(..., scopefunc=...)``.

Each scope finds the current scope's key and, unlike a plain scope function,
tells the registry when that scope ends, so its session is closed instead of
being kept until someone calls ``remove()``:

* :data:`thread`: the current thread (the default); the session is closed
  when the thread exits.
* :data:`task`: the current :class:`asyncio.Task`; closed when the task
  finishes, fails or is cancelled.
* :data:`greenlet`: the current greenlet (needs the ``greenlet`` package);
  closed when the greenlet finishes or is collected.
* :data:`context`: the current :mod:`contextvars` context; closed when the
  context is gone (its thread exited, its task finished).

They are plain callables too, so SQLAlchemy's own ``scoped_session`` accepts
them (without the cleanup).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import sys
import threading
import weakref
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
    #: Exceptions besides :class:`LookupError` that :meth:`fast` raises
    #: where :meth:`__call__` would explain the problem.
    fast_misses: ClassVar[tuple[type[BaseException], ...]] = ()

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

    def watch(self, key: Any, ended: Callable[[], None]) -> Any:
        """Arrange for *ended* to run when the scope *key* ends, if known.

        Returns what :meth:`unwatch` needs to cancel that, or ``None``.
        """
        return None

    def unwatch(self, key: Any, handle: Any) -> None:
        """Cancel a :meth:`watch` of *key* that returned *handle*."""

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
    # asyncio.current_task() outside a running loop.
    fast_misses: ClassVar[tuple[type[BaseException], ...]] = (RuntimeError,)

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
        current = asyncio.current_task
        if inspect.isbuiltin(current):
            # C (3.12+): outside a loop its RuntimeError is raised in the
            # proxy's own frame, which proxies recognise as a miss.
            return current
        return _current_task_or_none

    def watch(self, key: Any, ended: Callable[[], None]) -> Any:
        def done(_: Any) -> None:
            ended()

        key.add_done_callback(done)
        return done

    def unwatch(self, key: Any, handle: Any) -> None:
        key.remove_done_callback(handle)

    def describe(self, key: Any) -> str:
        return str(key.get_name())


# Where asyncio.Task records each loop's running task (used before 3.12 only;
# an empty stand-in keeps the scope correct, if slower, should it be gone).
_current_tasks: dict[Any, asyncio.Task[Any]] = vars(asyncio.tasks).get(
    "_current_tasks", {}
)


def _current_task_or_none() -> asyncio.Task[Any] | None:
    """``asyncio.current_task()``, but ``None`` outside a running task.

    The pure-Python ``current_task`` (before 3.12) would raise from its own
    frame, which proxies cannot tell from an error of the session's. It also
    costs about 250 ns, mostly ``get_running_loop()``'s ``getpid()`` system
    call; this finds the running loop through the thread's async generator
    hooks instead, which ``run_forever()`` points at that loop's own methods
    while it runs (and restores when it stops), in about 110 ns. Any other
    hooks end in ``None`` here, and the registry then asks the scope itself.
    """
    hook: Any = sys.get_asyncgen_hooks()[0]
    try:
        return _current_tasks[hook.__self__]
    except (AttributeError, KeyError):
        return None


class GreenletScope(Scope):
    """The current greenlet; its end is noticed when it finishes or is collected.

    Greenlets have no completion callback, so in each thread that holds a
    greenlet-scoped session a greenlet trace function (chained to any that
    was already set) watches for the final switch out of a finished greenlet.
    """

    kind: ClassVar[str] = "greenlet"
    identity_keys: ClassVar[bool] = True

    def fast(self) -> Callable[[], Hashable]:
        return _greenlet_module().getcurrent  # type: ignore[no-any-return]

    def __call__(self) -> Hashable:
        return self.fast()()

    def watch(self, key: Any, ended: Callable[[], None]) -> Any:
        watched = _greenlet_watch.watched
        if watched is None:
            watched = _install_greenlet_tracer()
        watched.setdefault(key, []).append(ended)
        return ended

    def unwatch(self, key: Any, handle: Any) -> None:
        watched = _greenlet_watch.watched
        if watched is None:
            return
        callbacks = watched.get(key)
        if callbacks is not None and handle in callbacks:
            callbacks.remove(handle)
            if not callbacks:
                del watched[key]


@functools.cache
def _greenlet_module() -> Any:
    # Cached: the scope's __call__ runs on every registry operation.
    try:
        return importlib.import_module("greenlet")
    except ImportError:
        msg = "the greenlet scope needs the greenlet package installed"
        raise RuntimeError(msg) from None


class _GreenletWatch(threading.local):
    # Greenlets of this thread whose end someone waits for; weakly keyed so
    # a greenlet collected before it ever finished leaves nothing behind.
    watched: weakref.WeakKeyDictionary[Any, list[Callable[[], None]]] | None = None


_greenlet_watch = _GreenletWatch()


def _install_greenlet_tracer() -> weakref.WeakKeyDictionary[Any, Any]:
    """Start watching this thread's greenlet switches for finished greenlets."""
    module = _greenlet_module()
    watched: weakref.WeakKeyDictionary[Any, list[Callable[[], None]]] = (
        weakref.WeakKeyDictionary()
    )
    previous = module.gettrace()

    def tracer(event: str, args: Any) -> None:
        # Runs on every switch in this thread: check the cheap thing first.
        if watched and event in ("switch", "throw") and args[0].dead:
            for ended in watched.pop(args[0], ()):
                ended()
        if previous is not None:
            previous(event, args)

    module.settrace(tracer)
    _greenlet_watch.watched = watched
    return watched


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


#: One session per thread (the default scope), closed when the thread exits.
thread: Final = ThreadScope()
#: One session per :class:`asyncio.Task`, closed when the task ends.
task: Final = TaskScope()
#: One session per greenlet, closed when it finishes or is collected.
greenlet: Final = GreenletScope()
#: One session per :mod:`contextvars` context, closed when the context is gone.
context: Final = ContextScope()
