"""Which logger a registry's events go to, and how cheaply it filters.

A library must not configure the application's logging. Events go to the
logger given to the registry, else to the one installed with
:func:`set_default_logger`, else to ``structlog.get_logger("scoped")`` when the
application configured structlog, else to the standard library logger
``"scoped"`` (which has a ``NullHandler``, so nothing is printed unless the
application asks for it).
"""

from __future__ import annotations

import functools
import logging
import operator
import weakref
from collections.abc import Callable, MutableMapping
from typing import Any, Final

import structlog

__all__ = ["LOGGER_NAME", "resolve", "set_default_logger"]

LOGGER_NAME: Final = "scoped"
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

# A logger installed with :func:`scoped.logging.to_json`, used by every
# registry that was not given its own.
default: list[Any] = [None]
#: Whoever resolved the default, told to resolve again when it changes.
resolvers: weakref.WeakSet[Any] = weakref.WeakSet()


def set_default_logger(logger: Any | None) -> None:
    """Route the events of registries without their own logger to *logger*."""
    default[0] = logger
    for resolver in list(resolvers):
        resolver.forget()


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


def resolve(logger: Any | None) -> tuple[Any, Callable[[int], bool]]:
    """The logger to use, and the cheapest way to ask it about a level."""
    if logger is None:
        logger = default[0]
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


def always(level: int) -> bool:
    """A level check that lets everything through."""
    return True


def never(level: int) -> bool:
    """A level check that lets nothing through."""
    return False


def _level_check(logger: Any) -> Callable[[int], bool]:
    """Ask *logger* whether a level is enabled, as cheaply as it allows.

    structlog's filtering loggers compare against a level fixed in their
    class, so for them the comparison is made here, without a method call.
    """
    check = getattr(logger, "is_enabled_for", None)
    if not callable(check):
        return always
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
