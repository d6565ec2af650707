"""The forwarding contract of generated proxies: exact arguments, honest errors."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from scoped import scoped_session

SCOPES = [
    pytest.param(None, id="thread-local"),
    pytest.param(threading.get_ident, id="scopefunc"),
]

_EMPTY: dict[str, Any] = {}


class Shape:
    """The proxied class: only its signatures matter."""

    def get(
        self,
        entity: Any,
        ident: Any,
        *,
        options: Any = None,
        populate_existing: bool = False,
        with_for_update: Any = None,
        identity_token: Any = None,
        execution_options: Any = _EMPTY,
        bind_arguments: Any = None,
    ) -> Any:
        """Shaped like ``Session.get``."""

    def get_bind(self, mapper: Any = None, *, clause: Any = None, **kw: Any) -> Any:
        """Shaped like ``Session.get_bind``: named defaults plus ``**kw``."""

    def only(self, a: int, b: int = 2, /, c: int = 3, *, d: int = 4) -> Any:
        """Positional-only parameters, one of them defaulted."""

    def spread(self, a: int, b: int = 2, *rest: int, k: int = 1, **extra: int) -> Any:
        """``*args`` after a defaulted parameter, keywords after it."""

    def clash(
        this,  # noqa: N805 - a target's parameter may be called self
        self: Any,
        session: Any = None,
        error: Any = None,
        scopefunc: Any = None,
    ) -> Any:
        """Parameters named like the generator's own locals."""

    def close(self) -> None:
        """Called by ``remove()``."""


class Recorder:
    """Stands in for a ``Shape``: records every call made on it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., str]:
        def record(*args: Any, **kwargs: Any) -> str:
            self.calls.append((name, args, kwargs))
            return name

        return record


def _recording(scopefunc: Callable[[], Any] | None) -> Any:
    return scoped_session(Recorder, scopefunc, class_=Shape)


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_defaulted_arguments_are_passed_explicitly_by_keyword(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """db.get("Cls", 5) reaches the target with every default spelled out."""
    db = _recording(scopefunc)

    db.get("Cls", 5)

    expected = {
        "options": None,
        "populate_existing": False,
        "with_for_update": None,
        "identity_token": None,
        "execution_options": _EMPTY,
        "bind_arguments": None,
    }
    assert [("get", ("Cls", 5), expected)] == db().calls


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_session_get_forwards_as_sqlalchemy_pins_it(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """Session proxies pass Session.get's own defaults, as SQLAlchemy's tests pin."""
    db: Any = scoped_session(Recorder, scopefunc, class_=Session)

    db.get("Cls", 5)

    params = inspect.signature(Session.get).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    assert [("get", ("Cls", 5), defaults)] == db().calls
    assert {"options", "populate_existing", "with_for_update"} <= defaults.keys()


class EagerSession(Session):
    """Overrides a default of ``Session.get``."""

    def get(  # type: ignore[override]
        self, entity: Any, ident: Any, *, populate_existing: bool = True, **kw: Any
    ) -> Any:
        return populate_existing


def test_a_subclass_override_keeps_its_own_defaults(engine: sa.Engine) -> None:
    """Proxies follow the factory's class: its override's defaults apply (a
    proxy shaped like Session.get would pass populate_existing=False)."""
    db = scoped_session(sessionmaker(engine, class_=EagerSession))

    # Type checkers see Session.get, not the override.
    assert db.get("Cls", 5) is True  # type: ignore[arg-type]
    assert inspect.signature(EagerSession.get) == inspect.signature(type(db).get)
    db.remove()


def _sqlalchemy_methods() -> list[str]:
    """The methods SQLAlchemy's scoped_session proxies, dunders aside."""
    own = {"configure", "query_property", "remove"}
    return sorted(
        name
        for name, member in vars(sa.orm.scoped_session).items()
        if inspect.isfunction(member) and not name.startswith("_") and name not in own
    )


@pytest.mark.parametrize("name", _sqlalchemy_methods())
def test_calls_reach_the_session_as_sqlalchemys_proxies_send_them(name: str) -> None:
    """With the required arguments only, both proxies make the same call."""
    method = vars(sa.orm.scoped_session)[name]
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    required = [
        p
        for p in list(inspect.signature(method).parameters.values())[1:]
        if p.default is p.empty and p.kind in positional
    ]
    args = [f"arg{i}" for i in range(len(required))]
    theirs, ours = mock.Mock(), mock.Mock()

    getattr(sa.orm.scoped_session(lambda: theirs), name)(*args)  # type: ignore[arg-type]
    getattr(scoped_session(lambda: ours, log=False), name)(*args)

    assert theirs.mock_calls == ours.mock_calls
    assert 1 == len(ours.mock_calls)


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_extra_keywords_pass_through(scopefunc: Callable[[], Any] | None) -> None:
    """Named defaults always, extra keywords only when given, to a **kw target."""
    db = _recording(scopefunc)

    db.get_bind()
    db.get_bind("mapper", clause="c", shard="a", timeout=3)

    assert [
        ("get_bind", (), {"mapper": None, "clause": None}),
        (
            "get_bind",
            (),
            {"mapper": "mapper", "clause": "c", "shard": "a", "timeout": 3},
        ),
    ] == db().calls


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_positional_only_and_star_args_forward_exactly(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """Positional-only stay positional, *args keep their place, signatures match."""
    db = _recording(scopefunc)

    db.only(1)
    db.only(1, 5, 6, d=7)
    db.spread(1)
    db.spread(1, 2, 3, 4, k=5, x=6)

    assert [
        ("only", (1, 2), {"c": 3, "d": 4}),
        ("only", (1, 5), {"c": 6, "d": 7}),
        ("spread", (1, 2), {"k": 1}),
        ("spread", (1, 2, 3, 4), {"k": 5, "x": 6}),
    ] == db().calls
    for name in ("only", "spread"):
        expected = inspect.signature(getattr(Shape, name))
        assert expected == inspect.signature(getattr(type(db), name))


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_parameters_named_like_generated_locals(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """A target parameter called self, session, error or scopefunc is forwarded."""
    db = _recording(scopefunc)

    db.clash("me", session="s", error="e", scopefunc="f")

    kwargs = {"session": "s", "error": "e", "scopefunc": "f"}
    assert [("clash", ("me",), kwargs)] == db().calls


class BindRecordingSession(Session):
    """Overrides get_bind with the short signature SQLAlchemy's docs show."""

    def get_bind(self, mapper: Any = None, **kw: Any) -> Any:
        self.asked: dict[str, Any] = dict(kw, mapper=mapper)
        return super().get_bind(mapper, **kw)


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_get_bind_override_on_a_session_subclass(
    engine: sa.Engine, scopefunc: Callable[[], Any] | None
) -> None:
    """A get_bind(self, mapper=None, **kw) override works through the proxy."""
    db = scoped_session(sessionmaker(engine, class_=BindRecordingSession), scopefunc)

    assert engine is db.get_bind()
    assert {"mapper": None} == db().asked
    assert 1 == db.execute(sa.select(1)).scalar()
    db.remove()


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_session_proxies_reach_a_short_get_bind_override(
    engine: sa.Engine, scopefunc: Callable[[], Any] | None
) -> None:
    """Session's own get_bind keywords land in the override's **kw."""
    db: scoped_session[Any] = scoped_session(
        lambda: BindRecordingSession(engine), scopefunc
    )

    assert engine is db.get_bind()
    asked = db().asked
    assert asked.pop("mapper") is None
    assert {"clause", "bind"} <= asked.keys()
    db.remove()


class Flaky:
    """A target whose own members raise the lookup's miss exceptions."""

    created = 0
    owner: scoped_session[Flaky] | None = None
    unset: int  # declared, never assigned: reading it is an AttributeError

    def __init__(self) -> None:
        type(self).created += 1
        self.calls = 0

    @property
    def broken(self) -> int:
        """An attribute whose getter raises AttributeError."""
        self.calls += 1
        raise AttributeError("broken is not available")

    def refuse(self) -> None:
        """A method raising AttributeError."""
        self.calls += 1
        raise AttributeError("refused")

    def lookup(self, key: str) -> None:
        """A method raising KeyError, like a scope miss."""
        self.calls += 1
        raise KeyError(key)

    def mistype(self) -> None:
        """A method raising TypeError, like an unhashable scope key."""
        self.calls += 1
        raise TypeError("wrong type")

    def leave(self, error: type[BaseException]) -> None:
        """Remove this object from its scope, then fail like a miss would."""
        assert self.owner is not None
        self.owner.remove()
        raise error("left the scope")

    def close(self) -> None:
        """Called by ``remove()``."""


FLAKY_ACCESSES = [
    pytest.param(lambda db: db.broken, AttributeError, id="property"),
    pytest.param(lambda db: db.refuse(), AttributeError, id="method"),
    pytest.param(lambda db: db.lookup("k"), KeyError, id="key-error"),
    pytest.param(lambda db: db.mistype(), TypeError, id="type-error"),
]

MISS_ERRORS = [
    pytest.param(AttributeError, id="attribute-error"),
    pytest.param(KeyError, id="key-error"),
    pytest.param(TypeError, id="type-error"),
]


@pytest.fixture
def flaky() -> Callable[[Callable[[], Any] | None], Any]:
    """Make a scoped_session of Flaky with its creation count reset."""

    def make(scopefunc: Callable[[], Any] | None) -> Any:
        Flaky.created = 0
        Flaky.owner = scoped_session(Flaky, scopefunc)
        return Flaky.owner

    return make


@pytest.mark.parametrize("scopefunc", SCOPES)
@pytest.mark.parametrize(("access", "error"), FLAKY_ACCESSES)
def test_target_errors_are_not_lookup_misses(
    flaky: Callable[[Callable[[], Any] | None], Any],
    scopefunc: Callable[[], Any] | None,
    access: Callable[[Any], object],
    error: type[BaseException],
) -> None:
    """The target's own miss-like errors surface once each; one object only."""
    db = flaky(scopefunc)

    with pytest.raises(error) as first:  # the scope's first use: created here
        access(db)
    calls_after_first = db().calls
    with pytest.raises(error) as again:
        access(db)

    assert (1, 2) == (calls_after_first, db().calls)
    assert 1 == Flaky.created
    assert first.value.__context__ is None  # not raised "during" the miss
    assert str(first.value) == str(again.value)
    db.remove()


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_a_missing_instance_attribute_is_not_a_lookup_miss(
    flaky: Callable[[Callable[[], Any] | None], Any],
    scopefunc: Callable[[], Any] | None,
) -> None:
    """Reading an unset attribute fails in the proxy's frame, as itself."""
    db = flaky(scopefunc)
    db()

    with pytest.raises(AttributeError, match="unset"):
        _ = db.unset

    assert 1 == Flaky.created
    db.remove()


@pytest.mark.parametrize("scopefunc", SCOPES)
@pytest.mark.parametrize("error", MISS_ERRORS)
def test_a_target_that_leaves_its_scope_is_not_called_again(
    flaky: Callable[[Callable[[], Any] | None], Any],
    scopefunc: Callable[[], Any] | None,
    error: type[BaseException],
) -> None:
    """An error after the object removed itself propagates; no new object."""
    db = flaky(scopefunc)
    db()

    with pytest.raises(error, match="left the scope"):
        db.leave(error)

    assert 1 == Flaky.created
    assert not db.registry.has()


class Bag(dict[Any, int]):
    """A target whose methods are C code raising in the proxy's own frame."""

    def close(self) -> None:
        """Called by ``remove()``."""


class CountingKey:
    """A dict key that counts how often it is hashed."""

    def __init__(self) -> None:
        self.hashed = 0

    def __hash__(self) -> int:
        self.hashed += 1
        return 1


class CountingPairs:
    """An update() argument that counts its iterations; its second item is bad."""

    def __init__(self) -> None:
        self.iterated = 0

    def __iter__(self) -> Any:
        self.iterated += 1
        return iter([("a", 1), 5])


@pytest.mark.parametrize("scopefunc", SCOPES)
def test_errors_raised_by_c_methods_are_not_lookup_misses(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """KeyError and TypeError from a C method propagate at once; the object stays."""
    db: Any = scoped_session(Bag, scopefunc)
    bag = db()
    bag["x"] = 0  # an empty dict would not even hash the key
    key, pairs = CountingKey(), CountingPairs()

    with pytest.raises(KeyError) as caught:
        db.pop(key)
    with pytest.raises(TypeError):
        db.update(pairs)

    assert (key,) == caught.value.args
    assert (1, 1) == (key.hashed, pairs.iterated)
    assert bag is db()
    assert {"x": 0, "a": 1} == bag
    db.remove()
