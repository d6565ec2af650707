"""Every lifecycle event ``scoped`` emits, defined once.

Each :class:`Event` names one event as it appears in logs (its ``event``
field), the level it is logged at, the fields it carries beyond the common
ones, and when it happens. Registries emit these definitions, ``python -m
scoped report`` reads logs by them, and the documentation's table of events is
generated from them, so the three cannot drift apart. Each event is a
constant named after it: ``session.created`` is ``SESSION_CREATED``.

Applications may use them to pick events out of their own logs or captured
test output::

    from scoped import events

    removed = [e for e in logs if e["event"] == events.SESSION_REMOVED.name]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "COMMON_FIELDS",
    "EVENTS",
    "REGISTRY_CONFIGURED",
    "REGISTRY_FORKED",
    "SESSION_BEGIN",
    "SESSION_CLOSED",
    "SESSION_CLOSE_FAILED",
    "SESSION_COMMIT",
    "SESSION_CREATED",
    "SESSION_FIELDS",
    "SESSION_LEAK_SUSPECTED",
    "SESSION_REMOVED",
    "SESSION_RESET",
    "SESSION_ROLLBACK",
    "SESSION_SCOPE_ENDED",
    "Event",
    "Field",
    "by_name",
]


@dataclass(frozen=True)
class Field:
    """One field of an event: its key in the log line and what it holds.

    ``doc`` is reStructuredText; it may be empty when the name says it all.
    """

    name: str
    doc: str = ""


@dataclass(frozen=True)
class Event:
    """One lifecycle event.

    Attributes:
        name: The ``event`` field of its log lines, ``<subject>.<what>``.
        level: The :mod:`logging` level it is emitted at.
        doc: When it is emitted (reStructuredText).
        fields: What it carries besides :data:`COMMON_FIELDS` (and
            :data:`SESSION_FIELDS`, when *about_session*).
        about_session: Whether it concerns one session, and so carries
            :data:`SESSION_FIELDS`.
        ends_session: Whether it ends the session's life in its registry (a
            close alone does not: a closed session can be used again).
    """

    name: str
    level: int
    doc: str
    fields: tuple[Field, ...] = ()
    about_session: bool = True
    ends_session: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def field_names(self) -> frozenset[str]:
        """Every field this event's log lines may carry, the common ones too."""
        common = COMMON_FIELDS + (SESSION_FIELDS if self.about_session else ())
        return frozenset(f.name for f in (*common, *self.fields))


#: Fields of every event. ``task`` appears only inside an asyncio task.
COMMON_FIELDS: Final = (
    Field("registry", "The registry's name (``name=``)."),
    Field(
        "scope_kind", "``thread``, ``task``, ``greenlet``, ``context`` or ``custom``."
    ),
    Field(
        "thread",
        "The name of the thread the event happened in; for "
        "``session.scope_ended``, a ``session.close_failed`` during a scope's end "
        "and an age leak warning, of the thread that created the session, "
        "wherever the event was noticed.",
    ),
    Field("thread_id", "That thread's ident."),
    Field("task", "The asyncio task's name, only inside a task."),
    Field("timestamp", "ISO 8601 in UTC, with microseconds."),
)

#: Fields of every event about one session.
SESSION_FIELDS: Final = (
    Field(
        "session_id",
        "Short and unique within the process (``<pid>-<counter>``, hexadecimal), "
        "to join the lines about one session.",
    ),
    Field(
        "scope",
        "The scope key: the thread's name for thread scopes, otherwise a repr of "
        "the key bounded to about 60 characters (strings as they are).",
    ),
)

_AGE = Field("age_ms", "the session's age")

SESSION_CREATED: Final = Event(
    "session.created",
    logging.DEBUG,
    "A scope's session is created: on first use, by ``db(**kw)``, or stored "
    "with ``registry.set()``.",
    (Field("session_class", "the session's class name"),),
)
SESSION_CLOSED: Final = Event(
    "session.closed",
    logging.DEBUG,
    "The session's ``close()`` is called (through the proxy or on the session) "
    "while it is in its registry.",
    (_AGE,),
)
SESSION_RESET: Final = Event(
    "session.reset",
    logging.DEBUG,
    "Likewise for ``reset()``.",
    (_AGE,),
)
SESSION_REMOVED: Final = Event(
    "session.removed",
    logging.DEBUG,
    "``remove()`` closed and discarded it (also ``registry.clear()``, or "
    "``registry.set()`` replacing it). The close is part of the removal and is "
    "not reported on its own.",
    (_AGE,),
    ends_session=True,
)
SESSION_SCOPE_ENDED: Final = Event(
    "session.scope_ended",
    logging.DEBUG,
    "Its scope ended without ``remove()`` (the thread exited, the task "
    "finished, ...) and the registry closed it.",
    (_AGE,),
    ends_session=True,
)
SESSION_LEAK_SUSPECTED: Final = Event(
    "session.leak_suspected",
    logging.WARNING,
    'Once per session older than ``leak_after`` seconds (``reason="age"``), '
    "or each time the number of scopes holding a session rises above "
    '``max_scopes`` (``reason="max_scopes"``, about the newest session). '
    "Nothing is closed.",
    (
        Field("reason", '``"age"`` or ``"max_scopes"``'),
        Field("age_ms", 'with ``reason="age"``'),
        Field("leak_after", 'with ``reason="age"``'),
        Field("live", 'with ``reason="max_scopes"``: the sessions held'),
        Field("max_scopes", 'with ``reason="max_scopes"``'),
    ),
)
SESSION_CLOSE_FAILED: Final = Event(
    "session.close_failed",
    logging.ERROR,
    "Closing it during a removal or a scope's end raised. The session is "
    "discarded all the same; ``remove()`` then re-raises.",
    (
        _AGE,
        Field("during", "``remove`` or ``scope_end``"),
        Field("exception", '``"Type: message"``'),
    ),
)
SESSION_BEGIN: Final = Event(
    "session.begin",
    logging.DEBUG,
    "SQLAlchemy sessions only: a transaction of this session began. The "
    "listeners are on the session itself and are removed with it; nothing "
    "accumulates on the ``sessionmaker``.",
)
SESSION_COMMIT: Final = Event(
    "session.commit",
    logging.DEBUG,
    "SQLAlchemy sessions only: a transaction of this session committed.",
)
SESSION_ROLLBACK: Final = Event(
    "session.rollback",
    logging.DEBUG,
    "SQLAlchemy sessions only: a transaction of this session rolled back.",
)
REGISTRY_CONFIGURED: Final = Event(
    "registry.configured",
    logging.DEBUG,
    "``configure(**kwargs)`` changed the session factory.",
    (
        Field(
            "options",
            "each keyword with its value rendered, database URLs with the "
            "password masked",
        ),
    ),
    about_session=False,
)
REGISTRY_FORKED: Final = Event(
    "registry.forked",
    logging.DEBUG,
    "In a child process after ``os.fork()``: the registry starts empty.",
    (Field("dropped", "how many of the parent's sessions were set aside"),),
    about_session=False,
)

#: Every event, in the order reports list them (those about one session first).
EVENTS: Final = (
    SESSION_CREATED,
    SESSION_CLOSED,
    SESSION_RESET,
    SESSION_REMOVED,
    SESSION_SCOPE_ENDED,
    SESSION_LEAK_SUSPECTED,
    SESSION_CLOSE_FAILED,
    SESSION_BEGIN,
    SESSION_COMMIT,
    SESSION_ROLLBACK,
    REGISTRY_CONFIGURED,
    REGISTRY_FORKED,
)

_BY_NAME: Final[Mapping[str, Event]] = MappingProxyType({e.name: e for e in EVENTS})


def by_name(name: str) -> Event:
    """The event called *name*; a :class:`KeyError` names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        msg = f"no lifecycle event is called {name!r}; known: {known}"
        raise KeyError(msg) from None
