"""The lookup model: one typed definition that proxies and C descriptors read."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy.orm import Session

from scoped import scoped_session, scopes
from scoped.proxies import _codegen
from scoped.registry import (
    Lookup,
    LookupKind,
    Registry,
    ScopedRegistry,
    ThreadLocalRegistry,
)

try:
    from scoped._speedups import ScopedAttribute
except ImportError:  # pragma: no cover - depends on the build
    ScopedAttribute = None  # type: ignore[assignment,misc]


def _registries() -> list[Registry[Any]]:
    return [
        ThreadLocalRegistry(object),
        ScopedRegistry(object, threading.get_ident),
        ScopedRegistry(object, scopes.task),
        ScopedRegistry(object, scopes.context),
        ScopedRegistry(object, scopes.objects(threading.current_thread)),
    ]


@pytest.mark.parametrize("registry", _registries(), ids=lambda r: type(r).__name__)
def test_every_registry_declares_a_typed_lookup(registry: Registry[Any]) -> None:
    """A registry's lookup is a Lookup of a known kind, never bare source."""
    assert isinstance(registry.lookup, Lookup)
    assert isinstance(registry.lookup.kind, LookupKind)
    assert registry.lookup.kind is not LookupKind.CUSTOM


@pytest.mark.skipif(ScopedAttribute is None, reason="scoped._speedups is not built")
@pytest.mark.parametrize("kind", list(LookupKind), ids=lambda k: k.label)
def test_compiled_kinds_and_the_extension_agree(kind: LookupKind) -> None:
    """Every kind marked compiled has a C counterpart, and no other kind does."""

    def accessor(proxy: object) -> object:
        return proxy

    if kind.compiled:
        attribute = ScopedAttribute("x", kind.label, (KeyError,), accessor)
        assert kind.label == attribute.kind
    else:
        with pytest.raises(ValueError, match="kind must be"):
            ScopedAttribute("x", kind.label, (KeyError,), accessor)


def test_a_plan_picks_the_compiled_kind_from_the_model() -> None:
    """The code generator reads the kind, not the expression's text."""
    reworded = Lookup(LookupKind.KEYED, "{storage}[({scopefunc}())]", (KeyError,))
    plan = _codegen.Plan(
        target=Session,
        proxy_qualname="P",
        proxy_module=__name__,
        lookup=reworded,
        members=[],
        target_ref="T",
        proxy_ref="P",
        speedups=True,
    )
    expected = "keyed" if _codegen._compiled_attribute is not None else None
    assert expected == plan.compiled_kind()


def test_a_lookup_must_read_the_storage() -> None:
    """A malformed lookup is refused when it is declared, not when proxies run."""
    with pytest.raises(ValueError, match="storage"):
        Lookup(LookupKind.CUSTOM, "{scopefunc}()", (KeyError,))
    with pytest.raises(ValueError, match="at least one exception"):
        Lookup(LookupKind.CUSTOM, "{storage}[0]", ())


def test_a_custom_lookup_generates_working_proxies() -> None:
    """A registry with a lookup of its own kind gets forwarding proxies, and a
    miss of that lookup is told apart from the session's own KeyError."""

    class Box:
        def __init__(self) -> None:
            self.items: dict[str, int] = {}

        def get(self, key: str) -> int:
            return self.items[key]

    class OneSlot(ScopedRegistry[Any]):
        """Every scope shares slot 0: a process-wide object."""

        def __init__(self, createfunc: Any) -> None:
            super().__init__(createfunc, lambda: 0)
            self.lookup = Lookup(LookupKind.CUSTOM, "{storage}[0]", (KeyError,))

    registry = OneSlot(Box)
    proxy_cls = scoped_session._proxy_class(scoped_session, Box, registry)
    proxy: Any = object.__new__(proxy_cls)
    proxy._scoped_attach(registry)
    with pytest.raises(KeyError, match="absent"):
        proxy.get("absent")  # the session's own KeyError, after creating it
    assert 1 == registry.stats()["created"]
    registry().items["k"] = 5
    assert 5 == proxy.get("k")
