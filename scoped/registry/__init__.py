"""Storage keyed by scope: one object per thread, task or custom scope key.

The registry is the first pillar of :mod:`scoped`: it decides *which* object
belongs to the caller. :mod:`scoped.proxies` only reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from scoped.lifecycle import Events
from scoped.registry._base import MISSING, Registry
from scoped.registry._keyed import ScopedRegistry
from scoped.registry._threadlocal import ThreadLocalRegistry

__all__ = ["MISSING", "Registry", "ScopedRegistry", "ThreadLocalRegistry", "for_scope"]

_T = TypeVar("_T")


def for_scope(
    createfunc: Callable[[], _T],
    scopefunc: Callable[[], Any] | None,
    *,
    close: Callable[[_T], object] | None = None,
    events: Events | None = None,
) -> Registry[_T]:
    """Build the registry for *scopefunc*: per thread when it is ``None``."""
    if scopefunc is None:
        return ThreadLocalRegistry(createfunc, close=close, events=events)
    return ScopedRegistry(createfunc, scopefunc, close=close, events=events)
