"""The registry contract: one object per scope, created once, races included."""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from scoped import Registry, ScopedRegistry, ThreadLocalRegistry, scoped_session
from scoped.registry import MISSING


class Thing:
    """A stand-in for a session: numbered, closable."""

    numbers = itertools.count()

    def __init__(self) -> None:
        self.number = next(self.numbers)
        self.closed = False

    def ping(self) -> int:
        """Return this object's number."""
        return self.number

    @property
    def label(self) -> str:
        """A readable attribute, for proxied attribute access."""
        return f"thing-{self.number}"

    def close(self) -> None:
        """Mark the object closed."""
        self.closed = True


class Counter:
    """A createfunc that counts its calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self) -> Thing:
        with self.lock:
            self.calls += 1
        if self.delay:
            # Long enough for every racing thread to reach the registry.
            time.sleep(self.delay)
        return Thing()


class Key:
    """A scopefunc whose key the test sets; ``error`` makes it raise."""

    def __init__(self, value: Any = "a") -> None:
        self.value = value
        self.error: BaseException | None = None

    def __call__(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


REGISTRIES = [
    pytest.param(ThreadLocalRegistry, id="thread-local"),
    pytest.param(lambda create: ScopedRegistry(create, lambda: "k"), id="scoped"),
]

MakeRegistry = Callable[[Callable[[], Thing]], Registry[Thing]]


@pytest.mark.parametrize("make", REGISTRIES)
def test_call_creates_once_and_returns_the_same_object(make: MakeRegistry) -> None:
    """Calling the registry creates the object on first use only."""
    create = Counter()
    registry = make(create)

    first = registry()

    assert first is registry()
    assert 1 == create.calls


@pytest.mark.parametrize("make", REGISTRIES)
def test_has_set_clear_peek(make: MakeRegistry) -> None:
    """has(), set(), clear() and peek() inspect and change the current scope."""
    create = Counter()
    registry = make(create)
    assert not registry.has()
    assert MISSING is registry.peek()

    mine = Thing()
    registry.set(mine)

    assert registry.has()
    assert mine is registry.peek()
    assert mine is registry()

    registry.clear()

    assert not registry.has()
    assert MISSING is registry.peek()
    registry.clear()  # clearing an empty scope is fine
    assert 0 == create.calls


@pytest.mark.parametrize("make", REGISTRIES)
def test_peek_never_creates(make: MakeRegistry) -> None:
    """peek() on an empty scope neither calls createfunc nor stores anything."""
    create = Counter()
    registry = make(create)

    registry.peek()

    assert 0 == create.calls
    assert not registry.has()


@pytest.mark.parametrize("make", REGISTRIES)
def test_clear_does_not_close(make: MakeRegistry) -> None:
    """clear() forgets the object without closing it."""
    registry = make(Counter())
    thing = registry()

    registry.clear()

    assert not thing.closed


@pytest.mark.parametrize("make", REGISTRIES)
def test_stored_none_is_an_object(make: MakeRegistry) -> None:
    """A factory returning None stores None rather than re-creating each time."""
    calls: list[None] = []

    def create() -> Any:
        calls.append(None)
        return None

    registry: Registry[Any] = make(create)

    assert registry() is None
    assert registry() is None
    assert registry.has()
    assert 1 == len(calls)


@pytest.mark.parametrize("make", REGISTRIES)
def test_reentrant_createfunc_is_a_clear_error(make: MakeRegistry) -> None:
    """A createfunc that calls its own registry gets a RuntimeError, not recursion."""
    registry: Registry[Thing]

    def create() -> Thing:
        return registry()

    registry = make(create)

    with pytest.raises(RuntimeError, match="re-entered the registry"):
        registry()
    assert not registry.has()


@pytest.mark.parametrize("make", REGISTRIES)
def test_failed_creation_leaves_the_scope_empty(make: MakeRegistry) -> None:
    """A createfunc that raises stores nothing, and the next call tries again."""
    attempts: list[int] = []

    def create() -> Thing:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("database is down")
        return Thing()

    registry = make(create)

    with pytest.raises(ValueError, match="database is down"):
        registry()
    assert not registry.has()
    assert isinstance(registry(), Thing)
    assert 2 == len(attempts)


def test_threads_never_share_a_thread_local_object(
    in_threads: Callable[..., list[Any]],
) -> None:
    """Each of many concurrent threads gets its own object, stable within it."""
    count = 16
    create = Counter()
    registry = ThreadLocalRegistry(create)
    barrier = threading.Barrier(count, timeout=10)

    def work(_: int) -> Thing:
        barrier.wait()
        mine = registry()
        # All threads hold their object at once, so no ident is reused.
        barrier.wait()
        assert mine is registry()
        return mine

    things = in_threads(count, work)

    assert count == len({id(thing) for thing in things})
    assert count == create.calls
    assert not registry.has()  # the main thread never asked


def test_racing_threads_on_one_key_create_exactly_one_object(
    in_threads: Callable[..., list[Any]],
) -> None:
    """32 threads racing on one scope key cause one creation and share its result."""
    count = 32
    create = Counter(delay=0.05)
    registry = ScopedRegistry(create, lambda: "shared")
    barrier = threading.Barrier(count, timeout=10)

    def work(_: int) -> Thing:
        barrier.wait()
        return registry()

    things = in_threads(count, work)

    assert 1 == create.calls
    assert 1 == len({id(thing) for thing in things})


def test_racing_threads_through_proxies_create_exactly_one_session(
    in_threads: Callable[..., list[Any]],
) -> None:
    """Racing first uses of a proxied method on one key create a single object."""
    count = 32
    create = Counter(delay=0.05)
    db = scoped_session(create, lambda: "shared", class_=Thing)
    barrier = threading.Barrier(count, timeout=10)

    def work(_: int) -> int:
        barrier.wait()
        return db.ping()  # type: ignore[no-any-return]

    numbers = in_threads(count, work)

    assert 1 == create.calls
    assert 1 == len(set(numbers))


def test_a_waiter_retries_when_the_creating_thread_fails(
    in_threads: Callable[..., list[Any]],
) -> None:
    """When the creating thread's createfunc fails, a waiting thread creates instead."""
    entered = threading.Event()
    release = threading.Event()
    creators: list[str] = []

    def create() -> Thing:
        creators.append(threading.current_thread().name)
        if len(creators) == 1:
            entered.set()
            release.wait(10)
            raise ValueError("first attempt fails")
        return Thing()

    registry = ScopedRegistry(create, lambda: "shared")

    def work(index: int) -> object:
        if index == 0:
            with pytest.raises(ValueError, match="first attempt fails") as caught:
                registry()
            return caught.value
        entered.wait(10)
        if index == 1:
            # worker-0 is inside createfunc: this call has to wait for it.
            return registry()
        time.sleep(0.1)
        seen = list(creators)
        release.set()
        return seen

    failed, created, seen_while_waiting = in_threads(3, work)

    assert isinstance(failed, ValueError)
    assert ["worker-0"] == seen_while_waiting
    assert ["worker-0", "worker-1"] == creators
    assert isinstance(created, Thing)
    assert created is registry.peek()


def test_custom_scopes_are_isolated() -> None:
    """Different scope keys hold different objects, each created once."""
    key = Key("a")
    create = Counter()
    registry = ScopedRegistry(create, key)

    a = registry()
    key.value = "b"
    b = registry()
    key.value = "a"

    assert a is not b
    assert a is registry()
    assert 2 == create.calls


def test_remove_affects_only_the_current_key() -> None:
    """remove() closes and discards the current key's object and no other."""
    key = Key("a")
    db = scoped_session(Thing, key)
    a = db()
    key.value = "b"
    b = db()

    key.value = "a"
    db.remove()

    assert a.closed
    assert not db.registry.has()
    key.value = "b"
    assert b is db.registry.peek()
    assert not b.closed
    key.value = "a"
    assert a is not db()


ACCESSES = [
    pytest.param(lambda db: db(), id="call"),
    pytest.param(lambda db: db.registry(), id="registry"),
    pytest.param(lambda db: db.ping(), id="method"),
    pytest.param(lambda db: db.label, id="attribute"),
    pytest.param(lambda db: db.registry(), id="registry"),
    pytest.param(lambda db: db.registry.has(), id="has"),
    pytest.param(lambda db: db.remove(), id="remove"),
]

SCOPE_ERRORS = [
    pytest.param(
        lambda: RuntimeError("Working outside of application context."), id="runtime"
    ),
    # These two are also what a lookup miss looks like inside the proxies.
    pytest.param(lambda: KeyError("no request"), id="key"),
    pytest.param(lambda: TypeError("no request"), id="type"),
]


@pytest.mark.parametrize("access", ACCESSES)
@pytest.mark.parametrize("make_error", SCOPE_ERRORS)
def test_scopefunc_errors_propagate_unchanged(
    access: Callable[[Any], object], make_error: Callable[[], BaseException]
) -> None:
    """A scopefunc's own exception reaches the caller as it is, registry untouched."""
    key = Key("a")
    create = Counter()
    db = scoped_session(create, key, class_=Thing)
    existing = db()
    error = make_error()
    key.error = error

    with pytest.raises(type(error)) as caught:
        access(db)

    assert error is caught.value
    assert caught.value.__cause__ is None
    key.error = None
    assert existing is db.registry.peek()
    assert 1 == create.calls


@pytest.mark.parametrize("access", ACCESSES)
def test_unhashable_scope_key_is_a_clear_type_error(
    access: Callable[[Any], object],
) -> None:
    """An unhashable key names the scopefunc and the key's type; nothing changes."""
    current: dict[str, Any] = {"key": "a"}

    def current_request_key() -> Any:
        return current["key"]

    create = Counter()
    db = scoped_session(create, current_request_key, class_=Thing)
    existing = db()
    current["key"] = ["not", "hashable"]

    with pytest.raises(TypeError) as caught:
        access(db)

    message = str(caught.value)
    assert "current_request_key" in message
    assert "'list'" in message
    current["key"] = "a"
    assert existing is db.registry.peek()
    assert 1 == create.calls


def test_unhashable_key_in_set_and_clear_is_a_clear_type_error() -> None:
    """set() and clear() with an unhashable key raise and store nothing."""
    key = Key({"a": 1})
    registry = ScopedRegistry(Counter(), key)

    with pytest.raises(TypeError, match="'dict'"):
        registry.set(Thing())
    with pytest.raises(TypeError, match="'dict'"):
        registry.clear()
    key.value = "a"
    assert not registry.has()


def _failing_factory() -> Thing:
    raise ValueError("cannot connect")


def _chained_failing_factory() -> Thing:
    try:
        {}["setting"]  # type: ignore[index]
    except KeyError:
        raise ValueError("cannot configure") from None
    raise AssertionError("unreachable")


def _context_failing_factory() -> Thing:
    try:
        {}["setting"]  # type: ignore[index]
    except KeyError:
        raise ValueError("cannot configure")  # noqa: B904 - the context is the point
    raise AssertionError("unreachable")


FACTORY_ACCESSES = [
    pytest.param(lambda db: db(), id="call"),
    pytest.param(lambda db: db.ping(), id="method"),
    pytest.param(lambda db: db.label, id="attribute"),
]

SCOPES = [
    pytest.param(None, id="thread-local"),
    pytest.param(lambda: "k", id="scoped"),
]


@pytest.mark.parametrize("access", FACTORY_ACCESSES)
@pytest.mark.parametrize("scopefunc", SCOPES)
def test_failing_factory_traceback_hides_the_lookup_miss(
    access: Callable[[Any], object], scopefunc: Callable[[], Any] | None
) -> None:
    """A failing factory is not reported "during handling of" the internal miss."""
    db = scoped_session(_failing_factory, scopefunc, class_=Thing)

    with pytest.raises(ValueError, match="cannot connect") as caught:
        access(db)

    assert caught.value.__context__ is None
    text = "".join(traceback.format_exception(caught.value))
    assert "During handling" not in text


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_failing_factory_keeps_its_own_context(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """The factory's own exception context survives; only the miss is dropped."""
    db = scoped_session(_context_failing_factory, scopefunc, class_=Thing)

    with pytest.raises(ValueError, match="cannot configure") as caught:
        db.ping()

    context = caught.value.__context__
    assert isinstance(context, KeyError)
    assert ("setting",) == context.args
    assert context.__context__ is None


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_failing_factory_suppressed_context_stays_suppressed(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """A factory raising ``from None`` still shows no chained exception."""
    db = scoped_session(_chained_failing_factory, scopefunc, class_=Thing)

    with pytest.raises(ValueError, match="cannot configure") as caught:
        db.label  # noqa: B018 - the attribute access is the test

    assert caught.value.__suppress_context__
    assert "During handling" not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ThreadLocalRegistry(42), "createfunc must be callable, got 42"),  # type: ignore[arg-type]
        (
            lambda: ScopedRegistry("x", lambda: 1),  # type: ignore[arg-type]
            "createfunc must be callable, got 'x'",
        ),
        (lambda: ScopedRegistry(Thing, "key"), "scopefunc must be callable, got 'key'"),  # type: ignore[arg-type]
    ],
)
def test_bad_registry_arguments_are_named(
    build: Callable[[], object], message: str
) -> None:
    """Registries reject non-callables with a message showing what was passed."""
    with pytest.raises(TypeError, match=message):
        build()
