"""What :mod:`scoped` knows about SQLAlchemy, imported only when it is used.

SQLAlchemy is an optional extra: nothing here imports it unless a target
class already comes from it (so the user imported it) or no other target
can be inferred.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

from scoped.errors import AlreadyPresentError, ScopedWarning

if TYPE_CHECKING:
    from scoped.proxies import Member

__all__ = [
    "ASYNC_PROXY_REF",
    "EXCLUDED",
    "PROXY_REF",
    "already_present_error",
    "async_proxy_options",
    "compat_bases",
    "configure_warning",
    "default_target",
    "is_async_session_class",
    "is_session_class",
    "proxy_options",
    "session_spec",
    "target_ref",
]

#: Public ``Session`` names that are not API for a scoped proxy: the event
#: dispatcher (forwarding it would make the registry look like one session to
#: SQLAlchemy's event system) and an internal hook for sharding extensions.
#: Every other public member is forwarded, as the spec
#: (:mod:`scoped.proxies._session_spec`, measured by ``make proxies``) lists.
EXCLUDED = frozenset({"dispatch", "connection_callable"})

#: How the docstring note names the proxy class, as SQLAlchemy's own does.
PROXY_REF = "_orm.scoping.scoped_session"
#: The same for :class:`scoped.asyncio.async_scoped_session`.
ASYNC_PROXY_REF = "_asyncio.scoping.async_scoped_session"


def is_session_class(target: type) -> bool:
    """Tell whether *target* is ``sqlalchemy.orm.Session`` or a subclass."""
    module = sys.modules.get("sqlalchemy.orm.session")
    return module is not None and issubclass(target, module.Session)


def is_async_session_class(target: type) -> bool:
    """Tell whether *target* is SQLAlchemy's ``AsyncSession`` or a subclass."""
    module = sys.modules.get("sqlalchemy.ext.asyncio.session")
    return module is not None and issubclass(target, module.AsyncSession)


def target_ref(target: type) -> str:
    """The cross-reference SQLAlchemy's docs use for *target*."""
    from sqlalchemy.orm import Session

    if target is Session:
        return "_orm.Session"
    asyncio_session = sys.modules.get("sqlalchemy.ext.asyncio.session")
    if asyncio_session is not None and target is asyncio_session.AsyncSession:
        return "_asyncio.AsyncSession"
    return f"{target.__module__}.{target.__qualname__}"


def proxy_options(target: type) -> dict[str, Any] | None:
    """How proxies of a ``Session`` class match SQLAlchemy's ``scoped_session``.

    Keyword arguments for :func:`scoped.proxies.proxy_class`, or ``None``
    when *target* is not a ``Session`` class.
    """
    if not is_session_class(target):
        return None
    return {
        "extra_bases": compat_bases(),
        "exclude": EXCLUDED,
        "spec": session_spec(),
        "target_ref": target_ref(target),
        "proxy_ref": PROXY_REF,
    }


def session_spec() -> tuple[Member, ...]:
    """The ``Session`` members every proxy of a ``Session`` class has.

    The spec, not the installed SQLAlchemy, decides: a member the installed
    release lacks (``delete_all`` on 2.0) is there and raises
    :exc:`~scoped.UnavailableMemberError` naming the release it needs.
    """
    from scoped.proxies._session_spec import MEMBERS

    return MEMBERS


def async_proxy_options(target: type) -> dict[str, Any] | None:
    """:func:`proxy_options` for ``AsyncSession`` and ``async_scoped_session``."""
    if not is_async_session_class(target):
        return None
    from sqlalchemy.ext.asyncio import async_scoped_session

    return {
        "extra_bases": (async_scoped_session,),
        "exclude": EXCLUDED,
        "target_ref": target_ref(target),
        "proxy_ref": ASYNC_PROXY_REF,
    }


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
