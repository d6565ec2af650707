"""Reporting what happens to one session while it is in its registry.

Its ``close()`` and ``reset()`` are wrapped on the instance, and SQLAlchemy
sessions get transaction listeners; :func:`detach` removes both, so nothing
accumulates on the session class or its factory.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import wrapt

from scoped.events import SESSION_CLOSED, SESSION_RESET, Event
from scoped.lifecycle._entry import Entry
from scoped.lifecycle._sqlalchemy_hooks import transaction_hooks

if TYPE_CHECKING:
    from scoped.lifecycle._emit import Events

__all__ = ["attach", "detach"]

#: The methods reported when called, and their events.
_REPORTED: tuple[tuple[str, Event], ...] = (
    ("close", SESSION_CLOSED),
    ("reset", SESSION_RESET),
)


def attach(events: Events, entry: Entry) -> None:
    """Report *entry*'s ``close()``/``reset()`` calls and transactions."""
    obj = entry.obj
    attached: list[str] = []
    for name, event in _REPORTED:
        method = getattr(obj, name, None)
        if not callable(method):
            continue
        try:
            setattr(
                obj, name, wrapt.FunctionWrapper(method, _ended(events, entry, event))
            )
        except (AttributeError, TypeError):
            continue  # __slots__ or a read-only attribute: not instrumented
        attached.append(name)
    entry.attached = (attached, transaction_hooks(events, entry))


def detach(entry: Entry) -> None:
    """Remove what :func:`attach` added to *entry*'s session."""
    attached = entry.attached
    if attached is None:
        return
    entry.attached = None
    names, hooks = attached
    for name in names:
        vars(entry.obj).pop(name, None)
    for remove in hooks:
        remove()


def _ended(events: Events, entry: Entry, event: Event) -> Callable[..., Any]:
    def report(
        wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any
    ) -> Any:
        result = wrapped(*args, **kwargs)
        if inspect.isawaitable(result):
            # An async close()/reset(): report it once it has finished.
            return _ended_after(events, result, entry, event)
        events.ended(event.level, event, entry)
        return result

    return report


async def _ended_after(
    events: Events, awaitable: Awaitable[Any], entry: Entry, event: Event
) -> Any:
    result = await awaitable
    events.ended(event.level, event, entry)
    return result
