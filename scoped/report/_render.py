"""The report's output formats, each a renderer of a whole report.

A renderer is any callable from a :class:`~scoped.report._model.Report` to
text. It reads the summary (``report.data``), and the parsed log
(``report.log``) when it shows more than the summary holds, as a timeline of
every session would; it never parses. A new format is a module with one such
function and a line in :data:`RENDERERS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Protocol

from scoped.report._json import render as _render_json
from scoped.report._model import Report
from scoped.report._text import render as _render_text

__all__ = ["RENDERERS", "Renderer", "render"]


class Renderer(Protocol):
    """Turns a whole report into the text of one output format."""

    def __call__(self, report: Report, /) -> str: ...


#: The output formats by name.
RENDERERS: Final[Mapping[str, Renderer]] = MappingProxyType(
    {"text": _render_text, "json": _render_json}
)


def render(report: Report, name: str = "text") -> str:
    """Render *report* in the format called *name*, one of :data:`RENDERERS`."""
    try:
        renderer = RENDERERS[name]
    except KeyError:
        known = ", ".join(RENDERERS)
        msg = f"no report format is called {name!r}; known: {known}"
        raise ValueError(msg) from None
    return renderer(report)
