"""Proxy classes: one generated subclass per (base, target, lookup), cached."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from scoped import _fork
from scoped.proxies import _codegen
from scoped.proxies._codegen import Plan, compile_members
from scoped.proxies._members import Member, discover
from scoped.registry._lookup import Lookup

__all__ = ["proxied_members", "proxy_class", "reserved_names"]

_B = TypeVar("_B", bound=type)

_cache: dict[tuple[Any, ...], type] = {}
# Held while a class is generated (milliseconds); a child forked meanwhile
# gets it released.
_lock = _fork.Lock()


def reserved_names(base: type) -> frozenset[str]:
    """Names that *base* (and its subclasses' authors) define themselves.

    A generated member never shadows these: ``remove()`` stays the registry's
    even if the target class has a ``remove`` method, and a user's subclass
    can override any forwarded member by defining it.
    """
    names: set[str] = set()
    for klass in base.__mro__:
        if klass in (object, Generic):
            continue
        names.update(vars(klass))
    return frozenset(names)


def proxied_members(base: type, target: type, exclude: Iterable[str]) -> list[Member]:
    """The members of *target* that a proxy class on *base* forwards."""
    reserved = reserved_names(base)
    return [m for m in discover(target, exclude) if m.name not in reserved]


def proxy_class(
    base: _B,
    target: type,
    lookup: Lookup,
    *,
    extra_bases: tuple[type, ...] = (),
    exclude: Iterable[str] = (),
    target_ref: str | None = None,
    proxy_ref: str | None = None,
) -> _B:
    """Return the subclass of *base* that forwards *target*'s public members.

    Generation runs once per combination of arguments; later calls return
    the cached class. *extra_bases* are appended to the bases (for example a
    class that ``isinstance`` checks elsewhere must see); their own members
    are overridden by the generated ones. *target_ref* and *proxy_ref* are
    the Sphinx cross-reference targets used in the "Proxied for" note.
    """
    excluded = frozenset(exclude)
    # Read per call, so that classes generated after a change follow it.
    speedups = _codegen.SPEEDUPS
    key = (base, target, lookup, extra_bases, excluded, target_ref, proxy_ref, speedups)
    try:
        return _cache[key]  # type: ignore[return-value]
    except KeyError:
        pass
    with _lock:
        if key in _cache:
            return _cache[key]  # type: ignore[return-value]
        members = proxied_members(base, target, excluded)
        qualname = f"{base.__qualname__}[{target.__qualname__}]"
        plan = Plan(
            target=target,
            proxy_qualname=qualname,
            proxy_module=base.__module__,
            lookup=lookup,
            members=members,
            target_ref=target_ref or f"{target.__module__}.{target.__qualname__}",
            proxy_ref=proxy_ref or f"{base.__module__}.{base.__qualname__}",
            speedups=speedups,
        )
        namespace = compile_members(plan)
        namespace.update(
            __module__=base.__module__,
            __qualname__=qualname,
            __doc__=base.__doc__,
            _scoped_base=base,
        )
        cls = type(base.__name__, (base, *extra_bases), namespace)
        _cache[key] = cls
        return cls  # type: ignore[return-value]
