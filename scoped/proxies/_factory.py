"""Proxy classes: one generated subclass per (base, target, lookup), cached."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from scoped.proxies import _codegen
from scoped.proxies._codegen import Lookup, Plan, compile_members
from scoped.proxies._members import Member, bind, discover

__all__ = ["proxied_members", "proxy_class", "reserved_names"]

_B = TypeVar("_B", bound=type)

_cache: dict[tuple[Any, ...], type] = {}
_lock = threading.Lock()


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


def proxied_members(
    base: type, target: type, exclude: Iterable[str], spec: Sequence[Member] = ()
) -> list[Member]:
    """The members of *target* that a proxy class on *base* forwards: those
    of *spec* laid over *target* (:func:`~scoped.proxies.bind`), or without
    a spec every public member found on *target*."""
    reserved = reserved_names(base)
    members = bind(spec, target, exclude) if spec else discover(target, exclude)
    return [m for m in members if m.name not in reserved]


def proxy_class(
    base: _B,
    target: type,
    lookup: Lookup,
    *,
    extra_bases: tuple[type, ...] = (),
    exclude: Iterable[str] = (),
    spec: Sequence[Member] = (),
    target_ref: str | None = None,
    proxy_ref: str | None = None,
) -> _B:
    """Return the subclass of *base* that forwards *target*'s public members.

    Generation runs once per combination of arguments; later calls return
    the cached class. *extra_bases* are appended to the bases (for example a
    class that ``isinstance`` checks elsewhere must see); their own members
    are overridden by the generated ones. *spec*, when given, lists the
    members the proxy has whatever release of *target*'s library is
    installed. *target_ref* and *proxy_ref* are the Sphinx cross-reference
    targets used in the "Proxied for" note.
    """
    excluded = frozenset(exclude)
    spec = tuple(spec)
    # Read per call, so that classes generated after a change follow it.
    speedups = _codegen.SPEEDUPS
    key = (
        base,
        target,
        lookup,
        extra_bases,
        excluded,
        spec,
        target_ref,
        proxy_ref,
        speedups,
    )
    try:
        return _cache[key]  # type: ignore[return-value]
    except KeyError:
        pass
    with _lock:
        if key in _cache:
            return _cache[key]  # type: ignore[return-value]
        members = proxied_members(base, target, excluded, spec)
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
