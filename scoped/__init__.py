"""Scoped sessions that clean up after themselves.

``scoped_session(sessionmaker(bind=engine))`` gives every thread (or any scope
you define) its own session behind one global name, with generated proxy
methods that cost less per call than SQLAlchemy's own.

The public modules are this one, :mod:`scoped.registry`, :mod:`scoped.scopes`,
:mod:`scoped.asyncio`, the modules of ``scoped.integrations``,
:mod:`scoped.events`, ``scoped.logging`` and ``scoped.report``;
``scoped.proxies`` and ``scoped.lifecycle`` are internal.
"""

from __future__ import annotations

from scoped._version import __version__
from scoped.errors import (
    AlreadyPresentError,
    ScopedError,
    ScopedWarning,
    UnavailableMemberError,
)
from scoped.proxies import SPEEDUPS
from scoped.registry import Registry, ScopedRegistry, ThreadLocalRegistry
from scoped.session import (
    AnyScopedSession,
    QueryProperty,
    ScopeBlock,
    ScopedSession,
    scoped_session,
)

__all__ = [
    "SPEEDUPS",
    "AlreadyPresentError",
    "AnyScopedSession",
    "QueryProperty",
    "Registry",
    "ScopeBlock",
    "ScopedError",
    "ScopedRegistry",
    "ScopedSession",
    "ScopedWarning",
    "ThreadLocalRegistry",
    "UnavailableMemberError",
    "__version__",
    "scoped_session",
]
