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
    "original_async_scoped_session",
    "original_scoped_session",
    "proxy_options",
    "remember_original",
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
    return {
        "extra_bases": (original_async_scoped_session(),),
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
    return (original_scoped_session(),)


#: SQLAlchemy's own classes, once found: the public names may be rebound to
#: ours (:mod:`scoped.sqlalchemy`) and must not be read for them again.
_originals: dict[str, type] = {}


def _original(defined_in: str, name: str, *places: tuple[str, str]) -> type:
    """SQLAlchemy's class *name* defined in module *defined_in*, even if rebound.

    The public names may stand for our class instead (rebound before or after
    :mod:`scoped` was imported), so the class is recognised by where it was
    defined, looked for in every (module, attribute) SQLAlchemy binds it to.
    """
    key = f"{defined_in}.{name}"
    found = _originals.get(key)
    if found is not None:
        return found
    import importlib

    for module_name, attr in ((defined_in, name), *places):
        candidate = vars(importlib.import_module(module_name)).get(attr)
        if (
            isinstance(candidate, type)
            and candidate.__module__ == defined_in
            and candidate.__qualname__ == name
        ):
            _originals[key] = candidate
            return candidate
    msg = (
        f"cannot find SQLAlchemy's own {key}: every name it is bound to names "
        "another class; rebind the names with scoped.sqlalchemy.install(), "
        "which keeps the original"
    )
    raise RuntimeError(msg)


def remember_original(cls: type) -> None:
    """Record *cls* as SQLAlchemy's own class before its names are rebound."""
    _originals[f"{cls.__module__}.{cls.__qualname__}"] = cls


def original_scoped_session() -> type:
    """``sqlalchemy.orm.scoping.scoped_session`` as SQLAlchemy defines it."""
    return _original(
        "sqlalchemy.orm.scoping",
        "scoped_session",
        ("sqlalchemy.orm.scoping", "ScopedSession"),
        # Imported by SQLAlchemy's session events, which must keep it.
        ("sqlalchemy.orm.events", "scoped_session"),
    )


def original_async_scoped_session() -> type:
    """``sqlalchemy.ext.asyncio.scoping.async_scoped_session``, SQLAlchemy's."""
    return _original("sqlalchemy.ext.asyncio.scoping", "async_scoped_session")


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
