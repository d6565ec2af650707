"""Transaction events of one SQLAlchemy session, from listeners on it alone."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scoped.events import SESSION_BEGIN, SESSION_COMMIT, SESSION_ROLLBACK, Event
from scoped.lifecycle._entry import Entry

if TYPE_CHECKING:
    from scoped.lifecycle._emit import Events

__all__ = ["transaction_hooks"]

#: SQLAlchemy's session events, and the lifecycle events they are reported as.
_HOOKS: tuple[tuple[str, Event], ...] = (
    ("after_begin", SESSION_BEGIN),
    ("after_commit", SESSION_COMMIT),
    ("after_rollback", SESSION_ROLLBACK),
)


def _listener(events: Events, entry: Entry, event: Event) -> Callable[..., None]:
    def listener(*_: Any) -> None:
        events.emit(event.level, event, entry)

    return listener


def transaction_hooks(events: Events, entry: Entry) -> list[Callable[[], None]]:
    """Listen for transactions on *entry*'s session, if it is a SQLAlchemy one.

    Returns the functions that remove the listeners again. SQLAlchemy is
    looked up, never imported: without it loaded, no session can be one.
    """
    module = sys.modules.get("sqlalchemy.orm.session")
    if module is None:
        return []
    # An AsyncSession runs its transactions on a plain Session it wraps.
    target = getattr(entry.obj, "sync_session", entry.obj)
    if not isinstance(target, module.Session):
        return []
    from sqlalchemy import event as sa_event

    removers: list[Callable[[], None]] = []
    for hook, event in _HOOKS:
        listener = _listener(events, entry, event)
        sa_event.listen(target, hook, listener)
        removers.append(functools.partial(sa_event.remove, target, hook, listener))
    return removers
