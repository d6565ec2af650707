"""Exceptions and warnings raised by :mod:`scoped`."""

from __future__ import annotations

__all__ = ["AlreadyPresentError", "ScopedError", "ScopedWarning"]


class ScopedError(Exception):
    """Base class of every error :mod:`scoped` raises itself."""


class AlreadyPresentError(ScopedError, LookupError):
    """The current scope already holds an object, so it cannot be created anew.

    Raised when construction arguments are given (``db_session(bind=...)``)
    after the scope's session exists. When the sessions are SQLAlchemy's, the
    error raised also derives from :class:`sqlalchemy.exc.InvalidRequestError`.
    """


class ScopedWarning(UserWarning):
    """Base class of every warning :mod:`scoped` emits."""
