"""Adopt :mod:`scoped` everywhere at once: rebind SQLAlchemy's public names.

::

    import scoped.sqlalchemy

    scoped.sqlalchemy.install()

From then on ``sqlalchemy.orm.scoped_session`` (and
``sqlalchemy.orm.scoping.scoped_session``) is :class:`scoped.scoped_session`,
and ``sqlalchemy.ext.asyncio.async_scoped_session`` is
:class:`scoped.asyncio.async_scoped_session`, so libraries that build their own
scoped session, such as Flask-SQLAlchemy's ``sa_orm.scoped_session(...)``,
build ours. Modules that already imported one of the names
(``from sqlalchemy.orm import scoped_session``) have it rebound too.
:func:`uninstall` puts SQLAlchemy's classes back; :func:`installed` does both
around a block, and the pytest option ``--scoped-sqlalchemy`` (or the fixture
``scoped_sqlalchemy``) around a test run or a test.

What stays SQLAlchemy's: the classes themselves, which
``isinstance(db, sqlalchemy.orm.scoped_session)`` checks in SQLAlchemy's own
modules (session events) keep using, so our sessions pass those checks
whether the names were rebound before or after :mod:`scoped` was imported.
Modules first imported while installed keep our class after
:func:`uninstall`: only the names this module rebound are restored.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from scoped import _sqlalchemy

__all__ = ["install", "installed", "is_installed", "uninstall"]

#: The modules whose attributes name SQLAlchemy's classes for its users. Its
#: other modules keep the originals: they are SQLAlchemy's implementation.
_PUBLIC = frozenset(
    {
        "sqlalchemy.orm",
        "sqlalchemy.orm.scoping",
        "sqlalchemy.ext.asyncio",
        "sqlalchemy.ext.asyncio.scoping",
    }
)


@dataclass(frozen=True)
class _Rebinding:
    module: ModuleType
    name: str
    original: type
    replacement: type


_lock = threading.Lock()
_depth = 0
_rebound: list[_Rebinding] = []


def _replacements() -> dict[type, type]:
    """SQLAlchemy's classes, each mapped to the one that replaces it."""
    import sqlalchemy.orm  # the names to rebind live there

    from scoped.session import scoped_session

    original = _sqlalchemy.original_scoped_session()
    _sqlalchemy.remember_original(original)
    pairs: dict[type, type] = {original: scoped_session}
    try:
        import sqlalchemy.ext.asyncio  # noqa: F401
    except ImportError:  # pragma: no cover - SQLAlchemy without its asyncio extension
        return pairs
    from scoped.asyncio import async_scoped_session

    original_async = _sqlalchemy.original_async_scoped_session()
    _sqlalchemy.remember_original(original_async)
    pairs[original_async] = async_scoped_session
    return pairs


def _rebinds(module_name: str) -> bool:
    if module_name in _PUBLIC:
        return True
    top = module_name.partition(".")[0]
    return top not in {"sqlalchemy", "scoped"}


def _rebind_all(pairs: dict[type, type]) -> list[_Rebinding]:
    done: list[_Rebinding] = []
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(module, ModuleType) or not isinstance(namespace, dict):
            continue
        if not _rebinds(module_name):
            continue
        for name, value in list(namespace.items()):
            # Classes hash by identity; anything unhashable is not one of them.
            if not isinstance(value, type):
                continue
            replacement = pairs.get(value)
            if replacement is not None:
                setattr(module, name, replacement)
                done.append(_Rebinding(module, name, value, replacement))
    return done


def install() -> None:
    """Make SQLAlchemy's scoped-session names stand for :mod:`scoped`'s classes.

    Rebinds ``scoped_session`` and ``ScopedSession`` in ``sqlalchemy.orm`` and
    ``sqlalchemy.orm.scoping``, ``async_scoped_session`` in
    ``sqlalchemy.ext.asyncio`` and its ``scoping`` module, and every name in
    an already imported module (outside SQLAlchemy) that refers to one of
    SQLAlchemy's two classes. Calls nest: each needs its :func:`uninstall`.
    """
    global _depth  # noqa: PLW0603 - one process-wide installation
    with _lock:
        if _depth == 0:
            _rebound[:] = _rebind_all(_replacements())
        _depth += 1


def uninstall() -> None:
    """Undo :func:`install`: the names it rebound name SQLAlchemy's classes again.

    A name that was rebound once more since (to anything else) is left
    alone. Raises :class:`RuntimeError` when nothing is installed.
    """
    global _depth  # noqa: PLW0603 - one process-wide installation
    with _lock:
        if _depth == 0:
            msg = "uninstall() without install(): SQLAlchemy's names are unchanged"
            raise RuntimeError(msg)
        _depth -= 1
        if _depth:
            return
        for rebinding in reversed(_rebound):
            if vars(rebinding.module).get(rebinding.name) is rebinding.replacement:
                setattr(rebinding.module, rebinding.name, rebinding.original)
        _rebound.clear()


def is_installed() -> bool:
    """Tell whether :func:`install` is in effect."""
    return _depth > 0


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """:func:`install` for the duration of a ``with`` block."""
    install()
    try:
        yield
    finally:
        uninstall()
