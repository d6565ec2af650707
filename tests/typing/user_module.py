"""A user's module that ``mypy --strict`` must accept, as it does for SQLAlchemy.

Each ``reveal_type`` is matched, in order, by ``tests/test_typing.py``; never
imported at run time.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from typing_extensions import reveal_type

from scoped import ScopedSession, scoped_session


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class MySession(Session):
    def greeting(self) -> str:
        return "hello"


engine = create_engine("sqlite://")
db = scoped_session(sessionmaker(engine))


def names() -> list[str]:
    users: Sequence[User] = db.execute(select(User)).scalars().all()
    return [user.name for user in users]


def add(name: str) -> User:
    user = User(name=name)
    db.add(user)
    db.flush()
    db.commit()
    return user


def settings() -> None:
    db.autoflush = False
    db.bind = engine
    with db.no_autoflush, db.begin_nested():
        db.expire_all()
    db.remove()


reveal_type(db.get(User, 1))
reveal_type(db.get_one(User, 1))
reveal_type(db.execute(select(User)).scalars().all())
reveal_type(db.scalars(select(User.name)).first())
reveal_type(db.query(User).first())
reveal_type(db())
reveal_type(scoped_session.object_session(User()))
reveal_type(scoped_session[MySession](sessionmaker(engine, class_=MySession))())
mine: ScopedSession[MySession] = scoped_session(MySession)
reveal_type(mine())
reveal_type(mine().greeting())
