"""Proxy classes: one generated subclass per (base, target, lookup), cached."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from scoped import _fork
from scoped.proxies import _codegen
from scoped.proxies._codegen import Plan, compile_members
from scoped.proxies._members import Member, bind, discover
from scoped.registry._lookup import Lookup

__all__ = ["proxied_members", "proxy_class", "reserved_names"]

_B = TypeVar("_B", bound=type)

_cache: dict[tuple[Any, ...], type] = {}
# Held while a class is generated (milliseconds); a child forked meanwhile
# gets it released.
_lock = _fork.Lock()
# Every distinct spec seen, by value and by identity: hashing a spec's
# members on every scoped_session() would cost more than the rest of it.
_specs: dict[tuple[Member, ...], tuple[Member, ...]] = {}
_spec_ids: dict[int, tuple[Member, ...]] = {}


def _canonical(spec: Sequence[Member]) -> tuple[Member, ...]:
    """The one stored spec equal to *spec*: itself when passed again."""
    if _spec_ids.get(id(spec)) is spec:
        return spec  # only tuples are stored
    with _lock:
        canonical = _specs.setdefault(tuple(spec), tuple(spec))
        _spec_ids[id(canonical)] = canonical
    return canonical


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
    spec = _canonical(spec) if spec else ()
    # Read per call, so that classes generated after a change follow it.
    speedups = _codegen.SPEEDUPS
    key = (
        base,
        target,
        lookup,
        extra_bases,
        excluded,
        id(spec),  # the canonical spec lives as long as the cache
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
