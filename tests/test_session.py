"""scoped_session itself: drop-in API, events, target inference, bad arguments."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, cast

import pytest
import sqlalchemy as sa
from models import User
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm
from sqlalchemy.orm import Query, Session, sessionmaker

import scoped
from scoped import (
    AlreadyPresentError,
    ScopedRegistry,
    ScopedWarning,
    ThreadLocalRegistry,
    scoped_session,
)


class Client:
    """A session-like class unrelated to SQLAlchemy."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.closed = False

    def get(self, path: str) -> str:
        """Fetch *path*."""
        return f"{self.name}:{path}"

    def close(self) -> None:
        """Release the client."""
        self.closed = True


def make_client() -> Client:
    """A factory whose product only its annotation tells."""
    return Client("annotated")


def test_is_a_sqlalchemy_scoped_session(db: scoped_session[Session]) -> None:
    """With Session factories it is an instance of SQLAlchemy's scoped_session."""
    assert isinstance(cast(object, db), orm.scoped_session)
    assert isinstance(db, scoped_session)


def test_plain_classes_are_not_sqlalchemy_scoped_sessions() -> None:
    """A non-Session target does not pretend to be SQLAlchemy's scoped_session."""
    client = scoped_session(Client)

    assert not isinstance(cast(object, client), orm.scoped_session)


def test_event_listen_fires_for_every_session_it_makes(
    db: scoped_session[Session], in_threads: Callable[..., list[Any]]
) -> None:
    """event.listen(db, "after_commit", fn) fires for every thread's session."""
    committed: list[Session] = []
    sa.event.listen(db, "after_commit", committed.append)

    def work(_: int) -> Session:
        db.add(User(name=threading.current_thread().name))
        db.commit()
        session = db()
        db.remove()
        return session

    sessions = in_threads(2, work)
    db.commit()

    assert 3 == len(committed)
    assert {id(session) for session in [*sessions, db()]} == {
        id(session) for session in committed
    }


def test_threads_never_see_each_others_session(
    db: scoped_session[Session],
    engine: sa.Engine,
    in_threads: Callable[..., list[Any]],
) -> None:
    """Concurrent threads each work in their own session through the proxies."""
    count = 8
    barrier = threading.Barrier(count, timeout=10)

    def work(index: int) -> Session:
        db.info["owner"] = index
        db.add(User(name=f"user-{index}"))
        barrier.wait()  # every thread has a pending object now
        assert {"owner": index} == db.info
        assert [f"user-{index}"] == [user.name for user in db.new]
        session = db()
        db.remove()
        return session

    sessions = in_threads(count, work)

    assert count == len({id(session) for session in sessions})
    assert not db.registry.has()
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]


def test_scoped_session_alias() -> None:
    """ScopedSession is another name for scoped_session, as in SQLAlchemy."""
    assert scoped.ScopedSession is scoped_session


def test_session_factory_and_registry(engine: sa.Engine) -> None:
    """session_factory is what was passed; registry holds the current session."""
    factory = sessionmaker(engine)
    threaded = scoped_session(factory)
    keyed = scoped_session(factory, lambda: "k")

    assert factory is threaded.session_factory
    assert isinstance(threaded.registry, ThreadLocalRegistry)
    assert isinstance(keyed.registry, ScopedRegistry)
    assert threaded.registry() is threaded()
    assert keyed.registry() is keyed()
    assert threaded() is not keyed()
    keyed.remove()


def test_falsy_scopefunc_means_thread_local(engine: sa.Engine) -> None:
    """Like SQLAlchemy, a falsy scopefunc selects the thread-local registry."""
    db = scoped_session(sessionmaker(engine), None)

    assert isinstance(db.registry, ThreadLocalRegistry)


def test_call_with_arguments_creates_with_them(db: scoped_session[Session]) -> None:
    """db(**kw) passes the arguments to the factory when no session exists yet."""
    session = db(autoflush=False, info={"tag": 1})

    assert session is db()
    assert session.autoflush is False
    assert {"tag": 1} == db.info


def test_call_with_arguments_when_present_raises(db: scoped_session[Session]) -> None:
    """db(**kw) after the session exists raises an InvalidRequestError that
    begins with SQLAlchemy's own message and then names the arguments."""
    session = db()

    with pytest.raises(sa_exc.InvalidRequestError, match="autoflush") as caught:
        db(autoflush=False)

    assert isinstance(caught.value, AlreadyPresentError)
    assert str(caught.value).startswith(
        "Scoped session is already present; no new arguments may be specified."
    )
    assert session is db()
    assert session.autoflush is True


def test_call_with_arguments_when_present_for_plain_classes() -> None:
    """Without SQLAlchemy sessions the error is scoped's AlreadyPresentError."""
    client = scoped_session(Client)
    client()

    with pytest.raises(AlreadyPresentError, match="name"):
        client(name="other")
    assert "default:/x" == client.get("/x")


def test_configure_affects_later_sessions_without_warning(
    db: scoped_session[Session],
) -> None:
    """configure() before any session exists is silent and applies to new ones."""
    db.configure(autoflush=False)

    assert db().autoflush is False


def test_configure_warns_when_a_session_exists(db: scoped_session[Session]) -> None:
    """configure() with a session present warns with an SAWarning subclass,
    in words that begin with SQLAlchemy's."""
    existing = db()

    with pytest.warns(sa_exc.SAWarning, match="created from now on") as record:
        db.configure(autoflush=False)

    assert issubclass(record[0].category, ScopedWarning)
    assert str(record[0].message).startswith(
        "At least one scoped session is already present."
    )
    assert existing.autoflush is True
    db.remove()
    assert db().autoflush is False


def test_configure_needs_a_configurable_factory() -> None:
    """configure() on a plain factory says what the factory was."""
    client = scoped_session(Client)

    with pytest.raises(TypeError, match="Client"):
        client.configure(name="x")


def test_remove_closes_then_discards(db: scoped_session[Session]) -> None:
    """remove() closes the current session, and the next use creates a new one."""
    user = User(name="a")
    db.add(user)
    first = db()

    db.remove()

    assert not db.registry.has()
    assert orm.object_session(user) is None  # closing expunged it
    assert first is not db()


def test_remove_without_a_session_does_nothing(engine: sa.Engine) -> None:
    """remove() on an empty scope neither creates nor fails."""
    made: list[Session] = []

    def factory() -> Session:
        made.append(Session(engine))
        return made[-1]

    db = scoped_session(factory)

    db.remove()

    assert [] == made
    assert not db.registry.has()


class BrokenCloseSession(Session):
    """A Session whose close() fails, as when the connection is already gone."""

    def close(self) -> None:
        super().close()
        raise RuntimeError("connection lost while closing")


def test_remove_discards_even_when_close_fails(engine: sa.Engine) -> None:
    """A failing close() propagates, but the broken session is still discarded."""
    db = scoped_session(sessionmaker(engine, class_=BrokenCloseSession))
    broken = db()

    with pytest.raises(RuntimeError, match="connection lost"):
        db.remove()

    assert not db.registry.has()
    assert broken is not db()
    db.registry.clear()


def test_remove_with_close_method_none_only_discards() -> None:
    """close_method=None makes remove() discard without closing."""
    client = scoped_session(Client, close_method=None)
    first = client()

    client.remove()

    assert not first.closed
    assert first is not client()


def test_remove_uses_the_named_close_method() -> None:
    """close_method names the method remove() calls."""

    class Pool:
        def __init__(self) -> None:
            self.released = False

        def release(self) -> None:
            self.released = True

    pools = scoped_session(Pool, close_method="release")
    pool = pools()

    pools.remove()

    assert pool.released


def test_remove_closes_each_object_with_its_own_close() -> None:
    """The default close is looked up on the object, not on the factory's
    class: a factory that returns a subclass has the subclass's close run."""

    class Base:
        def __init__(self) -> None:
            self.closed_by = ""

        def close(self) -> None:
            self.closed_by = "base"

    class Special(Base):
        def close(self) -> None:
            self.closed_by = "special"

    made: list[Base] = []

    def make() -> Base:
        made.append(Special() if len(made) % 2 else Base())
        return made[-1]

    db = scoped_session(make, class_=Base)
    for _ in range(2):
        db()
        db.remove()

    assert ["base", "special"] == [obj.closed_by for obj in made]


def test_query_property(
    db: scoped_session[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model.query = db.query_property() queries through the current session."""
    db.add_all([User(name="b"), User(name="a")])
    db.commit()

    monkeypatch.setattr(User, "query", db.query_property(), raising=False)
    query = User.query  # type: ignore[attr-defined]

    assert isinstance(query, Query)
    assert db() is query.session
    assert ["a", "b"] == [a.name for a in query.order_by(User.name)]


class NamedQuery(Query[User]):
    """A custom query class with one extra method."""

    def named(self, name: str) -> NamedQuery:
        return self.filter_by(name=name)


def test_query_property_with_query_cls(
    db: scoped_session[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """query_property(query_cls) builds that class of query on the current session."""
    db.add_all([User(name="a"), User(name="b")])
    db.commit()

    monkeypatch.setattr(User, "query", db.query_property(NamedQuery), raising=False)
    query = User.query  # type: ignore[attr-defined]

    assert isinstance(query, NamedQuery)
    assert db() is query.session
    assert ["a"] == [a.name for a in query.named("a")]


class TracingSession(Session):
    """A Session subclass with one extra public method."""

    def trace(self) -> str:
        """Name this session's class."""
        return type(self).__name__


def _proxies(db: scoped_session[Any], name: str) -> bool:
    return name in vars(type(db))


def test_target_from_sessionmaker_class() -> None:
    """A sessionmaker's class_ decides what is proxied."""
    db = scoped_session(sessionmaker(class_=TracingSession))

    assert "TracingSession" == db.trace()  # type: ignore[attr-defined]
    assert isinstance(cast(object, db), orm.scoped_session)


def test_target_from_a_class() -> None:
    """A class used as the factory is the target."""
    client = scoped_session(Client)

    assert "default:/x" == client.get("/x")


def test_target_from_a_partial() -> None:
    """functools.partial of a class proxies that class."""
    client = scoped_session(functools.partial(Client, name="partial"))

    assert "partial:/x" == client.get("/x")


def test_target_from_a_return_annotation() -> None:
    """A factory function's return annotation names the target."""
    client = scoped_session(make_client)

    assert "annotated:/x" == client.get("/x")


def test_a_lambda_gets_session_proxies(engine: sa.Engine) -> None:
    """A factory that tells nothing gets SQLAlchemy Session proxies."""
    db = scoped_session(lambda: Session(engine))

    assert isinstance(cast(object, db), orm.scoped_session)
    assert _proxies(db, "execute")
    assert 1 == db.scalar(sa.text("SELECT 1"))
    db.remove()


def test_explicit_class_wins() -> None:
    """class_= overrides whatever could be inferred from the factory."""
    client = scoped_session(lambda: Client("explicit"), class_=Client)

    assert "explicit:/x" == client.get("/x")
    assert not isinstance(cast(object, client), orm.scoped_session)


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        pytest.param({"session_factory": 42}, "42 (a int)", id="factory"),
        pytest.param(
            {"session_factory": Client, "scopefunc": "request"},
            "'request' (a str)",
            id="scopefunc",
        ),
        pytest.param(
            {"session_factory": Client, "close_method": "shutdown"},
            "close_method='shutdown', but Client has no such method",
            id="close_method",
        ),
    ],
)
def test_bad_arguments_fail_at_construction(
    arguments: dict[str, Any], shown: str
) -> None:
    """Bad construction arguments raise TypeError saying what was passed."""
    with pytest.raises(TypeError) as caught:
        scoped_session(**arguments)

    assert shown in str(caught.value)


def test_bad_class_shows_the_value() -> None:
    """A class_ that is not a class is shown in the error."""
    instance = Client()

    with pytest.raises(TypeError, match="class_ must be a class") as caught:
        scoped_session(Client, class_=instance)  # type: ignore[call-overload]

    assert repr(instance) in str(caught.value)
