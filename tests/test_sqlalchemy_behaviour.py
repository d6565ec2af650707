"""SQLAlchemy Session behaviours, exercised through the generated proxies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from models import Note, User
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Query, Session, make_transient, sessionmaker

from scoped import scoped_session


class UserQuery(Query[User]):
    """A query class with one extra method."""

    def named(self, name: str) -> UserQuery:
        return self.filter_by(name=name)


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0


def _checked_out(engine: sa.Engine) -> int:
    return engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]


def test_close_returns_the_connection_and_expunges(
    db: scoped_session[Session], engine: sa.Engine
) -> None:
    """close() checks the connection back in, expunges everything, stays usable."""
    db.add(User(name="ada"))
    db.commit()
    user = db.scalars(sa.select(User)).one()
    session = db()
    assert 1 == _checked_out(engine)
    assert user in db

    db.close()

    assert 0 == _checked_out(engine)
    assert user not in db
    assert [] == list(db)
    assert session is db()
    assert ["ada"] == db.scalars(sa.select(User.name)).all()


def test_closed_session_refuses_work_without_close_resets_only(
    engine: sa.Engine,
) -> None:
    """With close_resets_only=False a closed session refuses work until remove()."""
    db = scoped_session(sessionmaker(engine, close_resets_only=False))
    db.execute(sa.select(1))
    closed = db()

    db.close()

    with pytest.raises(sa_exc.InvalidRequestError, match="permanently closed"):
        db.execute(sa.select(1))
    assert closed is db()

    db.remove()

    assert closed is not db()
    assert 1 == db.scalar(sa.select(1))
    db.remove()
    assert 0 == _checked_out(engine)


def test_reset_keeps_a_non_resetting_session_usable(engine: sa.Engine) -> None:
    """reset() releases connection and objects yet keeps a non-resetting session."""
    db = scoped_session(sessionmaker(engine, close_resets_only=False))
    db.add(User(name="ada"))
    db.commit()
    user = db.scalars(sa.select(User)).one()
    session = db()

    db.reset()

    assert 0 == _checked_out(engine)
    assert user not in db
    assert session is db()
    assert 1 == db.scalar(sa.select(sa.func.count(User.id)))
    db.remove()


def test_make_transient_round_trip(
    db: scoped_session[Session], engine: sa.Engine
) -> None:
    """A loaded object made transient with its key cleared is inserted as a new row."""
    db.add(User(name="ada"))
    db.commit()
    user = db.scalars(sa.select(User)).one()
    old_id = user.id

    make_transient(user)
    assert db.object_session(user) is None
    user.id = None  # type: ignore[assignment]
    user.name = "ada (copy)"
    db.add(user)
    db.commit()

    assert old_id != user.id
    assert [(old_id, "ada"), (user.id, "ada (copy)")] == [
        tuple(row)
        for row in db.execute(sa.select(User.id, User.name).order_by(User.id))
    ]
    assert 2 == _count(engine, User.__table__)  # type: ignore[arg-type]


OpenDb = Callable[..., scoped_session[Session]]


@pytest.fixture(params=["sessionmaker", "call"])
def open_db(request: pytest.FixtureRequest, engine: sa.Engine) -> Iterator[OpenDb]:
    """Open a scoped_session with options given to the factory or to db(**kw)."""
    opened: list[scoped_session[Session]] = []

    def open_(**options: Any) -> scoped_session[Session]:
        if request.param == "sessionmaker":
            db = scoped_session(sessionmaker(engine, **options))
        else:
            db = scoped_session(sessionmaker(engine))
            db(**options)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        db.remove()


@pytest.mark.parametrize("autoflush", [True, False])
def test_autoflush_option(open_db: OpenDb, autoflush: bool) -> None:
    """autoflush decides whether a pending object is visible to a query."""
    db = open_db(autoflush=autoflush)
    db.add(User(name="pending"))

    visible = db.scalar(sa.select(sa.func.count(User.id)))

    assert autoflush is db.autoflush
    assert (1 if autoflush else 0) == visible


@pytest.mark.parametrize("expire_on_commit", [True, False])
def test_expire_on_commit_option(open_db: OpenDb, expire_on_commit: bool) -> None:
    """expire_on_commit decides whether attributes are unloaded by commit()."""
    db = open_db(expire_on_commit=expire_on_commit)
    user = User(name="ada")
    db.add(user)

    db.commit()

    assert expire_on_commit == ("name" in sa.inspect(user).unloaded)


def test_info_option(open_db: OpenDb) -> None:
    """info given at construction is the session's info dictionary."""
    db = open_db(info={"tenant": "acme"})

    assert {"tenant": "acme"} == db.info
    db.info["request"] = 7
    assert {"tenant": "acme", "request": 7} == db().info


def test_query_cls_option(open_db: OpenDb) -> None:
    """query_cls decides the class db.query() builds."""
    db = open_db(query_cls=UserQuery)
    db.add(User(name="ada"))

    query = db.query(User)

    assert isinstance(query, UserQuery)
    assert ["ada"] == [user.name for user in query.named("ada")]


@pytest.fixture
def two_engines(tmp_path: Path) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """Two SQLite files: users live in one, notes in the other."""
    users = sa.create_engine(f"sqlite:///{tmp_path / 'users.db'}")
    notes = sa.create_engine(f"sqlite:///{tmp_path / 'notes.db'}")
    User.__table__.create(users)  # type: ignore[attr-defined]
    Note.__table__.create(notes)  # type: ignore[attr-defined]
    yield users, notes
    users.dispose()
    notes.dispose()


@pytest.mark.parametrize("how", ["sessionmaker", "call"])
def test_binds_option_routes_classes_to_engines(
    two_engines: tuple[sa.Engine, sa.Engine], how: str
) -> None:
    """binds sends each mapped class to its own engine, through the proxies."""
    users, notes = two_engines
    binds = {User: users, Note: notes}
    if how == "sessionmaker":
        db = scoped_session(sessionmaker(binds=binds))
    else:
        db = scoped_session(sessionmaker())
        db(binds=binds)

    db.add_all([User(name="ada"), Note(text="hello")])
    db.commit()

    assert users is db.get_bind(User)
    assert notes is db.get_bind(Note)
    assert (1, 1) == (
        _count(users, User.__table__),  # type: ignore[arg-type]
        _count(notes, Note.__table__),  # type: ignore[arg-type]
    )
    assert (["ada"], ["hello"]) == (
        db.scalars(sa.select(User.name)).all(),
        db.scalars(sa.select(Note.text)).all(),
    )
    db.remove()
    assert (0, 0) == (
        users.pool.checkedout(),  # type: ignore[attr-defined]
        notes.pool.checkedout(),  # type: ignore[attr-defined]
    )
