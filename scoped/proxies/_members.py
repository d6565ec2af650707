"""Which members of a target class get a forwarding proxy, and of what kind."""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Kind", "Member", "discover"]

# Dunders that SQLAlchemy's scoped_session forwards. Others (``__len__``,
# ``__bool__``, ``__enter__``) would change how the registry object itself
# behaves in ``if db_session:`` or ``with`` statements, so they stay out.
FORWARDED_DUNDERS = frozenset({"__contains__", "__iter__"})


class Kind(enum.Enum):
    """How a member is forwarded."""

    METHOD = "method"
    CLASSMETHOD = "classmethod"
    STATICMETHOD = "staticmethod"
    ATTRIBUTE = "attribute"


@dataclass(frozen=True)
class Member:
    """One forwarded member of a target class.

    *function* is the underlying function for callables (``None`` for
    attributes); *writable* says whether an attribute proxy gets a setter.
    """

    name: str
    kind: Kind
    function: Callable[..., Any] | None = None
    doc: str | None = None
    writable: bool = False

    @property
    def is_coroutine(self) -> bool:
        """Tell whether the target is an ``async def`` function."""
        return self.function is not None and inspect.iscoroutinefunction(self.function)


def _is_public(name: str) -> bool:
    return not name.startswith("_") or name in FORWARDED_DUNDERS


def _annotations(target: type) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for klass in reversed(target.__mro__):
        names.update(inspect.get_annotations(klass))
    return names


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return typing.get_origin(annotation) is typing.ClassVar


def _classify(name: str, raw: object) -> Member | None:
    if isinstance(raw, classmethod):
        return Member(name, Kind.CLASSMETHOD, raw.__func__, raw.__func__.__doc__)
    if isinstance(raw, staticmethod):
        func = raw.__func__
        return Member(name, Kind.STATICMETHOD, func, func.__doc__)
    if inspect.isfunction(raw) or (inspect.ismethoddescriptor(raw) and callable(raw)):
        return Member(name, Kind.METHOD, raw, getattr(raw, "__doc__", None))
    if isinstance(raw, property):
        return Member(
            name, Kind.ATTRIBUTE, doc=raw.__doc__, writable=raw.fset is not None
        )
    if hasattr(type(raw), "__get__"):
        # Other descriptors (memoized properties and the like): writable only
        # if they say so, as SQLAlchemy decides for its own proxies.
        return Member(
            name,
            Kind.ATTRIBUTE,
            doc=getattr(raw, "__doc__", None),
            writable=hasattr(type(raw), "__set__"),
        )
    return None


def discover(target: type, exclude: Iterable[str] = ()) -> list[Member]:
    """List the public members of *target* that a proxy should forward.

    Methods, classmethods, staticmethods and properties come from the class
    and its bases; instance attributes come from class-level annotations
    (``bind: Engine | None``), which is how typed classes such as SQLAlchemy's
    ``Session`` declare them. Such plain attributes are readable and writable.
    """
    skip = set(exclude)
    members: dict[str, Member] = {}
    for name in dir(target):
        if not _is_public(name) or name in skip:
            continue
        raw = inspect.getattr_static(target, name)
        member = _classify(name, raw)
        if member is not None:
            members[name] = member
    for name, annotation in _annotations(target).items():
        if name in members or name in skip or not _is_public(name):
            continue
        if _is_classvar(annotation):
            continue
        raw = inspect.getattr_static(target, name, None)
        if raw is None or not hasattr(type(raw), "__get__"):
            members[name] = Member(name, Kind.ATTRIBUTE, writable=True)
    return sorted(members.values(), key=lambda m: m.name)
