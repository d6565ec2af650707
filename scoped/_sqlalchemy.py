"""What :mod:`scoped` knows about SQLAlchemy, imported only when it is used.

SQLAlchemy is an optional extra: nothing here imports it unless a target
class already comes from it (so the user imported it) or no other target
can be inferred.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from scoped.errors import AlreadyPresentError, ScopedWarning

__all__ = [
    "EXCLUDED",
    "PROXY_REF",
    "already_present_error",
    "compat_bases",
    "configure_warning",
    "default_target",
    "is_session_class",
    "target_ref",
]

#: Public ``Session`` names that are not API for a scoped proxy: the event
#: dispatcher (forwarding it would make the registry look like one session to
#: SQLAlchemy's event system) and an internal hook for sharding extensions.
EXCLUDED = frozenset({"dispatch", "connection_callable"})

#: How the docstring note names the proxy class, as SQLAlchemy's own does.
PROXY_REF = "_orm.scoping.scoped_session"


def is_session_class(target: type) -> bool:
    """Tell whether *target* is ``sqlalchemy.orm.Session`` or a subclass."""
    module = sys.modules.get("sqlalchemy.orm.session")
    return module is not None and issubclass(target, module.Session)


def target_ref(target: type) -> str:
    """The cross-reference SQLAlchemy's docs use for *target*."""
    from sqlalchemy.orm import Session

    if target is Session:
        return "_orm.Session"
    return f"{target.__module__}.{target.__qualname__}"


def default_target() -> type | None:
    """``sqlalchemy.orm.Session`` if SQLAlchemy is installed, else ``None``."""
    try:
        from sqlalchemy.orm import Session
    except ImportError:
        return None
    return Session


def compat_bases() -> tuple[type, ...]:
    """Bases that make ``isinstance(x, sqlalchemy.orm.scoped_session)`` hold.

    SQLAlchemy's session events accept a scoped session as a listen target
    only through that check, so Flask-SQLAlchemy and zope.sqlalchemy need it.
    """
    from sqlalchemy.orm import scoped_session

    return (scoped_session,)


@functools.cache
def already_present_error() -> type[AlreadyPresentError]:
    """:class:`AlreadyPresentError` that SQLAlchemy's handlers also catch."""
    from sqlalchemy.exc import InvalidRequestError

    attrs: dict[str, Any] = {"__module__": "scoped.errors"}
    return type(
        "AlreadyPresentError", (AlreadyPresentError, InvalidRequestError), attrs
    )


@functools.cache
def configure_warning() -> type[ScopedWarning]:
    """:class:`ScopedWarning` that is also a ``sqlalchemy.exc.SAWarning``."""
    from sqlalchemy.exc import SAWarning

    attrs: dict[str, Any] = {"__module__": "scoped.errors"}
    return type("ScopedWarning", (ScopedWarning, SAWarning), attrs)
