"""Calls that ``mypy --strict`` must reject: each marked line is one error."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from scoped import scoped_session


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


db = scoped_session(sessionmaker(create_engine("sqlite://")))

db.get(User)  # error: call-arg
db.add_all(User())  # error: arg-type
db.autoflush = "yes"  # error: assignment
db.no_such_method()  # error: attr-defined
name: int = db.get_one(User, 1).name  # error: assignment
