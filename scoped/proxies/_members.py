"""The member model: which members of a target class get a forwarding proxy.

A :class:`Member` describes one forwarded member: its name, kind, docstring
and, where it comes from a committed spec rather than a live class, the
source of its signature and the releases of the target's library that have
it. :func:`discover` reads the members off any class; :func:`bind` lays a
spec over the installed class, so that the spec, not the installed release,
decides which members a proxy has.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Kind", "Member", "Releases", "bind", "discover"]

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
class Releases:
    """The releases of the target's *library* that have a member.

    *since* is the first release series that has it, *until* the first that
    no longer does; ``None`` means every supported release on that side.
    """

    library: str
    since: str | None = None
    until: str | None = None

    def note(self) -> str:
        """The sentences that mark the member in its docstring (two lines)."""
        parts = []
        if self.since is not None:
            parts.append(f"added in {self.library} {self.since}")
        if self.until is not None:
            parts.append(f"removed in {self.library} {self.until}")
        text = " and ".join(parts)
        return (
            f"{text[:1].upper()}{text[1:]}. Where the installed release lacks it,\n"
            "using it raises :exc:`scoped.UnavailableMemberError`."
        )

    def requirement(self) -> str:
        """What the member needs, for the error raised where it is missing."""
        if self.since is not None and self.until is not None:
            return f"requires {self.library} {self.since} up to {self.until}"
        if self.since is not None:
            return f"requires {self.library} {self.since} or later"
        return f"was removed in {self.library} {self.until}"


@dataclass(frozen=True)
class Member:
    """One forwarded member of a target class.

    *function* is the installed target's function for callables (``None``
    for attributes and members of a spec); *writable* says whether an
    attribute proxy gets a setter. A spec's members also carry *signature*,
    the source after ``def name`` (an attribute's is its getter's), the
    *overloads*' signatures, the *imports* (local name, ``"module"`` or
    ``"module:name"``) that they use, and the *releases* that have them;
    *present* is false for a spec member the installed class lacks.
    """

    name: str
    kind: Kind
    function: Callable[..., Any] | None = None
    doc: str | None = None
    writable: bool = False
    coroutine: bool = False
    releases: Releases | None = None
    signature: str = ""
    overloads: tuple[str, ...] = ()
    imports: tuple[tuple[str, str], ...] = ()
    present: bool = True

    @property
    def is_coroutine(self) -> bool:
        """Tell whether the target is an ``async def`` function."""
        return self.coroutine


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


def _callable(name: str, kind: Kind, func: Any) -> Member:
    coroutine = inspect.iscoroutinefunction(func)
    return Member(name, kind, func, getattr(func, "__doc__", None), coroutine=coroutine)


def _classify(name: str, raw: object) -> Member | None:
    if isinstance(raw, classmethod):
        return _callable(name, Kind.CLASSMETHOD, raw.__func__)
    if isinstance(raw, staticmethod):
        return _callable(name, Kind.STATICMETHOD, raw.__func__)
    if inspect.isfunction(raw) or (inspect.ismethoddescriptor(raw) and callable(raw)):
        return _callable(name, Kind.METHOD, raw)
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


def bind(
    spec: Sequence[Member], target: type, exclude: Iterable[str] = ()
) -> list[Member]:
    """The members of a proxy of *target* whose forwarded members *spec* lists.

    Each spec member the installed *target* has is forwarded as discovered
    there (its own signature and docstring), keeping the spec's releases;
    one it lacks stays, marked not *present*, so that the proxy has it and
    says which release it needs. Members the spec does not list, such as a
    subclass's own methods, are forwarded as :func:`discover` finds them.
    """
    found = {member.name: member for member in discover(target, exclude)}
    skip = set(exclude)
    members = [
        dataclasses.replace(found.pop(entry.name), releases=entry.releases)
        if entry.name in found
        else dataclasses.replace(entry, present=False)
        for entry in spec
        if entry.name not in skip
    ]
    members += found.values()
    return sorted(members, key=lambda m: m.name)
