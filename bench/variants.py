"""The proxy body layouts that were measured, side by side, and their parts.

Each variant overrides ``rollback`` and ``autoflush`` on a subclass of the
generated proxy class and shares the registry of the real proxy, so every
variant forwards to the same session as ``bench/run.py`` uses; all timers are
interleaved and best-of-N as there. "generated" is the code that ships.
"per-instance closure" would need one class per ``scoped_session`` instance
(the lookup handles become closure cells); it is not what ships, since one
generated class serves every instance of a target class.

The second table times the pieces every proxied call is made of.

Usage: ``python bench/variants.py [--rounds N] [--sample-ms MS]``
"""

from __future__ import annotations

import argparse
import operator
import threading
import timeit
from typing import Any

from run import (
    SCOPES,
    _proxies,
    best_times,
    describe_machine,
    parse_timing,
    timing_arguments,
)
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

MEMBERS = ("rollback()", "autoflush")
#: The scope whose proxies go through the keyed registry (see run.SCOPES).
KEYED = "partial(get_ident)"

# Bodies over "{lookup}" and "{member}"; "{test}" is the registry's miss test.
LOOKUP_THEN_FORWARD = """
    try:
        session = {lookup}
    except {misses}:
        session = self.registry._create_current()
    return session.{member}
"""
TRY_ELSE = """
    try: session = {lookup}
    except {misses}:
        session = self.registry._create_current()
    else:
        return session.{member}
    return session.{member}
"""
INSIDE_TRY = """
    try: return {lookup}.{member}
    except {misses} as error:
        if not ({test}):
            raise
        session = registry._create_current()
    return session.{member}
"""

TL = {
    "lookup": "self._scoped_storage.value",
    "misses": "AttributeError",
    "test": "error.obj is storage",
}
CUSTOM = {
    "lookup": "self._scoped_storage[self._scoped_scopefunc()]",
    "misses": "(KeyError, TypeError)",
    "test": "error.__traceback__.tb_next is None and not registry.has()",
}
CUSTOM_LOCAL = dict(CUSTOM, lookup="self._scoped_storage[scopefunc()]")


def _define(body: str, fields: dict[str, str], prologue: str = "") -> str:
    """Source of ``rollback`` and the ``autoflush`` getter with *body*."""
    out = []
    for name, member in (("rollback", "rollback()"), ("_autoflush", "autoflush")):
        out.append(f"def {name}(self):\n{prologue}")
        out.append(body.format(member=member, **fields))
    return "\n".join(out)


def _closure(fields: dict[str, str]) -> str:
    """The inside-try layout with the handles as closure cells."""
    lookup = fields["lookup"].replace("self._scoped_storage", "storage")
    lookup = lookup.replace("self._scoped_scopefunc", "scopefunc")
    inner = _define(INSIDE_TRY, dict(fields, lookup=lookup))
    indented = "\n".join(f"    {line}" for line in inner.splitlines())
    return (
        "def bind(storage, scopefunc, registry):\n"
        f"{indented}\n"
        "    return rollback, _autoflush\n"
    )


def _variant(proxy: Any, source: str, closure: bool = False) -> Any:
    """A subclass of *proxy*'s class with the members *source* defines."""
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # the sources above, not user input
    if closure:
        registry = proxy.registry
        rollback, getter = namespace["bind"](
            registry._storage, registry._scopefunc, registry
        )
    else:
        rollback, getter = namespace["rollback"], namespace["_autoflush"]
    members = {"rollback": rollback, "autoflush": property(getter)}
    cls = type(type(proxy).__name__, (type(proxy),), members)
    return _copy(proxy, cls)


def _attrgetter(proxy: Any) -> Any:
    """autoflush as a C-only chain; it cannot create a missing session."""
    getter = operator.attrgetter("_scoped_storage.value.autoflush")
    cls = type(type(proxy).__name__, (type(proxy),), {"autoflush": property(getter)})
    return _copy(proxy, cls)


def _copy(proxy: Any, cls: type) -> Any:
    # Attribute by attribute, so the copy keeps CPython's inline values.
    new: Any = object.__new__(cls)
    for name in ("session_factory", "_scoped_sqlalchemy"):
        object.__setattr__(new, name, getattr(proxy, name))
    new._scoped_attach(proxy.registry)
    return new


def variants(proxies: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Every measured layout, by name, ready to time."""
    tl, custom = proxies["ours", "thread-local"], proxies["ours", KEYED]
    local = "    scopefunc = self._scoped_scopefunc\n"
    return {
        "SQLAlchemy, thread-local": proxies["sa", "thread-local"],
        "SQLAlchemy, scopefunc": proxies["sa", KEYED],
        "thread-local: lookup, then forward": _variant(
            tl, _define(LOOKUP_THEN_FORWARD, TL)
        ),
        "thread-local: try/else": _variant(tl, _define(TRY_ELSE, TL)),
        "thread-local: attrgetter property": _attrgetter(tl),
        "thread-local: generated": tl,
        "thread-local: per-instance closure": _variant(tl, _closure(TL), closure=True),
        "scopefunc: lookup, then forward": _variant(
            custom, _define(LOOKUP_THEN_FORWARD, CUSTOM)
        ),
        "scopefunc: local scopefunc, try/else": _variant(
            custom, _define(TRY_ELSE, CUSTOM_LOCAL, local)
        ),
        "scopefunc: generated": custom,
        "scopefunc: per-instance closure": _variant(
            custom, _closure(CUSTOM), closure=True
        ),
    }


class _Parts:
    """Objects the part timings read."""

    def __init__(self) -> None:
        self.plain = 1

    @property
    def constant(self) -> int:
        return 1

    def method(self) -> int:
        return 1


PARTS: dict[str, tuple[str, dict[str, Any]]] = {
    "loop alone": ("pass", {}),
    "instance attribute": ("x.plain", {"x": _Parts()}),
    "property returning a constant": ("x.constant", {"x": _Parts()}),
    "method returning a constant": ("x.method()", {"x": _Parts()}),
    "threading.local read": ("x.value", {}),
    "threading.get_ident()": ("f()", {"f": threading.get_ident}),
    "dict[get_ident()]": ("d[f()]", {"f": threading.get_ident}),
}


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_arguments(parser, rounds=41, sample_ms=10.0)
    args = parse_timing(parser, None)

    factory = sessionmaker(create_engine("sqlite://"))
    session = factory()
    proxies = _proxies(factory, session, SCOPES)
    subjects = variants(proxies)
    local = threading.local()
    local.value = session
    keyed = {threading.get_ident(): session}

    timers: dict[tuple[str, str], timeit.Timer] = {}
    for member in MEMBERS:
        timers["direct", member] = timeit.Timer(f"x.{member}", globals={"x": session})
        for name, subject in subjects.items():
            timers[name, member] = timeit.Timer(f"x.{member}", globals={"x": subject})
    for name, (stmt, names) in PARTS.items():
        namespace = {"x": local, "d": keyed, **names}
        timers["part", name] = timeit.Timer(stmt, globals=namespace)
    best = best_times(timers, args.rounds, args.sample_ms / 1000, args.seed)
    session.close()

    for line in describe_machine():
        print(line)
    print(f"best of {args.rounds} interleaved samples; ns over the direct call\n")
    _print_variants(best, subjects)
    print()
    loop = best["part", "loop alone"]
    print(f"{f'part (ns, the loop of {loop:.1f} ns removed)':45} ns")
    for name in PARTS:
        if name != "loop alone":
            print(f"{name:45} {best['part', name] - loop:6.1f}")


def _print_variants(
    best: dict[tuple[str, str], float], subjects: dict[str, Any]
) -> None:
    def over(name: str, member: str) -> float:
        return best[name, member] - best["direct", member]

    def cells(name: str, member: str) -> str:
        scope = "thread-local" if "thread-local" in name else "scopefunc"
        ratio = over(name, member) / over(f"SQLAlchemy, {scope}", member)
        return f"{over(name, member):7.1f} {ratio:5.2f}"

    print(
        f"{'layout (ns over direct, ratio to SQLAlchemy)':45} {'rollback()':>13}",
        end="",
    )
    print(f" {'autoflush':>13}")
    for name in subjects:
        print(f"{name:45} {cells(name, 'rollback()')} {cells(name, 'autoflush')}")


if __name__ == "__main__":
    main()
