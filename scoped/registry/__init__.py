"""Storage keyed by scope: one object per thread, task or custom scope key.

The registry is the first pillar of :mod:`scoped`: it decides *which* object
belongs to the caller. ``scoped.proxies`` only reads it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from scoped import scopes
from scoped.lifecycle import Events
from scoped.registry._base import MISSING, Registry
from scoped.registry._frames import Frame
from scoped.registry._keyed import ScopedRegistry
from scoped.registry._lookup import Lookup, LookupKind
from scoped.registry._threadlocal import ThreadLocalRegistry

__all__ = [
    "MISSING",
    "Frame",
    "Lookup",
    "LookupKind",
    "Registry",
    "ScopedRegistry",
    "ThreadLocalRegistry",
    "for_scope",
]

_T = TypeVar("_T")


def _known_scope(scopefunc: Callable[[], Any]) -> Callable[[], Any] | None:
    """Map well-known scope functions to scopes that clean up after themselves.

    ``threading.get_ident`` keys are reused by new threads (a new thread can
    receive a dead one's session) and ``asyncio.current_task`` keys keep
    every finished task alive until ``remove()``; their scopes do neither.
    """
    if scopefunc is threading.get_ident or scopefunc is scopes.thread:
        return None
    if scopefunc is asyncio.current_task:
        return scopes.task
    greenlet = sys.modules.get("greenlet")
    if greenlet is not None and scopefunc is getattr(greenlet, "getcurrent", None):
        return scopes.greenlet
    return scopefunc


def for_scope(
    createfunc: Callable[[], _T],
    scopefunc: Callable[[], Any] | None,
    *,
    close: Callable[[_T], object] | None = None,
    events: Events | None = None,
    leak_after: float | None = None,
    max_scopes: int | None = None,
) -> Registry[_T]:
    """Build the registry for *scopefunc*: per thread when it is ``None``."""
    if scopefunc is not None:
        scopefunc = _known_scope(scopefunc)
    options: dict[str, Any] = {
        "close": close,
        "events": events,
        "leak_after": leak_after,
        "max_scopes": max_scopes,
    }
    if scopefunc is None:
        return ThreadLocalRegistry(createfunc, **options)
    return ScopedRegistry(createfunc, scopefunc, **options)
