"""Sending one registry's lifecycle events, guarded by a cheap level check."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from scoped.events import Event
from scoped.lifecycle._entry import Entry
from scoped.lifecycle._instrument import attach as _attach
from scoped.lifecycle._instrument import detach as _detach
from scoped.lifecycle._logger import never, resolve, resolvers

__all__ = ["Events"]


def _task_name() -> str | None:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return task.get_name() if task is not None else None


class Events:
    """Emits the lifecycle events of one registry.

    Events are named by a definition from :mod:`scoped.events` or by its
    name; either way the log line's ``event`` is the name.

    Args:
        registry: The registry's name, carried by every event.
        scope_kind: ``thread``, ``task``, ``greenlet``, ``context`` or
            ``custom``; a registry given these events sets it to its own.
        logger: A structlog (or structlog-wrapped) logger to use instead of
            the default resolution.
        enabled: ``False`` turns every event off.
    """

    __slots__ = (
        "__weakref__",
        "_logger",
        "_resolved",
        "enabled",
        "registry",
        "scope_kind",
        "wants",
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
        #: ``wants(level)`` tells whether an event at *level* would be
        #: emitted. It runs on every creation, also when nothing is logged,
        #: so it is the logger's own level check, stored here: no frame of
        #: ours around it. The first call resolves the logger and puts it
        #: in place.
        self.wants: Callable[[int], bool] = self._resolve_wants if enabled else never

    def _resolve(self) -> Any:
        resolved, check = resolve(self._logger)
        self._resolved = resolved
        self.wants = check
        if self._logger is None:
            resolvers.add(self)
        return resolved

    def _resolve_wants(self, level: int) -> bool:
        self._resolve()
        return self.wants(level)

    def forget(self) -> None:
        """Resolve the logger again at next use (the default changed)."""
        if self.enabled:
            self._resolved = None
            self.wants = self._resolve_wants

    def logger(self) -> Any:
        """The resolved logger (resolved once, at first use)."""
        resolved = self._resolved
        return self._resolve() if resolved is None else resolved

    def emit(
        self,
        level: int,
        event: Event | str,
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

    def ended(
        self,
        level: int,
        event: Event | str,
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

    def _send(
        self,
        level: int,
        event: Event | str,
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
        method(event.name if isinstance(event, Event) else event, **record)

    # -- per-session instrumentation ------------------------------------

    def attach(self, entry: Entry) -> None:
        """Report ``close()``/``reset()`` calls and transactions of *entry*.

        Only done when debug events are wanted, so a filtered logger costs
        nothing per session. :meth:`detach` undoes it when the session leaves
        its registry: nothing accumulates on the session class or factory.
        """
        _attach(self, entry)

    @staticmethod
    def detach(entry: Entry) -> None:
        """Remove what :meth:`attach` added to *entry*'s session."""
        _detach(entry)
