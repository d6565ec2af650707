"""How a proxy finds the current scope's object: the lookup model.

A registry does not answer proxies through a method call on every access:
it declares, as a :class:`Lookup`, the expression that reads its storage,
and ``scoped.proxies`` inlines that expression into every generated
member. The optional C extension performs the same lookups natively for the
kinds it knows; it names them by :class:`LookupKind` value, so that a kind
and its compiled counterpart cannot drift apart unnoticed (a test compares
the two lists).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["IDENTITY", "KEYED", "LOCAL", "Lookup", "LookupKind"]


class LookupKind(enum.Enum):
    """The shapes of lookup that registries use.

    Each kind says how its expression reads the storage last (``access``:
    an attribute read or a subscript), which is where a miss is raised, and
    whether :mod:`scoped._speedups` has a compiled descriptor for it.
    """

    #: ``storage.value`` on a :class:`threading.local`.
    LOCAL = ("local", "attribute", True)
    #: ``storage[scopefunc()]`` on a dict keyed by the scope function's value.
    KEYED = ("keyed", "item", True)
    #: ``storage[id(scopefunc())]`` on a dict keyed by the scope object's id.
    IDENTITY = ("identity", "item", True)
    #: Any other expression over ``storage`` (and ``scopefunc``), ending in
    #: a subscript; generated Python code only.
    CUSTOM = ("custom", "item", False)

    def __init__(self, label: str, access: str, compiled: bool) -> None:
        self.label = label
        #: ``"attribute"`` or ``"item"``: the storage read that can miss.
        self.access = access
        #: Whether the C extension implements this kind (under ``label``).
        self.compiled = compiled


@dataclass(frozen=True)
class Lookup:
    """One registry's lookup, as generated proxies inline it.

    *expression* is source over ``{storage}`` and ``{scopefunc}`` (the
    proxy's handles to the registry's storage and fast scope function);
    *misses* are the exception types it raises when the scope holds nothing
    yet, after which the registry's slow path decides. Proxies tell a miss
    from the same exception raised by the object they forward to by the
    instruction that raised it (see ``scoped.proxies``), never by asking
    the registry again, which another thread may have changed meanwhile.

    *calls_python* says that the scope function is written in Python: the C
    descriptors then stay out, since calling Python from C costs more than
    the property they save.
    """

    kind: LookupKind
    expression: str
    misses: tuple[type[BaseException], ...]
    calls_python: bool = False

    def __post_init__(self) -> None:
        if "{storage}" not in self.expression:
            msg = f"a lookup expression must read {{storage}}: {self.expression!r}"
            raise ValueError(msg)
        if not self.misses:
            msg = "a lookup needs at least one exception type that means a miss"
            raise ValueError(msg)

    def with_misses(
        self, *misses: type[BaseException], calls_python: bool | None = None
    ) -> Lookup:
        """This lookup, with more miss types or another *calls_python*."""
        return Lookup(
            self.kind,
            self.expression,
            (*self.misses, *misses),
            self.calls_python if calls_python is None else calls_python,
        )


#: The thread-local registry's lookup.
LOCAL = Lookup(LookupKind.LOCAL, "{storage}.value", (AttributeError,))
#: The keyed registry's lookup. LookupError also covers a ContextVar that has
#: no value yet; TypeError an unhashable key, which the slow path explains.
KEYED = Lookup(LookupKind.KEYED, "{storage}[{scopefunc}()]", (LookupError, TypeError))
#: The keyed registry's lookup for scopes keyed by identity.
IDENTITY = Lookup(
    LookupKind.IDENTITY, "{storage}[id({scopefunc}())]", (LookupError, TypeError)
)
