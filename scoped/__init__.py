"""Scoped sessions that clean up after themselves.

``scoped_session(sessionmaker(bind=engine))`` gives every thread (or any scope
you define) its own session behind one global name, with generated proxy
methods that cost less per call than SQLAlchemy's own.
"""

from __future__ import annotations

from scoped._version import __version__
from scoped.errors import (
    AlreadyPresentError,
    ScopedError,
    ScopedWarning,
    UnavailableMemberError,
)
from scoped.registry import Registry, ScopedRegistry, ThreadLocalRegistry
from scoped.session import (
    AnyScopedSession,
    QueryProperty,
    ScopedSession,
    scoped_session,
)

__all__ = [
    "AlreadyPresentError",
    "AnyScopedSession",
    "QueryProperty",
    "Registry",
    "ScopedError",
    "ScopedRegistry",
    "ScopedSession",
    "ScopedWarning",
    "ThreadLocalRegistry",
    "UnavailableMemberError",
    "__version__",
    "scoped_session",
]
