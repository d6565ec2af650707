"""Compiled attribute proxies (scoped._speedups) behave as the Python properties.

Every behaviour test runs twice, once with the attributes of the generated
class compiled and once as the pure-Python properties, for each kind of
lookup the C code knows: the thread-local slot, a keyed dict, a dict keyed by
``id()`` (object scopes), and the context scope, whose fast scope function
raises a C-level ``LookupError`` in a fresh context.
"""

from __future__ import annotations

import contextvars
import functools
import gc
import importlib.util
import inspect
import os
import pydoc
import subprocess
import sys
import threading
import tracemalloc
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from extension import NOT_IN_USE, both

from scoped import ScopedRegistry, scoped_session, scopes
from scoped.proxies import _codegen

COMPILED = _codegen._compiled_attribute
needs_compiled = pytest.mark.skipif(COMPILED is None, reason=NOT_IN_USE)

IMPLEMENTATIONS = both(False, True, in_use=COMPILED is not None)


class Target:
    """A session-like class with each kind of proxied attribute."""

    value: Any  # a plain instance attribute: proxied read-write
    unset: int  # declared, never assigned: reading it is an AttributeError

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0

    @property
    def label(self) -> str:
        """A read-only property.

        Its second paragraph.
        """
        self.reads += 1
        return f"target {id(self)}"

    @property
    def broken(self) -> int:
        """A property whose getter raises AttributeError, like a scope miss."""
        self.reads += 1
        raise AttributeError("broken is not available")

    def close(self) -> None:
        """Called by ``remove()``."""


@dataclass(frozen=True)
class Scope:
    """How a test proxy finds the current scope, and the C lookup that serves it."""

    scopefunc: Callable[[], Callable[[], Any] | None]
    kind: str


SCOPES = [
    pytest.param(Scope(lambda: None, "local"), id="thread-local"),
    pytest.param(
        Scope(lambda: functools.partial(threading.get_ident), "keyed"), id="keyed"
    ),
    pytest.param(
        # A partial: C code between the lookup and the Python function, as
        # scope functions written in Python get Python properties.
        Scope(
            lambda: scopes.objects(functools.partial(threading.current_thread)),
            "identity",
        ),
        id="identity",
    ),
    pytest.param(Scope(lambda: scopes.context, "identity"), id="context"),
]


@dataclass
class Made:
    """A proxy over ``Target`` and every object its factory made."""

    db: Any
    made: list[Target] = field(default_factory=list)


@pytest.fixture(params=IMPLEMENTATIONS)
def compiled(request: pytest.FixtureRequest) -> bool:
    """Whether proxy classes get compiled attributes or Python properties."""
    return bool(request.param)


@pytest.fixture(params=SCOPES)
def scope(request: pytest.FixtureRequest) -> Scope:
    """One kind of lookup."""
    return request.param  # type: ignore[no-any-return]


def _proxy(compiled: bool, scopefunc: Callable[[], Any] | None) -> Made:
    made = Made(None)

    def factory() -> Target:
        made.made.append(Target())
        return made.made[-1]

    # Generated classes are cached per choice, so flipping it here is safe;
    # it is forced either way, as 3.12+ choose Python properties by default.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_codegen, "SPEEDUPS", compiled)
        made.db = scoped_session(factory, scopefunc, class_=Target, log=False)
    attribute = inspect.getattr_static(type(made.db), "value")
    expected = COMPILED if compiled else property
    assert type(attribute) is expected
    return made


@pytest.fixture
def make(compiled: bool, scope: Scope) -> Callable[[], Made]:
    """Make a fresh proxy for the current implementation and scope."""

    def make() -> Made:
        return _proxy(compiled, scope.scopefunc())

    return make


# -- reading and writing ----------------------------------------------------


def test_reads_the_current_objects_attribute(make: Callable[[], Made]) -> None:
    """A read returns the attribute of the current scope's object."""
    made = make()
    made.db().value = 5

    assert (5, made.db().label) == (made.db.value, made.db.label)
    assert 1 == len(made.made)


def test_assignment_reaches_the_current_object(make: Callable[[], Made]) -> None:
    """Assigning a writable attribute sets it on the current scope's object."""
    made = make()
    marker = object()

    made.db.value = marker

    assert marker is made.db().value
    assert marker is made.db.value


def test_the_first_read_creates_exactly_one_object(make: Callable[[], Made]) -> None:
    """A read in an empty scope creates its object once; later reads reuse it."""
    made = make()

    assert 0 == made.db.value
    assert made.db.label == made.db.label

    assert [made.db()] == made.made


def test_the_first_assignment_creates_exactly_one_object(
    make: Callable[[], Made],
) -> None:
    """An assignment in an empty scope creates the object and sets it there."""
    made = make()

    made.db.value = 3

    assert [made.db()] == made.made
    assert 3 == made.made[0].value


def test_read_only_attributes_refuse_assignment_and_deletion(
    make: Callable[[], Made],
) -> None:
    """Assigning or deleting a read-only attribute fails before any lookup."""
    made = make()

    with pytest.raises(AttributeError, match="label"):
        made.db.label = "x"
    with pytest.raises(AttributeError, match="label"):
        del made.db.label
    with pytest.raises(AttributeError, match="value"):
        del made.db.value

    assert [] == made.made


def test_the_objects_attribute_error_is_not_a_miss(make: Callable[[], Made]) -> None:
    """The object's own AttributeError surfaces as itself; nothing is re-created."""
    made = make()

    with pytest.raises(AttributeError, match="broken is not available") as first:
        _ = made.db.broken  # the scope's first use: created here
    with pytest.raises(AttributeError, match="broken is not available"):
        _ = made.db.broken
    with pytest.raises(AttributeError, match="unset"):
        _ = made.db.unset

    assert 1 == len(made.made)
    assert 2 == made.made[0].reads
    assert first.value.__context__ is None  # not raised "during" the miss


def test_a_replaced_registry_is_followed(compiled: bool) -> None:
    """After ``db.registry = other``, reads and writes reach the other's objects."""
    made = _proxy(compiled, functools.partial(threading.get_ident))
    made.db.value = 1
    other = Target()
    made.db.registry = ScopedRegistry(lambda: other, threading.get_native_id)

    made.db.value = 2

    assert (2, 2) == (made.db.value, other.value)
    assert 1 == made.made[0].value
    assert made.db() is other


# -- errors of the scope function -------------------------------------------

# The scope functions below are Python code, which would get Python
# properties; a partial puts C code in front, so the compiled lookup calls it.
WRAPPERS = [
    pytest.param(functools.partial, id="keyed"),
    pytest.param(lambda func: scopes.objects(functools.partial(func)), id="identity"),
]

ACCESSES = [
    pytest.param(lambda db: db.value, id="get"),
    pytest.param(lambda db: setattr(db, "value", 1), id="set"),
]


@pytest.mark.parametrize("error", [RuntimeError("no scope here"), KeyError("k")])
@pytest.mark.parametrize("access", ACCESSES)
@pytest.mark.parametrize("wrap", WRAPPERS)
def test_scopefunc_errors_propagate_unchanged(
    compiled: bool,
    wrap: Callable[[Callable[[], Any]], Callable[[], Any]],
    access: Callable[[Any], object],
    error: Exception,
) -> None:
    """An error the scope function raises reaches the caller as itself, at once."""
    calls: list[None] = []

    def scopefunc() -> Any:
        calls.append(None)
        raise error

    made = _proxy(compiled, wrap(scopefunc))

    with pytest.raises(type(error)) as caught:
        access(made.db)

    assert error is caught.value
    assert 1 == len(calls)  # not taken for a miss and retried
    assert [] == made.made


@pytest.mark.parametrize("access", ACCESSES)
def test_an_unhashable_key_is_a_clear_type_error(
    compiled: bool, access: Callable[[Any], object]
) -> None:
    """A scope function returning a list gets the registry's TypeError."""

    def listing() -> list[int]:
        return [1]

    # Through a partial, so that the compiled lookup is the one calling it.
    made = _proxy(compiled, functools.partial(listing))

    unhashable = r"listing.* returned an unhashable scope key of type 'list'"
    with pytest.raises(TypeError, match=unhashable):
        access(made.db)

    assert [] == made.made


# -- scopes -----------------------------------------------------------------


def test_threads_never_see_each_others_objects(
    make: Callable[[], Made], in_threads: Callable[..., list[Any]]
) -> None:
    """Each thread reads and writes its own object through the same proxy."""
    made = make()
    count = 8
    barrier = threading.Barrier(count)

    def work(index: int) -> tuple[int, int]:
        made.db.value = index
        barrier.wait(10)
        seen = made.db.value
        identity = id(made.db())
        made.db.remove()
        return seen, identity

    results = in_threads(count, work)

    assert list(range(count)) == [seen for seen, _ in results]
    assert count == len({identity for _, identity in results})
    assert count == len(made.made)


# -- introspection ----------------------------------------------------------


def test_help_and_getdoc_show_the_proxied_note(make: Callable[[], Made]) -> None:
    """``help()`` and ``inspect.getdoc`` on the class show the target's docs."""
    proxy = type(make().db)
    note = f"Proxied for the :class:`{__name__}.Target` class on"

    doc = inspect.getdoc(proxy.label)
    text = pydoc.render_doc(proxy, renderer=pydoc.plaintext)  # type: ignore[attr-defined]

    assert doc is not None
    assert doc.startswith("A read-only property.\n\n")
    assert note in doc
    assert doc.endswith("Its second paragraph.")
    assert f"Proxy for the :attr:`{__name__}.Target.value` attribute on" in text
    assert note in text


@needs_compiled
def test_the_compiled_descriptor_describes_itself(scope: Scope) -> None:
    """Name, owner, kind and the pure-Python accessors it stands in for."""
    made = _proxy(True, scope.scopefunc())
    proxy = type(made.db)
    value, label = proxy.__dict__["value"], proxy.__dict__["label"]

    assert value is proxy.value
    assert ("value", f"{proxy.__qualname__}.value") == (
        value.__name__,
        value.__qualname__,
    )
    assert proxy is value.__objclass__
    assert scope.kind == value.kind
    assert f"<scoped attribute {proxy.__qualname__}.label>" == repr(label)
    assert label.fset is None
    assert callable(value.fset)
    assert made.db.label == label.fget(made.db)


@needs_compiled
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kind": "nope"}, ValueError, "kind must be 'local', 'keyed' or 'identity'"),
        ({"misses": [KeyError]}, TypeError, "misses must be a tuple"),
        ({"misses": (KeyError, 1)}, TypeError, "misses must hold exception classes"),
        ({"fget": 1}, TypeError, "fget must be callable"),
        ({"fset": 1}, TypeError, "fset must be callable or None"),
        ({"doc": 1}, TypeError, "doc must be a str or None"),
    ],
)
def test_the_compiled_descriptor_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Constructing a descriptor with bad arguments names what was wrong."""
    assert COMPILED is not None
    arguments: dict[str, Any] = {
        "name": "value",
        "kind": "keyed",
        "misses": (KeyError,),
        "fget": len,
    }

    with pytest.raises(error, match=message):
        COMPILED(**{**arguments, **kwargs})


# -- selection --------------------------------------------------------------


@needs_compiled
def test_each_choice_gets_its_own_generated_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Generated classes are cached per choice, so both can coexist."""
    monkeypatch.setattr(_codegen, "SPEEDUPS", False)
    python = type(scoped_session(Target, log=False))
    monkeypatch.setattr(_codegen, "SPEEDUPS", True)
    compiled = type(scoped_session(Target, log=False))

    assert python is not compiled
    assert isinstance(python.__dict__["value"], property)
    assert type(compiled.__dict__["value"]) is COMPILED


REQUEST: contextvars.ContextVar[int] = contextvars.ContextVar("request", default=1)


class _Scopes:
    def key(self) -> int:
        return 1


def _python_key() -> int:
    return threading.get_ident()


@needs_compiled
@pytest.mark.parametrize(
    "scopefunc",
    [_python_key, lambda: 1, _Scopes().key, scopes.objects(threading.current_thread)],
    ids=["function", "lambda", "bound method", "objects(function)"],
)
def test_a_scope_function_written_in_python_keeps_python_properties(
    monkeypatch: pytest.MonkeyPatch, scopefunc: Callable[[], Any]
) -> None:
    """C would call it through a fresh interpreter entry; a getter calls it inline."""
    monkeypatch.setattr(_codegen, "SPEEDUPS", True)
    db = scoped_session(Target, scopefunc, log=False)

    assert db.registry.lookup.calls_python
    assert isinstance(inspect.getattr_static(type(db), "value"), property)
    db.value = 5  # type: ignore[attr-defined]
    assert 5 == db.value


@needs_compiled
@pytest.mark.parametrize(
    "scopefunc",
    [functools.partial(threading.get_ident), REQUEST.get, scopes.context],
    ids=["partial", "ContextVar.get", "context"],
)
def test_a_scope_function_in_c_gets_compiled_attributes(
    monkeypatch: pytest.MonkeyPatch, scopefunc: Callable[[], Any]
) -> None:
    monkeypatch.setattr(_codegen, "SPEEDUPS", True)
    db = scoped_session(Target, scopefunc, log=False)

    assert not db.registry.lookup.calls_python
    assert type(inspect.getattr_static(type(db), "value")) is COMPILED


def _speedups_flag(environ: dict[str, str]) -> str:
    code = "import scoped.proxies as p; print(p.SPEEDUPS)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_environment_variable_turns_the_extension_off() -> None:
    """SCOPED_NO_EXTENSIONS=1 selects Python properties; otherwise the build decides."""
    environ = {k: v for k, v in os.environ.items() if k != "SCOPED_NO_EXTENSIONS"}
    built = importlib.util.find_spec("scoped._speedups") is not None
    expected = built and sys.version_info < (3, 12)

    assert "False" == _speedups_flag({**environ, "SCOPED_NO_EXTENSIONS": "1"})
    assert str(expected) == _speedups_flag(environ)


# -- memory and reference counts --------------------------------------------


def test_objects_are_freed_after_remove(make: Callable[[], Made]) -> None:
    """remove() lets the object go: nothing in the proxy path keeps it."""
    made = make()
    made.db.value = 1
    _ = made.db.label
    gone = weakref.ref(made.made.pop())

    made.db.remove()
    gc.collect()

    assert gone() is None


def test_objects_are_freed_with_the_proxy(make: Callable[[], Made]) -> None:
    """Dropping the proxy and its registry frees the objects they held."""
    made = make()
    made.db.value = 1
    gone = weakref.ref(made.made.pop())
    proxy = weakref.ref(made.db)

    del made.db
    gc.collect()

    assert (None, None) == (proxy(), gone())


def _counts(objects: list[Any]) -> list[int]:
    return [sys.getrefcount(obj) for obj in objects]


def test_reads_and_writes_leave_reference_counts_unchanged(
    make: Callable[[], Made],
) -> None:
    """100,000 reads and writes neither leak nor drop a reference."""
    made = make()
    marker = object()
    made.db.value = marker
    db, session = made.db, made.db()
    watched = [
        marker,
        session,
        db,
        type(db).__dict__["value"],
        db._scoped_storage,
        db._scoped_handles,
        *([db._scoped_scopefunc] if db._scoped_scopefunc is not None else []),
    ]
    before = _counts(watched)

    for _ in range(100_000):
        _ = db.value
    for _ in range(10_000):
        db.value = marker

    assert before == _counts(watched)


def test_misses_and_errors_leave_reference_counts_unchanged(
    make: Callable[[], Made],
) -> None:
    """Creating on a miss, and the object's own errors, keep counts balanced."""
    made = make()
    db = made.db
    descriptor = type(db).__dict__["value"]
    watched = [db, descriptor, descriptor.fget, db._scoped_storage, db._scoped_handles]
    db.value = 1
    db.remove()
    made.made.clear()
    before = _counts(watched)

    for _ in range(200):
        _ = db.value  # a miss: created
        with pytest.raises(AttributeError):
            _ = db.broken
        db.remove()
        db.value = 2  # a miss on assignment
        db.remove()
    made.made.clear()

    assert before == _counts(watched)


@needs_compiled
def test_a_million_reads_do_not_grow_memory(scope: Scope) -> None:
    """Reading through the compiled descriptor allocates nothing that stays."""
    db = _proxy(True, scope.scopefunc()).db
    _ = db.value
    gc.collect()
    gc.disable()
    try:
        blocks = sys.getallocatedblocks()
        for _ in range(1_000_000):
            _ = db.value
        grown = sys.getallocatedblocks() - blocks
        tracemalloc.start()
        try:
            start, _peak = tracemalloc.get_traced_memory()
            for _ in range(100_000):
                _ = db.value
            end, _peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        gc.enable()

    assert grown < 100
    assert end - start < 4096
