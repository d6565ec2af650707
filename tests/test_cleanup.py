"""Automatic cleanup under load and failure: churn without growth, failing
close(), cleanup run by the garbage collector, fork, and a real server."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, cast

import greenlet
import pytest
import sqlalchemy as sa
from models import User
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm import scoped_session as sa_scoped_session

from scoped import scoped_session, scopes

Held = Callable[[scoped_session[Any], sa.Engine], tuple[int, int]]
Logs = list[dict[str, Any]]
Report = dict[str, Any]

#: Memory a churn of 10,000 scopes may leave behind: about 26 bytes a scope.
#: One session left alive per scope would be several kilobytes each.
CHURN_GROWTH_LIMIT = 256 * 1024


class Request:
    """A request object in a reference cycle, as many real ones are."""

    def __init__(self) -> None:
        self.me = self


def query(db: Any) -> None:
    """Run a real query in the current session."""
    db.execute(sa.text("select 1"))


# -- churn ---------------------------------------------------------------------


class Churn:
    """Scopes of every kind that come and go without remove().

    *make* builds the registry for a scope function (``None``: per thread),
    so the same churn can run through SQLAlchemy's registry for comparison.
    """

    def __init__(self, make: Callable[[Callable[[], Any] | None], Any]) -> None:
        self.request: list[Request | None] = [None]
        self.thread = make(None)
        self.task = make(scopes.task)
        self.greenlet = make(scopes.greenlet)
        self.requests = make(lambda: self.request[0])
        self.context = make(scopes.context)

    @property
    def registries(self) -> list[Any]:
        return [self.thread, self.task, self.greenlet, self.requests, self.context]

    def run(self, per_kind: int) -> None:
        """Open and end *per_kind* scopes of each of the five kinds."""
        for _ in range(per_kind // 10):
            threads = [threading.Thread(target=self.thread) for _ in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        async def job() -> None:
            self.task()

        async def tasks() -> None:
            await asyncio.gather(*(job() for _ in range(per_kind)))

        contextvars.Context().run(asyncio.run, tasks())
        for _ in range(per_kind):
            greenlet.greenlet(self.greenlet).switch()
        for _ in range(per_kind):
            self.request[0] = Request()
            self.requests()
        self.request[0] = None
        for _ in range(per_kind):
            contextvars.Context().run(self.context)
        gc.collect()

    def growth(self, per_kind: int) -> int:
        """Bytes still allocated after a churn that followed an identical warm-up."""
        tracemalloc.start()
        try:
            # The warm-up sizes dicts, free lists and caches for this load.
            self.run(per_kind)
            before = tracemalloc.get_traced_memory()[0]
            self.run(per_kind)
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()


def test_churn_of_ten_thousand_scopes_leaves_nothing(engine: sa.Engine) -> None:
    """10,000 scopes of five kinds ending without remove() leave no session and no
    memory behind."""
    factory = sessionmaker(engine)
    churn = Churn(lambda scopefunc: scoped_session(factory, scopefunc))

    growth = churn.growth(2_000)

    assert [0] * 5 == [db.registry.stats()["live"] for db in churn.registries]
    assert [4_000] * 5 == [db.registry.stats()["cleaned_up"] for db in churn.registries]
    assert growth < CHURN_GROWTH_LIMIT, f"grew by {growth / 1024:.0f} KiB"


def test_churn_through_sqlalchemy_registries_grows(engine: sa.Engine) -> None:
    """The same churn through SQLAlchemy's registries grows far past the limit (the
    limit can fail)."""
    factory = sessionmaker(engine)
    churn = Churn(lambda scopefunc: sa_scoped_session(factory, scopefunc))

    growth = churn.growth(2_000)

    assert growth > 10 * CHURN_GROWTH_LIMIT, f"grew by {growth / 1024:.0f} KiB"
    for db in churn.registries[1:]:
        db.registry.registry.clear()


# -- failures during automatic cleanup -----------------------------------------


class CloseFails(Session):
    """Releases its connection, then reports a failure from close()."""

    def close(self) -> None:
        super().close()
        raise RuntimeError("disk on fire")


class RemovesItself(Session):
    """Calls remove() on its own registry from close(): a misuse.

    The registry is found in ``info["registry"]``.
    """

    def close(self) -> None:
        super().close()
        self.info["registry"].remove()


@pytest.fixture
def stray_errors(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Errors that escaped into threads or weak reference callbacks."""
    caught: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", caught.append)
    monkeypatch.setattr(sys, "unraisablehook", caught.append)
    return caught


#: The request the ``current_request`` scope function returns.
CURRENT: list[Request | None] = [None]


def current_request() -> Request | None:
    """A custom scope function: the current request object."""
    return CURRENT[0]


def end_by_thread_exit(db: scoped_session[Session]) -> None:
    thread = threading.Thread(target=query, args=(db,))
    thread.start()
    thread.join()


def end_by_task_end(db: scoped_session[Session]) -> None:
    loop_errors: list[dict[str, Any]] = []

    async def job() -> None:
        query(db)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: loop_errors.append(context)
        )
        await asyncio.gather(job())

    asyncio.run(main())
    assert [] == loop_errors


def end_by_collection(db: scoped_session[Session]) -> None:
    CURRENT[0] = Request()
    query(db)
    CURRENT[0] = None
    gc.collect()


def end_by_greenlet_exit(db: scoped_session[Session]) -> None:
    greenlet.greenlet(query).switch(db)
    gc.collect()


def end_by_context_exit(db: scoped_session[Session]) -> None:
    contextvars.Context().run(query, db)
    gc.collect()


#: A scope function, and how to end one of its scopes without remove().
Ending = tuple[Callable[[], Any] | None, Callable[[scoped_session[Any]], None]]

SCOPE_ENDS = [
    pytest.param((None, end_by_thread_exit), id="thread-exit"),
    pytest.param((scopes.task, end_by_task_end), id="task-end"),
    pytest.param((current_request, end_by_collection), id="collected-request"),
    pytest.param((scopes.greenlet, end_by_greenlet_exit), id="greenlet-exit"),
    pytest.param((scopes.context, end_by_context_exit), id="context-exit"),
]


@pytest.mark.parametrize("ending", SCOPE_ENDS)
def test_close_failing_at_a_scopes_end_is_logged_not_raised(
    engine: sa.Engine,
    logs: Logs,
    held: Held,
    stray_errors: list[Any],
    ending: Ending,
) -> None:
    """A close() raising during automatic cleanup is logged as session.close_failed,
    raised nowhere, and the entry is gone."""
    scopefunc, end_scope = ending
    db = scoped_session(sessionmaker(engine, class_=CloseFails), scopefunc)
    end_scope(db)

    [failure] = [event for event in logs if event["event"] == "session.close_failed"]
    assert ("error", "scope_end", "RuntimeError: disk on fire") == (
        failure["log_level"],
        failure["during"],
        failure["exception"],
    )
    assert "session.scope_ended" == logs[-1]["event"]
    assert [] == stray_errors
    assert (0, 0) == held(db, engine)
    assert {"created": 1, "removed": 0, "cleaned_up": 1, "live": 0} == (
        db.registry.stats()
    )


@pytest.mark.parametrize("ending", SCOPE_ENDS)
def test_remove_from_inside_automatic_cleanup_is_refused(
    engine: sa.Engine,
    logs: Logs,
    held: Held,
    stray_errors: list[Any],
    ending: Ending,
) -> None:
    """remove() called by a session's close() during automatic cleanup is a
    RuntimeError, logged, with nothing left behind."""
    scopefunc, end_scope = ending
    info: dict[str, Any] = {}
    factory = sessionmaker(engine, class_=RemovesItself, info=info)
    db = scoped_session(factory, scopefunc)
    info["registry"] = db
    end_scope(db)

    [failure] = [event for event in logs if event["event"] == "session.close_failed"]
    assert failure["exception"].startswith(
        "RuntimeError: remove() was called while the registry was closing"
    )
    assert [] == stray_errors
    assert (0, 0) == held(db, engine)
    assert {"created": 1, "removed": 0, "cleaned_up": 1, "live": 0} == (
        db.registry.stats()
    )


# -- cleanup run by the garbage collector ---------------------------------------


@pytest.fixture
def eager_gc() -> Iterator[None]:
    """Collect garbage on nearly every allocation, wherever it happens."""
    threshold = gc.get_threshold()
    gc.set_threshold(1)
    yield
    gc.set_threshold(*threshold)


@pytest.mark.parametrize(
    "wrap", [None, scopes.objects], ids=["plain", "scopes.objects"]
)
@pytest.mark.usefixtures("eager_gc")
def test_scopes_collected_inside_the_registry_do_not_deadlock(
    engine: sa.Engine, wrap: Callable[[Callable[[], Any]], Callable[[], Any]] | None
) -> None:
    """A request collected by a GC pass that starts inside the registry's own
    bookkeeping is cleaned up there."""
    current: list[Request | None] = [None]

    def get_request() -> Request | None:
        return current[0]

    db = scoped_session(
        sessionmaker(engine), get_request if wrap is None else wrap(get_request)
    )

    def serve() -> None:
        for _ in range(10_000):
            current[0] = Request()
            db()
            current[0] = None  # garbage, freed at some later allocation

    # A deadlock would hang this thread, not the test run.
    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    worker.join(30)

    assert not worker.is_alive(), "the registry deadlocked on its own lock"
    gc.collect()
    assert {"created": 10_000, "removed": 0, "cleaned_up": 10_000, "live": 0} == (
        db.registry.stats()
    )


# -- fork ----------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
@pytest.mark.parametrize("scopefunc", [None, lambda: "job"], ids=["thread", "keyed"])
def test_fork_while_another_thread_does_bookkeeping(
    engine: sa.Engine, scopefunc: Callable[[], Any] | None
) -> None:
    """A child forked while another thread holds the registry's bookkeeping
    lock does not wait for a thread that no longer exists in it."""
    db = scoped_session(sessionmaker(engine), scopefunc)
    db()
    holding, release = threading.Event(), threading.Event()

    def bookkeeping() -> None:
        # As a thread inside stats() or a creation at the moment of fork.
        with db.registry.ledger.lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=bookkeeping)
    holder.start()
    holding.wait(10)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its exit status
        os._exit(0 if db.registry.stats()["live"] == 0 else 1)
    try:
        for _ in range(100):  # up to 10 s
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            threading.Event().wait(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in the registry's fork handler")
    finally:
        release.set()
        holder.join()
    assert 0 == os.waitstatus_to_exitcode(status)
    db.remove()


def test_fork_on_sqlite_shares_no_connection(
    engine: sa.Engine, in_fork: Callable[[Callable[[], Report]], Report]
) -> None:
    """A forked child gets fresh sessions on fresh connections; the parent's keep
    working."""
    db = scoped_session(sessionmaker(engine))
    db.add(User(name="parent"))
    db.flush()  # the parent's transaction is open, its row not yet committed
    parent_session = db()
    parent_connection = db.connection().connection.dbapi_connection

    def child() -> Report:
        status: Report = {
            "had_session": db.registry.has(),
            "live": db.registry.stats()["live"],
        }
        engine.dispose(close=False)
        child_session = db()
        child_connection = db.connection().connection.dbapi_connection
        status.update(
            same_session=child_session is parent_session,
            same_connection=child_connection is parent_connection,
            connection_id=id(child_connection),
            users=db.scalar(sa.select(sa.func.count()).select_from(User)),
        )
        db.remove()
        return status

    status = in_fork(child)

    assert {
        "had_session": False,
        "live": 0,
        "same_session": False,
        "same_connection": False,
        "users": 0,  # the parent's uncommitted row is not visible
    } == {key: value for key, value in status.items() if key != "connection_id"}
    assert id(parent_connection) != status["connection_id"]
    assert parent_session is db()
    assert parent_connection is db.connection().connection.dbapi_connection
    db.commit()
    assert ["parent"] == db.scalars(sa.select(User.name)).all()
    db.remove()
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]


# -- a real server -------------------------------------------------------------


def connection_states(pg_url: str, application: str) -> dict[str, int]:
    """How many server connections of *application* are in each state."""
    monitor = sa.create_engine(pg_url, poolclass=sa.NullPool)
    try:
        with monitor.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "select state, count(*) from pg_stat_activity "
                    "where application_name = :name group by state"
                ),
                {"name": application},
            )
            # The count column, which the stubs take for tuple.count.
            return {row.state: cast(int, row.count) for row in rows}
    finally:
        monitor.dispose()


def test_threads_leave_no_transaction_open_on_postgresql(
    pg_url: str, in_threads: Callable[..., list[Any]]
) -> None:
    """Threads that exit mid-transaction without remove() leave only idle pooled
    connections on the server."""
    application = f"scoped-cleanup-{os.getpid()}"
    engine = sa.create_engine(
        pg_url, pool_size=8, connect_args={"application_name": application}
    )
    db = scoped_session(sessionmaker(engine))
    barrier = threading.Barrier(8, timeout=10)

    def work(_: int) -> None:
        query(db)  # opens a transaction
        barrier.wait()  # eight connections in use at once

    try:
        in_threads(8, work)

        assert {"idle": 8} == connection_states(pg_url, application)
        assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
        assert 8 == engine.pool.checkedin()  # type: ignore[attr-defined]
    finally:
        engine.dispose()
