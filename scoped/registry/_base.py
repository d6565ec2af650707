"""The registry contract shared by every kind of scope storage."""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable
from typing import Any, ClassVar, Final, Generic, TypeVar

__all__ = ["MISSING", "Registry"]

_T = TypeVar("_T")


class _Missing:
    """Sentinel for "no object in this scope"; distinct from a stored ``None``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def _detach_context(exc: BaseException, miss: BaseException | None) -> None:
    """Drop the fast path's lookup miss from *exc*'s implicit context chain.

    Generated proxies call the slow path from inside ``except KeyError`` (or
    ``AttributeError``); without this, a failing factory would be reported
    "during handling of KeyError: <scope key>", which is noise to the user.
    """
    if miss is None:
        return
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__context__ is miss:
            current.__context__ = miss.__context__
            return
        current = current.__context__


class Registry(abc.ABC, Generic[_T]):
    """Holds one object per scope and creates it on first use.

    Calling the registry returns the current scope's object, creating it with
    *createfunc* when the scope has none. ``has()``, ``set()`` and ``clear()``
    inspect and change the current scope only.

    Subclasses declare how generated proxies read the current object without
    a Python-level call: :attr:`lookup` is a source expression over the names
    ``storage`` and ``scopefunc`` (bound to :attr:`_storage` and
    :attr:`_scopefunc`), and :attr:`lookup_misses` the exceptions that mean
    "not created yet", after which proxies call :meth:`_create_current`.
    """

    lookup: ClassVar[str]
    lookup_misses: ClassVar[tuple[type[BaseException], ...]]

    createfunc: Callable[[], _T]
    _storage: Any
    _scopefunc: Callable[[], Any] | None = None

    def __init__(self, createfunc: Callable[[], _T]) -> None:
        if not callable(createfunc):
            msg = f"createfunc must be callable, got {createfunc!r}"
            raise TypeError(msg)
        self.createfunc = createfunc

    @abc.abstractmethod
    def __call__(self) -> _T:
        """Return the current scope's object, creating it on first use."""

    @abc.abstractmethod
    def has(self) -> bool:
        """Tell whether the current scope holds an object."""

    @abc.abstractmethod
    def set(self, obj: _T) -> None:
        """Store *obj* as the current scope's object, replacing any other."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget the current scope's object, if any; it is not closed."""

    @abc.abstractmethod
    def peek(self) -> _T | _Missing:
        """Return the current scope's object, or :data:`MISSING`; never create."""

    @abc.abstractmethod
    def _get_or_create(self, factory: Callable[[], _T] | None) -> _T:
        """Return the current object, creating it with *factory* when absent.

        With an explicit *factory*, an existing object is an error instead:
        subclasses raise :class:`LookupError` for the caller to translate.
        """

    def _create_current(self) -> _T:
        """Slow path of every lookup: create the current scope's object."""
        miss = sys.exc_info()[1]
        try:
            return self._get_or_create(None)
        except BaseException as exc:
            _detach_context(exc, miss)
            raise

    def create(self, factory: Callable[[], _T]) -> _T:
        """Create the current scope's object with *factory* and store it.

        Raises :class:`LookupError` if the scope already holds an object, so
        that explicit construction arguments are never silently ignored.
        """
        return self._get_or_create(factory)
