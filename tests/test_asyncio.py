"""async_scoped_session: the task scope, closes on the loop, shutdown, parity."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import subprocess
import sys
import textwrap
import time
import uuid
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    MutableMapping,
)
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import pytest
import sqlalchemy as sa
import structlog
from models import Base, User
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool
from structlog.testing import capture_logs

import scoped
from scoped import scopes
from scoped.asyncio import async_scoped_session

_T = TypeVar("_T")

TASKS = 1000


def run(main: Callable[[], Awaitable[_T]]) -> _T:
    """Run the coroutine function *main* in a fresh event loop."""

    async def wrapper() -> _T:
        return await main()

    return asyncio.run(wrapper())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An aiosqlite URL of a fresh database file."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def asyncpg_url(pg_url: str) -> str:
    """The local PostgreSQL server through asyncpg; skips when it is down."""
    url = sa.make_url(pg_url).set(drivername="postgresql+asyncpg")
    return url.render_as_string(hide_password=False)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)]
)
def async_url(request: pytest.FixtureRequest) -> str:
    """aiosqlite on a file, then asyncpg on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("asyncpg_url"))


@pytest.fixture
def captured() -> Iterator[list[MutableMapping[str, Any]]]:
    """Lifecycle events of the registries created inside the test."""
    with capture_logs() as logs:
        yield logs
    structlog.reset_defaults()


@contextlib.asynccontextmanager
async def scoped_on(
    url: str, app: str | None = None
) -> AsyncIterator[tuple[AsyncEngine, async_scoped_session[AsyncSession]]]:
    """An engine on *url* with the test tables, and a task-scoped session.

    *app* tags PostgreSQL connections. The engine is disposed on the way
    out, also when the test fails.
    """
    # Named, since SQLAlchemy 2.0.35 still gives aiosqlite files a NullPool,
    # which keeps no count of checked-out connections.
    options: dict[str, Any] = {"poolclass": AsyncAdaptedQueuePool}
    if app is not None:
        options["connect_args"] = {"server_settings": {"application_name": app}}
    engine = create_async_engine(url, **options)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield engine, async_scoped_session(async_sessionmaker(engine))
    finally:
        await engine.dispose()


async def settled(
    engine: AsyncEngine, db: async_scoped_session[Any]
) -> tuple[int, int]:
    """Once closes have finished: (checked-out connections, live sessions)."""
    await db.wait_closed()
    return checked_out(engine), db.registry.stats()["live"]


def checked_out(engine: AsyncEngine) -> int:
    """Connections of *engine*'s pool not checked in."""
    return engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined,no-any-return]


def events(logs: list[MutableMapping[str, Any]]) -> list[str]:
    """The event names of captured log entries, in order."""
    return [entry["event"] for entry in logs]


class Client:
    """An async client unrelated to SQLAlchemy, closed with ``aclose()``."""

    instances: ClassVar[list[Client]] = []

    def __init__(self, name: str = "client") -> None:
        self.name = name
        self.closed = False
        Client.instances.append(self)

    async def fetch(self, path: str) -> str:
        """Fetch *path*."""
        await asyncio.sleep(0)
        return f"{self.name}:{path}"

    def label(self) -> str:
        """Describe the client without awaiting."""
        return f"<{self.name}>"

    async def aclose(self) -> None:
        """Release the client."""
        await asyncio.sleep(0)
        self.closed = True


class SyncClosed:
    """A client with coroutine methods and a plain ``close()``."""

    def __init__(self) -> None:
        self.closed = False

    async def fetch(self) -> str:
        """Fetch something."""
        return "data"

    def close(self) -> None:
        """Release the client."""
        self.closed = True


class Fragile:
    """A client whose close always fails."""

    async def ping(self) -> str:
        """Answer."""
        return "pong"

    async def close(self) -> None:
        """Fail to release the client."""
        await asyncio.sleep(0)
        raise OSError("connection reset while closing")


# -- the drop-in ----------------------------------------------------------------


def test_is_a_sqlalchemy_async_scoped_session() -> None:
    """With AsyncSession factories it is an instance of SQLAlchemy's class."""
    db = async_scoped_session(async_sessionmaker())

    assert isinstance(db, sa_asyncio.async_scoped_session)
    assert isinstance(db, scoped.scoped_session)
    assert not isinstance(cast(object, db), orm.scoped_session)


def test_other_async_clients_are_not_sqlalchemy_ones() -> None:
    """A client class unrelated to SQLAlchemy does not pretend to be its proxy."""
    db = async_scoped_session(Client, close_method="aclose")

    assert not isinstance(db, sa_asyncio.async_scoped_session)


def test_the_default_scope_is_the_current_task() -> None:
    """Without scopefunc the scope is scoped.scopes.task, as the repr says."""
    db = async_scoped_session(async_sessionmaker())

    assert scopes.task is db.registry.scopefunc  # type: ignore[attr-defined]
    assert "scope=task" in repr(db)


def test_sqlalchemys_scope_function_maps_to_the_task_scope() -> None:
    """scopefunc=asyncio.current_task, as SQLAlchemy suggests, is the task scope."""
    db = async_scoped_session(async_sessionmaker(), asyncio.current_task)

    assert scopes.task is db.registry.scopefunc  # type: ignore[attr-defined]


def _sqlalchemy_proxied_names() -> list[str]:
    own = {"__init__", "__call__", "configure", "remove"}
    dunders = {"__contains__", "__iter__"}
    names = []
    for name, value in vars(sa_asyncio.async_scoped_session).items():
        if name in own or (name.startswith("_") and name not in dunders):
            continue
        if isinstance(value, (property, classmethod)) or inspect.isfunction(value):
            names.append(name)
    return names


@pytest.mark.parametrize("name", _sqlalchemy_proxied_names())
def test_proxies_match_sqlalchemys(name: str) -> None:
    """Each member SQLAlchemy proxies has its signature, docstring and kind."""
    db = async_scoped_session(async_sessionmaker())
    ours = inspect.getattr_static(type(db), name)
    theirs = inspect.getattr_static(sa_asyncio.async_scoped_session, name)

    def text(doc: str | None) -> str:
        # SQLAlchemy wraps the note's lines of attributes one word earlier.
        return " ".join((doc or "").split())

    if isinstance(theirs, property):
        assert text(theirs.__doc__) == text(ours.__doc__)
        assert (theirs.fset is None) == (getattr(ours, "fset", None) is None)
        return
    ours_func, theirs_func = (
        getattr(type(db), name),
        getattr(sa_asyncio.async_scoped_session, name),
    )
    assert text(theirs_func.__doc__) == text(ours_func.__doc__)
    assert inspect.signature(theirs_func) == inspect.signature(ours_func)
    assert inspect.iscoroutinefunction(theirs_func) == inspect.iscoroutinefunction(
        ours_func
    )


def test_docstrings_name_the_async_classes() -> None:
    """The note names AsyncSession and async_scoped_session as SQLAlchemy does."""
    db = async_scoped_session(async_sessionmaker())
    note = (
        "Proxied for the :class:`_asyncio.AsyncSession` class on behalf of the "
        ":class:`_asyncio.scoping.async_scoped_session` class."
    )

    assert note in " ".join((type(db).commit.__doc__ or "").split())
    assert note in " ".join((type(db).run_sync.__doc__ or "").split())  # type: ignore[attr-defined]


def test_coroutine_methods_stay_coroutines_and_others_do_not() -> None:
    """Every coroutine method of AsyncSession is one on the proxy, and only those."""
    db = async_scoped_session(async_sessionmaker())
    proxy = type(db)
    for name, raw in vars(AsyncSession).items():
        if name.startswith("_") or not inspect.isfunction(raw):
            continue
        assert inspect.iscoroutinefunction(raw) == inspect.iscoroutinefunction(
            getattr(proxy, name)
        ), name


def test_call_with_arguments_errors_like_sqlalchemy(sqlite_url: str) -> None:
    """db(**kw) creates the task's session once; then it is InvalidRequestError."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, _):
            db = async_scoped_session(async_sessionmaker())
            session = db(bind=engine)
            assert engine is session.bind
            with pytest.raises(sa_exc.InvalidRequestError, match=r"^Scoped session"):
                db(bind=engine)
            with pytest.raises(scoped.AlreadyPresentError):
                db(autoflush=False)
            await db.remove()

    run(main)


def test_configure_warns_like_sqlalchemy(sqlite_url: str) -> None:
    """configure() affects new sessions and warns (SAWarning) if one exists."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, _):
            db = async_scoped_session(async_sessionmaker())
            db.configure(bind=engine)
            await db.execute(sa.text("select 1"))
            with pytest.warns(sa_exc.SAWarning, match=r"^At least one scoped"):
                db.configure(autoflush=False)
            assert db.autoflush
            await db.remove()
            assert not db.autoflush
            # mypy keeps the narrowing of the assert above across remove().
            await db.remove()  # type: ignore[unreachable]

    run(main)


def test_bad_close_method_is_named() -> None:
    """A close method the class lacks is a TypeError naming it."""
    with pytest.raises(TypeError, match="'release'"):
        async_scoped_session(Client, close_method="release")


# -- one session per task ---------------------------------------------------------


def test_tasks_and_their_children_never_share_a_session(sqlite_url: str) -> None:
    """Each task, child tasks included, gets a session of its own."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):

            async def child() -> AsyncSession:
                await db.execute(sa.text("select 1"))
                return db()

            parent = db()
            children = await asyncio.gather(*(child() for _ in range(5)))
            assert 6 == len({id(s) for s in [parent, *children]})
            assert parent is db()
            await db.remove()
            assert (0, 0) == await settled(engine, db)

    run(main)


def test_outside_a_task_the_error_says_what_is_needed() -> None:
    """Using the proxy from a plain loop callback is a clear RuntimeError."""
    db = async_scoped_session(Client, close_method="aclose")
    errors: list[BaseException] = []

    def callback() -> None:
        try:
            db.label()
        except RuntimeError as exc:
            errors.append(exc)

    async def main() -> None:
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0.01)

    run(main)
    assert 1 == len(errors)
    assert "running asyncio task" in str(errors[0])


def test_thousand_concurrent_tasks_leave_nothing_behind(async_url: str) -> None:
    """Once their closes finish, no session is live and every connection is back.

    A session whose task ended stays live until its close has finished: a
    close still running is never counted as a clean one."""

    async def main() -> None:
        async with scoped_on(async_url) as (engine, db):

            async def work(i: int) -> int:
                statement = sa.text("select cast(:i as integer)")
                return int((await db.execute(statement, {"i": i})).scalar_one())

            done = await asyncio.gather(*map(work, range(TASKS)))
            assert list(range(TASKS)) == done
            assert (0, 0) == await settled(engine, db)
            stats = db.registry.stats()
            assert 0 == stats["live"]
            assert (TASKS, TASKS) == (stats["created"], stats["cleaned_up"])

    run(main)


@pytest.mark.parametrize("ending", ["returns", "raises", "is cancelled"])
def test_a_session_is_closed_when_its_task_ends(
    sqlite_url: str, ending: str, captured: list[MutableMapping[str, Any]]
) -> None:
    """However the task ends, its session is closed on the loop and dropped."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):
            gate = asyncio.Event()

            async def task() -> None:
                db.add(User(name="never committed"))
                await db.flush()
                if ending == "raises":
                    raise ValueError(ending)
                if ending == "is cancelled":
                    await gate.wait()

            job = asyncio.create_task(task())
            await asyncio.sleep(0.05)
            if ending == "is cancelled":
                job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            assert (0, 0) == await settled(engine, db)
            count = await db.scalar(sa.select(sa.func.count()).select_from(User))
            assert 0 == count
            await db.remove()

    run(main)
    ended = [e for e in captured if e["event"] == "session.scope_ended"]
    assert 1 == len(ended)
    assert "task" == ended[0]["scope_kind"]
    assert "session.close_failed" not in events(captured)


def test_remove_awaits_the_close(
    sqlite_url: str, captured: list[MutableMapping[str, Any]]
) -> None:
    """await db.remove() returns the connection before it returns."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):
            first = db()
            await db.execute(sa.text("select 1"))
            assert 1 == checked_out(engine)
            await db.remove()
            assert 0 == checked_out(engine)
            assert first is not db()
            await db.remove()
            await db.remove()  # nothing left: does nothing

    run(main)
    assert ["session.created", "session.removed"] * 2 == [
        e for e in events(captured) if e in {"session.created", "session.removed"}
    ]


def test_exceptions_roll_back_and_return_the_connection(sqlite_url: str) -> None:
    """A task failing mid-transaction leaves nothing written and nothing held."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):

            async def failing(i: int) -> None:
                db.add(User(name=f"user {i}"))
                await db.flush()
                if i % 2:
                    raise ZeroDivisionError(i)
                await db.commit()

            results = await asyncio.gather(
                *map(failing, range(20)), return_exceptions=True
            )
            assert 10 == sum(isinstance(r, ZeroDivisionError) for r in results)
            assert (0, 0) == await settled(engine, db)
            names = (await db.scalars(sa.select(User.name))).all()
            assert sorted(f"user {i}" for i in range(0, 20, 2)) == sorted(names)
            await db.remove()

    run(main)


# -- cancellation and timeouts -------------------------------------------------------


def _app_name() -> str:
    return f"scoped-test-{uuid.uuid4().hex[:12]}"


async def _states(engine: AsyncEngine, app: str) -> list[str]:
    """pg_stat_activity states of the connections tagged *app*, but this one."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.text(
                "select state from pg_stat_activity where application_name = :app "
                "and pid <> pg_backend_pid()"
            ),
            {"app": app},
        )
        return [str(state) for state in rows.scalars()]


@pytest.mark.servers
def test_cancelled_mid_query_the_session_is_closed(asyncpg_url: str) -> None:
    """A task cancelled inside pg_sleep(5) leaves no connection or transaction."""
    app = _app_name()

    async def main() -> None:
        async with scoped_on(asyncpg_url, app) as (engine, db):

            async def slow() -> None:
                await db.execute(sa.text("select pg_sleep(5)"))

            task = asyncio.create_task(slow())
            await asyncio.sleep(0.1)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (0, 0) == await settled(engine, db)
            assert time.monotonic() - started < 2
            assert "idle in transaction" not in await _states(engine, app)

    run(main)


@pytest.mark.servers
@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_asyncio_timeout_keeps_the_tasks_session(asyncpg_url: str) -> None:
    """After a timeout inside a query the task rolls back and keeps its session."""
    app = _app_name()

    async def main() -> None:
        async with scoped_on(asyncpg_url, app) as (engine, db):

            async def task() -> int:
                session = db()
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):  # type: ignore[attr-defined]
                        await db.execute(sa.text("select pg_sleep(5)"))
                await db.rollback()
                assert session is db()
                return int(await db.scalar(sa.text("select 42")))

            assert 42 == await asyncio.create_task(task())
            assert (0, 0) == await settled(engine, db)
            assert "idle in transaction" not in await _states(engine, app)

    run(main)


@pytest.mark.servers
def test_wait_for_timeout_leaves_nothing_behind(asyncpg_url: str) -> None:
    """asyncio.wait_for around a query that times out holds nothing afterwards."""
    app = _app_name()

    async def main() -> None:
        async with scoped_on(asyncpg_url, app) as (engine, db):

            async def task() -> int:
                query = db.execute(sa.text("select pg_sleep(5)"))
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(query, 0.1)
                # Before 3.12 the statement ran in a task of its own, with a
                # session of its own; since, in this one: either way this works.
                await db.rollback()
                return int(await db.scalar(sa.text("select 7")))

            assert 7 == await asyncio.create_task(task())
            assert (0, 0) == await settled(engine, db)
            assert "idle in transaction" not in await _states(engine, app)

    run(main)


def test_timeout_while_holding_a_session(sqlite_url: str) -> None:
    """A timeout elsewhere in the task leaves its session usable and it is closed."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):

            async def task() -> int:
                await db.execute(sa.text("select 1"))
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.sleep(5), 0.05)
                return int(await db.scalar(sa.text("select 3")))

            assert 3 == await asyncio.create_task(task())
            assert (0, 0) == await settled(engine, db)

    run(main)


def test_cancelling_every_task_does_not_abandon_a_close(sqlite_url: str) -> None:
    """A shutdown handler's cancel-all lets closes in progress finish."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):

            async def task() -> None:
                await db.execute(sa.text("select 1"))

            await asyncio.create_task(task())
            await asyncio.sleep(0)  # the task's done callback has started the close
            me = asyncio.current_task()
            closing = [t for t in asyncio.all_tasks() if t is not me]
            assert closing
            for other in closing:
                other.cancel()
            await asyncio.gather(*closing, return_exceptions=True)
            assert not any(t.cancelled() for t in closing)
            assert 0 == checked_out(engine)

    run(main)


# -- failures ----------------------------------------------------------------


def test_a_failing_close_is_logged_not_raised(
    captured: list[MutableMapping[str, Any]],
) -> None:
    """A close that fails at a task's end is a session.close_failed event only."""
    problems: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: problems.append(context)
        )
        db = async_scoped_session(Fragile, name="fragile")

        async def task() -> str:
            return await db.ping()  # type: ignore[no-any-return]

        assert "pong" == await asyncio.create_task(task())
        await db.wait_closed()
        assert 0 == db.registry.stats()["live"]

    run(main)
    assert [] == problems
    failed = [e for e in captured if e["event"] == "session.close_failed"]
    assert 1 == len(failed)
    assert "scope_end" == failed[0]["during"]
    assert "OSError: connection reset while closing" == failed[0]["exception"]
    assert "session.scope_ended" in events(captured)


def test_remove_raises_a_failing_close_and_still_drops_the_session(
    captured: list[MutableMapping[str, Any]],
) -> None:
    """await db.remove() raises the close's error, logged, and forgets the session."""

    async def main() -> None:
        db = async_scoped_session(Fragile)
        first = db()
        with pytest.raises(OSError, match="connection reset"):
            await db.remove()
        assert first is not db()
        db.registry.clear()

    run(main)
    assert "remove" == next(
        e["during"] for e in captured if e["event"] == "session.close_failed"
    )


def test_a_close_that_cannot_run_is_reported_without_a_warning(
    captured: list[MutableMapping[str, Any]],
) -> None:
    """A sync remove() outside any loop reports the async close it cannot run."""
    db = async_scoped_session(Client, lambda: "shared", close_method="aclose")
    client = db()
    db.registry.remove()
    gc.collect()
    assert not client.closed
    assert 0 == db.registry.stats()["live"]
    failed = [e for e in captured if e["event"] == "session.close_failed"]
    assert 1 == len(failed)
    assert "no running event loop" in failed[0]["exception"]


# -- other async clients --------------------------------------------------------------


def test_an_async_client_closed_with_aclose() -> None:
    """Coroutine methods are awaited, others forwarded, aclose() awaited at the end."""
    Client.instances.clear()

    async def main() -> None:
        db = async_scoped_session(Client, close_method="aclose")

        async def task(i: int) -> tuple[str, str]:
            return await db.fetch(f"/{i}"), db.label()

        results = await asyncio.gather(*(task(i) for i in range(3)))
        assert [(f"client:/{i}", "<client>") for i in range(3)] == results
        await db.wait_closed()
        assert 3 == len(Client.instances)
        assert all(client.closed for client in Client.instances)
        mine = db()
        await db.remove()
        assert mine.closed

    run(main)


def test_a_plain_close_method_works_too() -> None:
    """A client whose close() is a plain method is closed at the task's end."""
    made: list[SyncClosed] = []

    def factory() -> SyncClosed:
        made.append(SyncClosed())
        return made[-1]

    async def main() -> None:
        db = async_scoped_session(factory, class_=SyncClosed)

        async def task() -> str:
            return await db.fetch()  # type: ignore[no-any-return]

        assert "data" == await asyncio.create_task(task())
        await db.remove()

    run(main)
    assert [True] == [client.closed for client in made]


# -- explicit scopes and shutdown helpers ----------------------------------------------


def test_scope_blocks_await_their_close(sqlite_url: str) -> None:
    """async with db.scope() gives a fresh session, closed on exit, then the old one."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):
            outer = db()
            async with db.scope():
                inner = db()
                await db.execute(sa.text("select 1"))
                assert inner is not outer
            assert 0 == checked_out(engine)
            assert outer is db()
            with pytest.raises(TypeError, match="async with"), db.scope():
                pass
            await db.remove()

    run(main)


def test_remove_all_closes_every_scope_of_the_loop(sqlite_url: str) -> None:
    """remove_all() closes the sessions of tasks still running, and waits."""

    async def main() -> None:
        async with scoped_on(sqlite_url) as (engine, db):
            gate = asyncio.Event()

            async def holder() -> None:
                await db.execute(sa.text("select 1"))
                await gate.wait()

            tasks = [asyncio.create_task(holder()) for _ in range(4)]
            await asyncio.sleep(0.05)
            assert 4 == checked_out(engine)
            await db.remove_all()
            assert (0, 0) == (checked_out(engine), db.registry.stats()["live"])
            gate.set()
            await asyncio.gather(*tasks)

    run(main)


# -- loop shutdown ----------------------------------------------------------------

SHUTDOWN = textwrap.dedent(
    """
    import asyncio, json, sys
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.pool import NullPool
    from scoped.asyncio import async_scoped_session

    url, statement = sys.argv[1], sys.argv[2]
    engine = create_async_engine(url, poolclass=NullPool)
    held = {"now": 0, "most": 0}

    def checkout(*_):
        held["now"] += 1
        held["most"] = max(held["most"], held["now"])

    def checkin(*_):
        held["now"] -= 1

    sa.event.listen(engine.sync_engine, "checkout", checkout)
    sa.event.listen(engine.sync_engine, "checkin", checkin)
    db = async_scoped_session(async_sessionmaker(engine))
    # A scope that no task's end closes.
    shared = async_scoped_session(async_sessionmaker(engine), lambda: "shared")
    background = []

    async def busy():
        await db.execute(sa.text("select 1"))
        await db.execute(sa.text(statement))
        await asyncio.sleep(3600)

    async def done_just_now():
        await db.execute(sa.text("select 1"))

    async def main():
        background.extend(asyncio.create_task(busy()) for _ in range(3))
        await asyncio.sleep(0.3)
        await shared.execute(sa.text("select 1"))
        await db.execute(sa.text("select 1"))
        # Ends just before the loop shuts down, its close not yet run. (Were it
        # cancelled while connecting, aiosqlite would drop the connection it
        # was opening unclosed: no session ever held it.)
        await asyncio.create_task(done_just_now())

    asyncio.run(main())
    stats = [db.registry.stats(), shared.registry.stats()]
    print(json.dumps({"held": held, "live": [s["live"] for s in stats]}))
    """
)


def _shutdown(url: str, statement: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", SHUTDOWN, url, statement],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ("", 0) == (done.stderr, done.returncode)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_loop_shutdown_closes_live_sessions_without_warnings(sqlite_url: str) -> None:
    """asyncio.run ending with live sessions closes them all, silently."""
    result = _shutdown(sqlite_url, "select 2")

    assert [0, 0] == result["live"]
    assert 0 == result["held"]["now"]
    assert result["held"]["most"] >= 5


@pytest.mark.servers
def test_loop_shutdown_mid_query_closes_without_warnings(asyncpg_url: str) -> None:
    """asyncio.run ending while tasks sit in pg_sleep closes their sessions too."""
    result = _shutdown(asyncpg_url, "select pg_sleep(30)")

    assert [0, 0] == result["live"]
    assert 0 == result["held"]["now"]
    assert result["held"]["most"] >= 5


def test_a_loop_closed_without_shutdown_is_let_go_quietly() -> None:
    """A hand-run loop closed without shutdown_asyncgens() is freed, with no warning."""
    Client.instances.clear()
    db = async_scoped_session(Client, close_method="aclose")

    async def task() -> str:
        return await db.fetch("/")  # type: ignore[no-any-return]

    loop = asyncio.new_event_loop()
    try:
        assert "client:/" == loop.run_until_complete(task())
        loop.run_until_complete(db.wait_closed())
    finally:
        loop.close()
    closed = weakref.ref(loop)
    del loop
    # Closing a session on another loop lets the closed loop's state go.
    assert "client:/" == run(lambda: asyncio.create_task(task()))
    gc.collect()
    assert closed() is None
    assert [True, True] == [client.closed for client in Client.instances]


def test_loop_shutdown_in_process(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """In this process too: nothing live, nothing held, nothing logged by asyncio."""
    state: dict[str, Any] = {}

    async def main() -> None:
        engine = create_async_engine(sqlite_url, poolclass=NullPool)
        db = async_scoped_session(async_sessionmaker(engine))
        state.update(engine=engine, db=db)

        async def busy() -> None:
            await db.execute(sa.text("select 1"))
            await asyncio.sleep(3600)

        state["tasks"] = [asyncio.create_task(busy()) for _ in range(3)]
        await asyncio.sleep(0.1)
        await db.execute(sa.text("select 1"))

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(main)
        gc.collect()
    assert [] == caplog.records
    assert 0 == state["db"].registry.stats()["live"]
    assert all(task.cancelled() for task in state["tasks"])
