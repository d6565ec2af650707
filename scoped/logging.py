"""Send scoped's lifecycle events somewhere readable, in one line.

:func:`to_json` is for applications and scripts that want the events as JSON
lines (the input of ``python -m scoped report``) without configuring
structlog themselves. It affects scoped's own events only.
"""

from __future__ import annotations

import atexit
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog

from scoped.lifecycle import set_default_logger

__all__ = ["to_json"]


def to_json(target: str | Path | TextIO = "-", *, level: int | str = "debug") -> Any:
    """Write scoped's lifecycle events as JSON lines to *target*.

    *target* is a path (appended to), ``"-"`` for standard error, or an open
    text stream. Registries without a ``logger=`` of their own use it from
    now on, even if they already logged elsewhere. Returns the logger.

    Example::

        import scoped.logging
        scoped.logging.to_json("events.jsonl")
    """
    if isinstance(target, (str, Path)) and str(target) == "-":
        stream: TextIO = sys.stderr
    elif isinstance(target, (str, Path)):
        stream = Path(target).open("a", encoding="utf-8")  # noqa: SIM115 - lives until exit
        atexit.register(stream.close)
    else:
        stream = target
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if not isinstance(number, int):
            msg = f"unknown log level {level!r}; use debug, info, warning or error"
            raise ValueError(msg)
        level = number
    logger = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_name="scoped",
    )
    set_default_logger(logger)
    return logger
