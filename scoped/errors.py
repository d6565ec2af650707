"""Exceptions and warnings raised by :mod:`scoped`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyPresentError",
    "ScopedError",
    "ScopedWarning",
    "UnavailableMemberError",
    "require_callable",
]


def describe(value: object) -> str:
    """Render a bad argument for an error message: its repr and its type."""
    return f"{value!r} (a {type(value).__name__})"


def require_callable(value: Any, what: str) -> None:
    """Raise a :class:`TypeError` naming *what* unless *value* is callable."""
    if not callable(value):
        msg = f"{what} must be callable, got {describe(value)}"
        raise TypeError(msg)


class ScopedError(Exception):
    """Base class of every error :mod:`scoped` raises itself."""


class AlreadyPresentError(ScopedError, LookupError):
    """The current scope already holds an object, so it cannot be created anew.

    Raised when construction arguments are given (``db_session(bind=...)``)
    after the scope's session exists. When the sessions are SQLAlchemy's, the
    error raised also derives from :class:`sqlalchemy.exc.InvalidRequestError`.
    """


class UnavailableMemberError(ScopedError, AttributeError):
    """A forwarded member that the installed release of the target's library
    lacks, such as ``delete_all()`` with SQLAlchemy 2.0.

    The proxy class has every member its spec lists, each documented with
    the releases that have it; using one the installed release lacks raises
    this error, naming the release it needs. Being an :exc:`AttributeError`,
    it keeps ``hasattr(db_session, "delete_all")`` as true as it is for the
    session itself.
    """


class ScopedWarning(UserWarning):
    """Base class of every warning :mod:`scoped` emits."""
