"""The ``scoped-events`` directive: the documentation's view of scoped.events.

``.. scoped-events:: common``, ``session`` or ``table`` renders the common
fields, the per-session fields or the table of events from their definitions,
so that the documentation cannot drift from what is emitted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.application import Sphinx

from scoped import events

#: What each argument of the directive renders.
KINDS = ("common", "session", "table")


def _fields(fields: Iterable[events.Field]) -> list[str]:
    lines: list[str] = []
    for field in fields:
        lines += [f"``{field.name}``", f"    {field.doc}"]
    return lines


def _further(event: events.Event) -> str:
    parts = [
        f"``{field.name}`` ({field.doc})" if field.doc else f"``{field.name}``"
        for field in event.fields
    ]
    if not event.about_session:
        parts.append("no session fields")
    return "; ".join(parts)


def _table() -> list[str]:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 24 10 36 30",
        "",
        "   * - Event",
        "     - Level",
        "     - When",
        "     - Further fields",
    ]
    for event in events.EVENTS:
        lines += [
            f"   * - ``{event.name}``",
            f"     - {logging.getLevelName(event.level)}",
            f"     - {event.doc}",
            f"     - {_further(event)}",
        ]
    return lines


def render(kind: str) -> list[str]:
    """The reStructuredText lines that ``.. scoped-events:: <kind>`` stands for."""
    if kind == "common":
        return _fields(events.COMMON_FIELDS)
    if kind == "session":
        return _fields(events.SESSION_FIELDS)
    if kind == "table":
        return _table()
    msg = f"scoped-events takes one of {', '.join(KINDS)}, not {kind!r}"
    raise ValueError(msg)


class ScopedEvents(Directive):
    """Insert the rendering of one part of :mod:`scoped.events`."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        try:
            lines = render(self.arguments[0])
        except ValueError as exc:
            raise self.error(str(exc)) from None
        container = nodes.container()
        source = f"<scoped.events {self.arguments[0]}>"
        self.state.nested_parse(
            StringList(lines, source=source), self.content_offset, container
        )
        return list(container.children)


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("scoped-events", ScopedEvents)
    return {"parallel_read_safe": True}
