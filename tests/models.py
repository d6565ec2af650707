"""Mapped classes shared by the tests; conftest creates their tables."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Note", "User"]


class Base(DeclarativeBase):
    """The declarative base of the test models."""


class User(Base):
    """A row in ``users``."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Note(Base):
    """A row in ``notes``; the binds tests keep it in another database."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]
