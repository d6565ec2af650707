"""Lifecycle events of a registry's sessions, sent through structlog (internal).

A library must not configure the application's logging. Events go to the
logger given to the registry, else to ``structlog.get_logger("scoped")``
when the application configured structlog, else to the standard library
logger ``"scoped"`` (which has a ``NullHandler``, so nothing is printed
unless the application asks for it). The logger is resolved once, at the
first event, and every event is guarded by a level check so that filtered
events cost next to nothing. The events themselves are defined in
:mod:`scoped.events`.
"""

from __future__ import annotations

from scoped.lifecycle._emit import Events
from scoped.lifecycle._entry import Entry
from scoped.lifecycle._logger import LOGGER_NAME, set_default_logger
from scoped.lifecycle._values import bounded_repr, mask_url

__all__ = [
    "LOGGER_NAME",
    "Entry",
    "Events",
    "bounded_repr",
    "mask_url",
    "set_default_logger",
]
