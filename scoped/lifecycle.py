"""Lifecycle events of a registry's sessions, sent through structlog.

A library must not configure the application's logging. Events go to the
logger given to the registry, else to ``structlog.get_logger("scoped")``
when the application configured structlog, else to the standard library
logger ``"scoped"`` (which has a ``NullHandler``, so nothing is printed
unless the application asks for it). The logger is resolved once, at the
first event, and every event is guarded by a level check so that filtered
events cost next to nothing.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import operator
import os
import reprlib
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from typing import Any, Final

import structlog
import wrapt

__all__ = ["LOGGER_NAME", "Entry", "Events", "bounded_repr", "mask_url"]

LOGGER_NAME: Final = "scoped"
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_ids = itertools.count(1)
_monotonic = time.monotonic
_current_thread = threading.current_thread
# The process id, read once (it is a system call) and again after a fork.
_process = [os.getpid()]


def _forked() -> None:
    _process[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)

# A logger installed with :func:`scoped.logging.to_json`, used by every
# registry that was not given its own; the generation lets registries that
# already resolved a logger notice a later installation.
_default: list[Any] = [None, 0]


def set_default_logger(logger: Any | None) -> None:
    """Route the events of registries without their own logger to *logger*."""
    _default[0] = logger
    _default[1] += 1


def bounded_repr(obj: object) -> str:
    """A repr short enough for a log line, whatever *obj* is."""
    try:
        return _repr.repr(obj)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break logging
        return f"<{type(obj).__name__} repr failed: {type(exc).__name__}>"


def mask_url(url: object) -> str:
    """Render a database URL with its password hidden."""
    render = getattr(url, "render_as_string", None)
    if callable(render):
        return str(render(hide_password=True))
    return bounded_repr(url)


def _task_name() -> str | None:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return task.get_name() if task is not None else None


class Entry:
    """What a registry knows about one live session.

    ``session_id`` is short and unique within the process, so that log lines
    about one session can be joined; ``created`` is monotonic, for ages.
    Creation is on every new scope's path, so everything that is only needed
    for logs and introspection is derived on demand.
    """

    __slots__ = (
        "_number",
        "_pid",
        "_thread",
        "attached",
        "created",
        "logged",
        "obj",
        "scope",
        "slot",
        "warned",
        "watcher",
    )

    def __init__(
        self, obj: object, scope: object, thread: threading.Thread | None = None
    ) -> None:
        self.obj = obj
        # The raw key is kept only when it is a plain value; object keys are
        # rendered by the registry so that the entry never keeps them alive.
        self.scope = scope
        self._number = next(_ids)
        self._pid = _process[0]
        self.created = _monotonic()
        self._thread = _current_thread() if thread is None else thread
        self.attached: tuple[list[str], list[Callable[[], None]]] | None = None
        #: Whether the session's creation was logged; its routine events
        #: (close, removal, scope end) follow that decision.
        self.logged = False
        #: Where the registry keeps the object (registry-specific).
        self.slot: Any = None
        #: Whether a leak warning was already emitted for this session.
        self.warned = False
        #: Whatever notices the end of the scope, kept alive with the entry.
        self.watcher: object = None

    @property
    def session_id(self) -> str:
        """The session's id, ``<pid>-<number>`` in hex; unique in the process."""
        return f"{self._pid:x}-{self._number:x}"

    @property
    def thread(self) -> str:
        """The name of the thread that created the session."""
        return self._thread.name

    @property
    def thread_id(self) -> int | None:
        """The ident of the thread that created the session."""
        return self._thread.ident

    @property
    def scope_repr(self) -> str:
        """The scope key as it appears in logs and introspection.

        ``None`` stands for the creating thread (the thread scope).
        """
        scope = self.scope
        if scope is None:
            return self.thread
        return scope if isinstance(scope, str) else bounded_repr(scope)

    @property
    def age(self) -> float:
        """Seconds since the session was created."""
        return time.monotonic() - self.created

    def describe(self) -> dict[str, Any]:
        """A plain mapping for introspection endpoints."""
        return {
            "session_id": self.session_id,
            "scope": self.scope_repr,
            "session": self.obj,
            "thread": self.thread,
            "thread_id": self.thread_id,
            "age": self.age,
        }


# Attributes every logging.LogRecord has; ``extra`` may not overwrite them.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _rename_record_fields(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Prefix fields such as ``thread`` that the stdlib reserves on records."""
    for key in _RECORD_FIELDS.intersection(event_dict):
        if key != "event":
            event_dict[f"scoped_{key}"] = event_dict.pop(key)
    return event_dict


def _resolve(logger: Any | None) -> tuple[Any, Callable[[int], bool]]:
    """The logger to use, and the cheapest way to ask it about a level."""
    if logger is None:
        logger = _default[0]
    if logger is not None:
        bind = getattr(logger, "bind", None)
        resolved = bind() if callable(bind) else logger
        return resolved, _level_check(resolved)
    if structlog.is_configured():
        resolved = structlog.get_logger(LOGGER_NAME).bind()
        return resolved, _level_check(resolved)
    stdlib = logging.getLogger(LOGGER_NAME)
    resolved = structlog.wrap_logger(
        stdlib,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[
            structlog.stdlib.filter_by_level,
            _rename_record_fields,
            structlog.stdlib.render_to_log_kwargs,
        ],
    ).bind()
    # The wrapper would only forward to it; the level can change at any time.
    return resolved, stdlib.isEnabledFor


def _always(level: int) -> bool:
    return True


def _level_check(logger: Any) -> Callable[[int], bool]:
    """Ask *logger* whether a level is enabled, as cheaply as it allows.

    structlog's filtering loggers compare against a level fixed in their
    class, so for them the comparison is made here, without a method call.
    """
    check = getattr(logger, "is_enabled_for", None)
    if not callable(check):
        return _always
    effective = getattr(logger, "get_effective_level", None)
    if callable(effective):
        try:
            floor = effective()
            fixed = type(logger) is structlog.make_filtering_bound_logger(floor)
        except Exception:  # noqa: BLE001 - then it is not one of structlog's
            fixed = False
        if fixed:
            return functools.partial(operator.le, floor)
    return check  # type: ignore[no-any-return]


class Events:
    """Emits the lifecycle events of one registry.

    Args:
        registry: The registry's name, carried by every event.
        scope_kind: ``thread``, ``task``, ``greenlet``, ``context`` or
            ``custom``; a registry given these events sets it to its own.
        logger: A structlog (or structlog-wrapped) logger to use instead of
            the default resolution.
        enabled: ``False`` turns every event off.
    """

    __slots__ = (
        "_check",
        "_generation",
        "_logger",
        "_resolved",
        "enabled",
        "registry",
        "scope_kind",
    )

    def __init__(
        self,
        registry: str,
        scope_kind: str = "custom",
        logger: Any | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        self.registry = registry
        self.scope_kind = scope_kind
        self.enabled = enabled
        self._logger = logger
        self._resolved: Any | None = None
        self._check: Callable[[int], bool] = _always
        # Below any generation of _default, so that the first use resolves.
        self._generation = -1

    def _refresh(self) -> None:
        self._resolved, self._check = _resolve(self._logger)
        self._generation = _default[1]

    def logger(self) -> Any:
        """The resolved logger (resolved once, at first use)."""
        if self._generation != _default[1]:
            self._refresh()
        return self._resolved

    def wants(self, level: int) -> bool:
        """Tell whether an event at *level* would be emitted.

        This runs on every creation and removal, also when nothing is
        logged, so it stays a few attribute loads and one cheap call.
        """
        if not self.enabled:
            return False
        if self._generation != _default[1]:
            self._refresh()
        # structlog's is_enabled_for returns a bool already: no bool() call.
        return self._check(level)

    def emit(
        self,
        level: int,
        event: str,
        entry: Entry | None = None,
        *,
        in_scope: bool = False,
        **fields: Any,
    ) -> None:
        """Send *event* with the common fields, if *level* is enabled.

        With *in_scope*, the thread named is the entry's own: the event is
        about a scope that ended, reported from wherever that was noticed
        (asking a dying thread for ``threading.current_thread()`` would
        register a dummy thread object that is never released).
        """
        if self.wants(level):
            self._send(level, event, entry, fields, in_scope=in_scope)

    def _send(
        self,
        level: int,
        event: str,
        entry: Entry | None,
        fields: dict[str, Any],
        *,
        in_scope: bool,
    ) -> None:
        if in_scope and entry is not None:
            thread, thread_id = entry.thread, entry.thread_id
        else:
            current = threading.current_thread()
            thread, thread_id = current.name, current.ident
        record: dict[str, Any] = {
            "registry": self.registry,
            "scope_kind": self.scope_kind,
            "thread": thread,
            "thread_id": thread_id,
            "timestamp": datetime.now(timezone.utc).isoformat(),
        }
        task = _task_name()
        if task is not None:
            record["task"] = task
        if entry is not None:
            record["session_id"] = entry.session_id
            record["scope"] = entry.scope_repr
        record.update(fields)
        method = getattr(self._resolved, logging.getLevelName(level).lower())
        method(event, **record)

    def ended(
        self,
        level: int,
        event: str,
        entry: Entry,
        *,
        in_scope: bool = False,
        **fields: Any,
    ) -> None:
        """Emit an event about a session's end, with its age."""
        if self.wants(level):
            age_ms = round(entry.age * 1000.0, 3)
            self._send(
                level, event, entry, {"age_ms": age_ms, **fields}, in_scope=in_scope
            )

    # -- per-session instrumentation ------------------------------------

    def attach(self, entry: Entry) -> None:
        """Report ``close()``/``reset()`` calls and transactions of *entry*.

        Only done when debug events are wanted, so a filtered logger costs
        nothing per session. :meth:`detach` undoes it when the session leaves
        its registry: nothing accumulates on the session class or factory.
        """
        obj = entry.obj
        attached: list[str] = []
        for name, event in (("close", "session.closed"), ("reset", "session.reset")):
            method = getattr(obj, name, None)
            if not callable(method):
                continue
            try:
                setattr(
                    obj, name, wrapt.FunctionWrapper(method, self._ended(entry, event))
                )
            except (AttributeError, TypeError):
                continue  # __slots__ or a read-only attribute: not instrumented
            attached.append(name)
        entry.attached = (attached, _transaction_hooks(self, entry))

    def _ended(self, entry: Entry, event: str) -> Callable[..., Any]:
        def report(
            wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any
        ) -> Any:
            result = wrapped(*args, **kwargs)
            if inspect.isawaitable(result):
                # An async close()/reset(): report it once it has finished.
                return self._ended_after(result, entry, event)
            self.ended(logging.DEBUG, event, entry)
            return result

        return report

    async def _ended_after(
        self, awaitable: Awaitable[Any], entry: Entry, event: str
    ) -> Any:
        result = await awaitable
        self.ended(logging.DEBUG, event, entry)
        return result

    @staticmethod
    def detach(entry: Entry) -> None:
        """Remove what :meth:`attach` added to *entry*'s session."""
        attached = entry.attached
        if attached is None:
            return
        entry.attached = None
        names, hooks = attached
        for name in names:
            vars(entry.obj).pop(name, None)
        for remove in hooks:
            remove()


def _transaction_listener(
    events: Events, entry: Entry, name: str
) -> Callable[..., None]:
    def listener(*_: Any) -> None:
        events.emit(logging.DEBUG, name, entry)

    return listener


def _transaction_hooks(events: Events, entry: Entry) -> list[Callable[[], None]]:
    """Listen for SQLAlchemy transactions on this one session, if it is one."""
    module = sys.modules.get("sqlalchemy.orm.session")
    if module is None:
        return []
    # An AsyncSession runs its transactions on a plain Session it wraps.
    target = getattr(entry.obj, "sync_session", entry.obj)
    if not isinstance(target, module.Session):
        return []
    from sqlalchemy import event

    removers: list[Callable[[], None]] = []
    for hook, name in (
        ("after_begin", "session.begin"),
        ("after_commit", "session.commit"),
        ("after_rollback", "session.rollback"),
    ):
        listener = _transaction_listener(events, entry, name)
        event.listen(target, hook, listener)
        removers.append(functools.partial(event.remove, target, hook, listener))
    return removers
