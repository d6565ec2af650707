"""Adoption by rebinding SQLAlchemy's names, and the rest of its class contract."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa
import sqlalchemy.ext.asyncio as sa_asyncio
from models import User
from sqlalchemy import event, orm
from sqlalchemy.ext.asyncio import scoping as sa_async_scoping
from sqlalchemy.orm import Session, scoping, sessionmaker

import scoped
import scoped.asyncio
import scoped.sqlalchemy

#: SQLAlchemy's classes, read before any test rebinds their names; held as
#: attributes, since install() rebinds module globals that name them.
SA = types.SimpleNamespace(
    scoped=orm.scoped_session, async_scoped=sa_asyncio.async_scoped_session
)


@pytest.fixture(autouse=True)
def _never_left_installed() -> Iterator[None]:
    yield
    while scoped.sqlalchemy.is_installed():
        scoped.sqlalchemy.uninstall()
        pytest.fail("a test left scoped.sqlalchemy installed")


def _public_names() -> list[object]:
    return [
        orm.scoped_session,
        scoping.scoped_session,
        scoping.ScopedSession,
        sa_asyncio.async_scoped_session,
        sa_async_scoping.async_scoped_session,
    ]


def test_install_rebinds_the_public_names_and_uninstall_restores_them() -> None:
    """install() makes every public name ours; uninstall() gives them back."""
    scoped.sqlalchemy.install()
    try:
        assert [
            scoped.scoped_session,
            scoped.scoped_session,
            scoped.scoped_session,
            scoped.asyncio.async_scoped_session,
            scoped.asyncio.async_scoped_session,
        ] == _public_names()
    finally:
        scoped.sqlalchemy.uninstall()

    assert [SA.scoped] * 3 + [SA.async_scoped] * 2 == _public_names()


def test_sessions_built_through_the_rebound_name_are_ours_and_sqlalchemys(
    engine: sa.Engine,
) -> None:
    """A library calling ``sa_orm.scoped_session(...)`` gets ours, which still
    passes SQLAlchemy's isinstance check and takes session events."""
    with scoped.sqlalchemy.installed():
        db = orm.scoped_session(sessionmaker(engine), lambda: "one scope")
        again = orm.scoped_session(sessionmaker(engine))
    commits: list[Session] = []
    event.listen(db, "after_commit", commits.append)

    assert isinstance(cast(object, db), scoped.scoped_session)
    assert isinstance(cast(object, again), scoped.scoped_session)
    assert isinstance(db, SA.scoped)
    db.execute(sa.text("select 1"))
    db.commit()
    assert [db()] == commits
    db.remove()


def test_modules_that_imported_the_name_are_rebound_and_restored() -> None:
    """``from sqlalchemy.orm import scoped_session`` done earlier follows too."""
    module = types.ModuleType("library_using_scoped_session")
    module.scoped_session = orm.scoped_session  # type: ignore[attr-defined]
    module.async_scoped_session = sa_asyncio.async_scoped_session  # type: ignore[attr-defined]
    module.unrelated = orm.sessionmaker  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        with scoped.sqlalchemy.installed():
            assert scoped.scoped_session is module.scoped_session
            assert scoped.asyncio.async_scoped_session is module.async_scoped_session
            assert orm.sessionmaker is module.unrelated
        assert SA.scoped is module.scoped_session
        assert SA.async_scoped is module.async_scoped_session
    finally:
        del sys.modules[module.__name__]


def test_sqlalchemys_own_modules_keep_its_classes() -> None:
    """Session events test ``isinstance(target, scoped_session)`` with the name
    imported in ``sqlalchemy.orm.events``: it must stay SQLAlchemy's class."""
    from sqlalchemy.orm import events

    with scoped.sqlalchemy.installed():
        assert SA.scoped is events.scoped_session  # type: ignore[attr-defined]


def test_installs_nest_and_an_unmatched_uninstall_is_refused() -> None:
    """Each install() needs its uninstall(); one too many is an error."""
    scoped.sqlalchemy.install()
    scoped.sqlalchemy.install()
    scoped.sqlalchemy.uninstall()
    assert scoped.scoped_session is orm.scoped_session  # type: ignore[comparison-overlap]
    scoped.sqlalchemy.uninstall()
    assert SA.scoped is orm.scoped_session

    with pytest.raises(RuntimeError, match="without install"):
        scoped.sqlalchemy.uninstall()


def test_a_name_rebound_again_meanwhile_is_left_alone() -> None:
    """uninstall() restores only names that still hold what install() put."""

    class Mine:
        pass

    scoped.sqlalchemy.install()
    try:
        orm.scoped_session = Mine  # type: ignore[assignment,misc]
    finally:
        scoped.sqlalchemy.uninstall()
    try:
        assert Mine is orm.scoped_session  # type: ignore[comparison-overlap]
        assert SA.scoped is scoping.scoped_session
    finally:
        orm.scoped_session = SA.scoped  # type: ignore[misc]


def test_async_name_builds_ours(tmp_path: Path) -> None:
    """``async_scoped_session(factory, scopefunc=current_task)`` gives ours."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"

    async def main() -> None:
        engine = sa_asyncio.create_async_engine(url)
        with scoped.sqlalchemy.installed():
            db = sa_asyncio.async_scoped_session(
                sa_asyncio.async_sessionmaker(engine),
                scopefunc=asyncio.current_task,
            )
        assert isinstance(db, scoped.asyncio.async_scoped_session)
        assert isinstance(db, SA.async_scoped)
        assert 1 == await db.scalar(sa.text("select 1"))
        await db.remove()
        await engine.dispose()

    asyncio.run(main())


def test_scoped_sqlalchemy_fixture(scoped_sqlalchemy: None) -> None:
    """The pytest fixture installs for the test that asks for it."""
    assert scoped.sqlalchemy.is_installed()
    assert scoped.scoped_session is orm.scoped_session  # type: ignore[comparison-overlap]


def _run_python(code: str, tmp_path: Path) -> str:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    return done.stdout


def test_names_rebound_by_hand_before_the_first_session(tmp_path: Path) -> None:
    """Rebinding the names before scoped ever looked up SQLAlchemy's class
    (a hand patch, then install()) still gives sessions SQLAlchemy accepts."""
    out = _run_python(
        """
        import sqlalchemy.orm as sa_orm
        from sqlalchemy import event
        from sqlalchemy.orm import scoping
        import scoped
        import scoped.sqlalchemy

        original = scoping.scoped_session
        sa_orm.scoped_session = scoping.scoped_session = scoped.scoped_session
        scoping.ScopedSession = scoped.scoped_session
        db = sa_orm.scoped_session(sa_orm.sessionmaker())
        event.listen(db, "after_commit", lambda session: None)
        scoped.sqlalchemy.install()
        scoped.sqlalchemy.uninstall()
        print(isinstance(db, original), isinstance(db, scoped.scoped_session))
        """,
        tmp_path,
    )
    assert "True True" == out.strip()


def test_pytest_option_installs_for_the_whole_run(tmp_path: Path) -> None:
    """``pytest --scoped-sqlalchemy`` rebinds before test modules import."""
    (tmp_path / "test_peer.py").write_text(
        textwrap.dedent(
            """
            from sqlalchemy.orm import scoped_session, sessionmaker
            import scoped

            db = scoped_session(sessionmaker())

            def test_it_is_ours():
                assert isinstance(db, scoped.scoped_session)
            """
        )
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("--scoped-sqlalchemy", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_classmethods_work_on_the_classes_themselves() -> None:
    """``scoped_session.object_session`` and ``identity_key`` are Session's."""
    user = User(id=5, name="a")
    session = Session()
    session.add(user)

    for cls in (scoped.scoped_session, scoped.asyncio.async_scoped_session):
        assert session is cls.object_session(user)
        assert Session.identity_key(User, 5) == cls.identity_key(User, 5)
    with pytest.raises(AttributeError, match="no attribute 'object_sessions'"):
        scoped.scoped_session.object_sessions  # type: ignore[attr-defined]  # noqa: B018
    session.close()


class Plain:
    """A session-like class without close()."""


def test_a_factory_without_close_is_accepted_and_remove_says_why_it_fails() -> None:
    """As in SQLAlchemy, a class without close() is accepted; remove() then
    discards the object and raises an error naming close_method."""
    db = scoped.scoped_session(Plain, log=False)
    first = db()

    with pytest.raises(TypeError, match="close_method") as caught:
        db.remove()

    assert "Plain has no close() method" in str(caught.value)
    assert first is not db()
    db.registry.clear()


def test_an_explicit_close_method_that_names_nothing_is_refused() -> None:
    """Naming a close method the class lacks fails at construction."""
    with pytest.raises(TypeError, match="close_method='close', but Plain"):
        scoped.scoped_session(Plain, close_method="close")
