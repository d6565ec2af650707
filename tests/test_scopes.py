"""Every kind of scope: isolation, cleanup without remove(), scope() blocks,
misuse, leak warnings and introspection."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import greenlet
import pytest
import sqlalchemy as sa
from models import User
from sqlalchemy.orm import Session, sessionmaker

from scoped import scoped_session, scopes

Held = Callable[[scoped_session[Any], sa.Engine], tuple[int, int]]
Logs = list[dict[str, Any]]


def query(db: scoped_session[Session]) -> Session:
    """Run a real query in the current session (checking out a connection)."""
    db.execute(sa.text("select 1"))
    return db()


def fresh_context(func: Callable[[], Any]) -> Any:
    """Run *func* in an empty contextvars context.

    The context scope's key lives in the current context; the main thread's
    would otherwise carry over from one test to the next.
    """
    return contextvars.Context().run(func)


def leak_warnings(logs: Logs) -> list[dict[str, Any]]:
    """The ``session.leak_suspected`` events among *logs*."""
    return [event for event in logs if event["event"] == "session.leak_suspected"]


class Request:
    """A web framework's request object, compared by identity."""

    def __init__(self, *, cyclic: bool = False) -> None:
        # Many real request objects sit in reference cycles, which only the
        # garbage collector frees.
        self.me = self if cyclic else None


# -- each kind of scope: isolation and cleanup without remove() ---------------


@pytest.mark.parametrize(
    "scopefunc",
    [None, scopes.thread, threading.get_ident],
    ids=["default", "scopes.thread", "get_ident"],
)
def test_thread_scope_isolates_and_closes_at_thread_exit(
    engine: sa.Engine,
    in_threads: Callable[..., list[Any]],
    held: Held,
    scopefunc: Callable[[], Any] | None,
) -> None:
    """Concurrent threads get their own sessions, closed when they exit without
    remove()."""
    db = scoped_session(sessionmaker(engine), scopefunc)
    barrier = threading.Barrier(8, timeout=10)

    def work(_: int) -> Session:
        session = query(db)
        barrier.wait()  # all eight hold a connection at the same time
        assert session is db()
        return session

    sessions = in_threads(8, work)

    assert 8 == len({id(session) for session in sessions})
    assert (0, 0) == held(db, engine)
    assert {"created": 8, "removed": 0, "cleaned_up": 8, "live": 0} == (
        db.registry.stats()
    )


@pytest.mark.parametrize(
    "scopefunc",
    [scopes.task, asyncio.current_task],
    ids=["scopes.task", "current_task"],
)
def test_task_scope_closes_ten_thousand_short_tasks(
    engine: sa.Engine, held: Held, scopefunc: Callable[[], Any]
) -> None:
    """10,000 tasks that end without remove() each had a session, all closed."""
    db = scoped_session(sessionmaker(engine), scopefunc)

    async def job() -> bool:
        return db.in_transaction()

    async def main() -> tuple[list[bool], dict[str, int]]:
        results = await asyncio.gather(*(job() for _ in range(10_000)))
        return results, db.registry.stats()

    results, stats = asyncio.run(main())

    assert [False] * 10_000 == results
    # Already clean when gather() returns, not only after the loop closed.
    assert {"created": 10_000, "removed": 0, "cleaned_up": 10_000, "live": 0} == stats
    assert (0, 0) == held(db, engine)


def test_task_scope_returns_the_connections_of_querying_tasks(
    engine: sa.Engine, held: Held
) -> None:
    """Interleaved querying tasks keep their own session and give its connection back at
    their end."""
    db = scoped_session(sessionmaker(engine), scopes.task)

    async def job() -> Session:
        session = query(db)
        await asyncio.sleep(0)  # the round's other tasks run in between
        assert session is db()
        return session

    async def main() -> list[Session]:
        seen: list[Session] = []
        # Ten at a time: the pool would run out if connections were kept.
        for _ in range(20):
            seen += await asyncio.gather(*(job() for _ in range(10)))
            assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
        return seen

    sessions = asyncio.run(main())

    assert 200 == len({id(session) for session in sessions})
    assert (0, 0) == held(db, engine)


def test_task_scope_closes_failed_and_cancelled_tasks(
    engine: sa.Engine, held: Held
) -> None:
    """A task that fails or is cancelled has its session closed too."""
    db = scoped_session(sessionmaker(engine), scopes.task)

    async def fails() -> None:
        query(db)
        raise LookupError("failed")

    async def hangs() -> None:
        query(db)
        await asyncio.Event().wait()

    async def main() -> list[BaseException | None]:
        tasks = [asyncio.create_task(fails()), asyncio.create_task(hangs())]
        await asyncio.sleep(0)
        assert 2 == engine.pool.checkedout()  # type: ignore[attr-defined]
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(main())

    assert [LookupError, asyncio.CancelledError] == [type(o) for o in outcomes]
    assert (0, 0) == held(db, engine)
    assert 2 == db.registry.stats()["cleaned_up"]


def test_task_scope_outside_a_task_is_a_clear_error(engine: sa.Engine) -> None:
    """Using the task scope with no running task says what to do instead."""
    db = scoped_session(sessionmaker(engine), scopes.task)
    accesses: list[Callable[[], object]] = [
        db,
        db.registry,
        db.in_transaction,
        lambda: db.autoflush,
    ]

    for access in accesses:
        with pytest.raises(RuntimeError, match=r"needs a running asyncio task"):
            access()

    assert 0 == db.registry.stats()["created"]


def test_long_lived_task_does_not_keep_its_removed_sessions(engine: sa.Engine) -> None:
    """A task that creates and removes many sessions keeps none of them alive."""
    db = scoped_session(sessionmaker(engine), scopes.task)

    async def worker() -> int:
        alive = []
        for _ in range(200):
            async with db.scope():
                alive.append(weakref.ref(db()))
            alive.append(weakref.ref(db()))
            db.remove()
        gc.collect()
        return sum(ref() is not None for ref in alive)

    assert 0 == asyncio.run(worker())


@pytest.mark.parametrize(
    "scopefunc",
    [scopes.greenlet, greenlet.getcurrent],
    ids=["scopes.greenlet", "getcurrent"],
)
def test_greenlet_scope_isolates_and_closes_collected_greenlets(
    engine: sa.Engine, held: Held, scopefunc: Callable[[], Any]
) -> None:
    """Interleaved greenlets get their own sessions, closed when they are gone."""
    db = scoped_session(sessionmaker(engine), scopefunc)
    hub = greenlet.getcurrent()

    def work() -> Session:
        session = query(db)
        hub.switch(session)  # pause while holding a connection
        assert session is db()
        return session

    workers = [greenlet.greenlet(work) for _ in range(5)]
    paused = [worker.switch() for worker in workers]
    assert 5 == engine.pool.checkedout()  # type: ignore[attr-defined]
    finished = [worker.switch() for worker in workers]

    assert paused == finished
    assert 5 == len({id(session) for session in finished})
    del workers
    gc.collect()
    assert (0, 0) == held(db, engine)
    assert 5 == db.registry.stats()["cleaned_up"]


def test_dead_greenlet_that_is_still_referenced_is_closed(
    engine: sa.Engine, held: Held
) -> None:
    """A greenlet that finished but is still referenced (a joined gevent job) has its
    session closed."""
    db = scoped_session(sessionmaker(engine), scopes.greenlet)
    finished = greenlet.greenlet(lambda: query(db))
    finished.switch()

    assert finished.dead
    assert (0, 0) == held(db, engine)


def test_context_scope_isolates_threads_and_tasks(
    engine: sa.Engine, in_threads: Callable[..., list[Any]], held: Held
) -> None:
    """Each thread and each task started from a clean context gets a session, closed
    when its context is gone."""
    db = scoped_session(sessionmaker(engine), scopes.context)
    barrier = threading.Barrier(4, timeout=10)

    def thread_work(_: int) -> Session:
        session = query(db)
        barrier.wait()
        return session

    async def task_work() -> Session:
        session = query(db)
        await asyncio.sleep(0)
        assert session is db()
        return session

    async def tasks() -> list[Session]:
        return await asyncio.gather(*(task_work() for _ in range(4)))

    by_thread = in_threads(4, thread_work)
    by_task = fresh_context(lambda: asyncio.run(tasks()))
    gc.collect()

    assert 8 == len({id(session) for session in [*by_thread, *by_task]})
    assert (0, 0) == held(db, engine)
    assert 8 == db.registry.stats()["cleaned_up"]


def test_context_scope_is_shared_by_the_tasks_a_context_starts(
    engine: sa.Engine,
) -> None:
    """Tasks copy their parent's context, so they share a session the parent already
    has."""
    db = scoped_session(sessionmaker(engine), scopes.context)

    async def child() -> Session:
        return db()

    async def main() -> tuple[Session, list[Session]]:
        parent = db()
        return parent, await asyncio.gather(*(child() for _ in range(3)))

    parent, children = fresh_context(lambda: asyncio.run(main()))

    assert [parent] * 3 == children


@pytest.mark.parametrize("cyclic", [False, True], ids=["refcounted", "cyclic"])
@pytest.mark.parametrize(
    "wrap", [None, scopes.objects], ids=["plain", "scopes.objects"]
)
def test_request_objects_isolate_and_close_when_collected(
    engine: sa.Engine,
    held: Held,
    cyclic: bool,
    wrap: Callable[[Callable[[], Any]], Callable[[], Any]] | None,
) -> None:
    """A scopefunc returning request objects gives each its session, closed once the
    request is collected."""
    current: list[Request | None] = [None]

    def get_request() -> Request | None:
        return current[0]

    db = scoped_session(
        sessionmaker(engine), get_request if wrap is None else wrap(get_request)
    )
    first, second = Request(cyclic=cyclic), Request(cyclic=cyclic)
    current[0] = first
    first_session = query(db)
    current[0] = second
    second_session = query(db)
    current[0] = first

    assert first_session is db()
    assert first_session is not second_session
    assert 2 == engine.pool.checkedout()  # type: ignore[attr-defined]
    current[0] = None
    del first, second
    gc.collect()
    assert (0, 0) == held(db, engine)
    assert 2 == db.registry.stats()["cleaned_up"]


def test_plain_keys_are_kept_until_remove(engine: sa.Engine, held: Held) -> None:
    """A session under a plain key (a string) stays until remove(), as in SQLAlchemy."""
    db = scoped_session(sessionmaker(engine), lambda: "job-42")
    session = query(db)
    gc.collect()

    assert (1, 1) == held(db, engine)
    assert session is db()
    db.remove()
    assert (0, 0) == held(db, engine)


def test_reused_pool_threads_get_a_fresh_session_per_scope_block(
    engine: sa.Engine, held: Held
) -> None:
    """50 jobs on two reused pool threads each see a fresh session in scope(), none left
    after."""
    db = scoped_session(sessionmaker(engine))
    previous: dict[int, Session] = {}

    def job(_: int) -> Session:
        before = previous.get(threading.get_ident())
        assert not db.registry.has()
        with db.scope():
            session = query(db)
            assert session is not before
        assert not db.registry.has()
        previous[threading.get_ident()] = session
        return session

    with ThreadPoolExecutor(max_workers=2) as pool:
        sessions = list(pool.map(job, range(50)))
        # Still inside: the blocks cleaned up, not the threads' exit.
        assert (0, 0) == held(db, engine)

    assert 50 == len({id(session) for session in sessions})
    # Fast jobs may all land on one thread; either way threads were reused.
    assert 1 <= len(previous) <= 2
    assert {"created": 50, "removed": 50, "cleaned_up": 0, "live": 0} == (
        db.registry.stats()
    )


# -- scope() blocks ------------------------------------------------------------


@pytest.mark.parametrize(
    "scopefunc",
    [None, lambda: "cli", scopes.context, scopes.greenlet],
    ids=["thread", "plain-key", "context", "greenlet"],
)
def test_nested_scopes_restore_the_outer_session(
    engine: sa.Engine, held: Held, scopefunc: Callable[[], Any] | None
) -> None:
    """Leaving a nested scope() removes its session and restores the outer one."""
    db = scoped_session(sessionmaker(engine), scopefunc)

    def body() -> list[Session]:
        outer = query(db)
        with db.scope():
            middle = query(db)
            with db.scope():
                inner = query(db)
                assert 3 == engine.pool.checkedout()  # type: ignore[attr-defined]
            assert middle is db()
            assert 2 == engine.pool.checkedout()  # type: ignore[attr-defined]
        assert outer is db()
        db.remove()
        return [outer, middle, inner]

    sessions = fresh_context(body)

    assert 3 == len({id(session) for session in sessions})
    assert (0, 0) == held(db, engine)
    assert {"created": 3, "removed": 3, "cleaned_up": 0, "live": 0} == (
        db.registry.stats()
    )


def test_exception_in_scope_closes_its_session_and_propagates(
    engine: sa.Engine, held: Held
) -> None:
    """An exception inside scope() propagates; the block's session is closed, its work
    undone."""
    db = scoped_session(sessionmaker(engine))
    outer = query(db)
    inside: list[Session] = []

    def fail_in_a_block() -> None:
        with db.scope():
            inside.append(db())
            db.add(User(name="never committed"))
            db.flush()
            raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        fail_in_a_block()

    [inner] = inside
    assert outer is db()
    assert not inner.in_transaction()
    assert 1 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 0 == db.scalar(sa.select(sa.func.count()).select_from(User))
    db.remove()
    assert (0, 0) == held(db, engine)


def test_scope_block_cannot_be_entered_twice(engine: sa.Engine) -> None:
    """Re-entering an open block is a clear error; calling scope() again nests."""
    db = scoped_session(sessionmaker(engine))
    block = db.scope()

    with block:
        session = db()
        with pytest.raises(RuntimeError, match=r"already open.*scope\(\) again"):
            block.__enter__()
        assert session is db()


def test_async_scope_blocks_in_tasks(engine: sa.Engine, held: Held) -> None:
    """async with db.scope() gives a task a fresh session, then its own again."""
    db = scoped_session(sessionmaker(engine), scopes.task)

    async def job() -> tuple[Session, Session]:
        own = query(db)
        async with db.scope():
            inner = query(db)
            await asyncio.sleep(0)
            assert inner is db()
        assert own is db()
        return own, inner

    async def main() -> list[tuple[Session, Session]]:
        return await asyncio.gather(*(job() for _ in range(5)))

    pairs = asyncio.run(main())

    assert 10 == len({id(session) for pair in pairs for session in pair})
    assert (0, 0) == held(db, engine)
    assert {"created": 10, "removed": 5, "cleaned_up": 5, "live": 0} == (
        db.registry.stats()
    )


def test_a_task_that_ends_inside_a_scope_block_leaves_nothing(
    engine: sa.Engine, held: Held
) -> None:
    """A block never left (its task ended first) closes both sessions and
    keeps nothing alive: not the task, not the session it set aside."""
    db = scoped_session(sessionmaker(engine), scopes.task)
    sessions: list[weakref.ref[Session]] = []

    async def abandoned() -> None:
        sessions.append(weakref.ref(query(db)))
        db.scope().__enter__()  # never left
        sessions.append(weakref.ref(query(db)))

    async def main() -> weakref.ref[asyncio.Task[None]]:
        task = asyncio.create_task(abandoned())
        await task
        await asyncio.sleep(0)  # the done callbacks
        return weakref.ref(task)

    task = asyncio.run(main())
    gc.collect()

    assert task() is None
    assert [None, None] == [ref() for ref in sessions]
    assert (0, 0) == held(db, engine)
    assert {"created": 2, "removed": 0, "cleaned_up": 2, "live": 0} == (
        db.registry.stats()
    )


def _in_greenlet(func: Callable[[], None]) -> None:
    worker = greenlet.greenlet(func)
    worker.switch()
    assert worker.dead


def _in_thread(func: Callable[[], None]) -> None:
    thread = threading.Thread(target=func)
    thread.start()
    thread.join()


@pytest.mark.parametrize(
    ("scopefunc", "run"),
    [(scopes.greenlet, _in_greenlet), (None, _in_thread)],
    ids=["greenlet", "thread"],
)
def test_a_scope_that_ends_inside_a_scope_block_leaves_nothing(
    engine: sa.Engine,
    held: Held,
    scopefunc: Callable[[], Any] | None,
    run: Callable[[Callable[[], None]], None],
) -> None:
    db = scoped_session(sessionmaker(engine), scopefunc)

    def abandoned() -> None:
        query(db)
        db.scope().__enter__()  # never left
        query(db)

    run(abandoned)
    gc.collect()

    assert (0, 0) == held(db, engine)
    assert 2 == db.registry.stats()["cleaned_up"]


def test_a_request_collected_inside_a_scope_block_leaves_nothing(
    engine: sa.Engine, held: Held
) -> None:
    """The block set the request's session aside and made none of its own."""
    current: list[Request] = [Request()]
    db = scoped_session(sessionmaker(engine), scopes.objects(lambda: current[0]))
    outer = weakref.ref(query(db))
    db.scope().__enter__()  # never left

    current[0] = Request()
    gc.collect()

    assert outer() is None
    assert (0, 0) == held(db, engine)
    assert 1 == db.registry.stats()["cleaned_up"]


def test_concurrent_requests_in_context_scope_blocks(
    engine: sa.Engine, held: Held
) -> None:
    """Concurrent requests in scope() blocks get their own sessions; to_thread workers
    share their request's."""
    db = scoped_session(sessionmaker(engine), scopes.context)

    async def request() -> Session:
        async with db.scope():
            session = query(db)
            await asyncio.sleep(0)  # the other requests run in between
            worker = await asyncio.to_thread(db)
            assert session is worker
            assert session is db()
        return session

    async def server() -> tuple[Session, list[Session]]:
        # The server's own context already has a session, which every
        # request task inherits: the blocks must not hand it out.
        startup = db()
        requests = await asyncio.gather(*(request() for _ in range(10)))
        assert startup is db()
        return startup, requests

    startup, requests = fresh_context(lambda: asyncio.run(server()))
    gc.collect()

    assert 11 == len({id(session) for session in [startup, *requests]})
    assert (0, 0) == held(db, engine)
    assert {"created": 11, "removed": 10, "cleaned_up": 1, "live": 0} == (
        db.registry.stats()
    )


# -- misuse: a clear error that loses nothing ----------------------------------


def test_leaving_a_scope_from_another_thread(engine: sa.Engine) -> None:
    """Leaving a block from another thread is refused and changes nothing."""
    db = scoped_session(sessionmaker(engine))
    outer = db()
    block = db.scope()
    block.__enter__()
    inner = query(db)
    before = db.registry.stats()
    errors: list[BaseException] = []

    def leave() -> None:
        try:
            block.__exit__(None, None, None)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=leave, name="worker-1")
    thread.start()
    thread.join()

    [error] = errors
    assert (
        "a scope opened in thread 'MainThread' cannot be left from thread "
        "'worker-1': leave it in the thread or task that opened it"
    ) == str(error)
    assert before == db.registry.stats()
    assert inner is db()
    assert inner.in_transaction()
    block.__exit__(None, None, None)
    assert outer is db()
    db.remove()


def test_leaving_a_scope_from_another_task(engine: sa.Engine) -> None:
    """Leaving a block from another task is refused and changes nothing."""
    db = scoped_session(sessionmaker(engine), scopes.task)

    async def main() -> tuple[Session, Session]:
        block = db.scope()
        opened, tried = asyncio.Event(), asyncio.Event()

        async def opener() -> tuple[Session, Session]:
            outer = db()
            async with block:
                inner = query(db)
                opened.set()
                await tried.wait()
                assert inner is db()
                assert inner.in_transaction()
            assert outer is db()
            return outer, inner

        task = asyncio.create_task(opener(), name="request-7")
        await opened.wait()
        before = db.registry.stats()
        # Named by the scope, not by the repr of a whole task.
        here = asyncio.current_task()
        assert here is not None
        with pytest.raises(RuntimeError) as raised:
            await block.__aexit__(None, None, None)
        assert (
            "a scope opened in task scope request-7 cannot be left from task "
            f"scope {here.get_name()}: leave it in the thread or task that opened it"
        ) == str(raised.value)
        assert before == db.registry.stats()
        tried.set()
        return await task

    outer, inner = asyncio.run(main())

    assert outer is not inner
    assert {"created": 2, "removed": 1, "cleaned_up": 1, "live": 0} == (
        db.registry.stats()
    )


def test_leaving_scopes_out_of_order(engine: sa.Engine) -> None:
    """Leaving an outer block before its inner one is refused and changes nothing."""
    db = scoped_session(sessionmaker(engine))
    first, second = db.scope(), db.scope()
    first.__enter__()
    middle = db()
    second.__enter__()
    inner = db()
    before = db.registry.stats()

    with pytest.raises(RuntimeError, match="reverse order"):
        first.__exit__(None, None, None)

    assert before == db.registry.stats()
    assert inner is db()
    second.__exit__(None, None, None)
    assert middle is db()
    first.__exit__(None, None, None)
    assert not db.registry.has()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"leak_after": -1}, "leak_after"),
        ({"leak_after": 0}, "leak_after"),
        ({"max_scopes": 0}, "max_scopes"),
        ({"max_scopes": -5}, "max_scopes"),
    ],
)
def test_bad_leak_limits_are_named(
    engine: sa.Engine, options: dict[str, Any], named: str
) -> None:
    """A non-positive age limit or scope bound is a ValueError naming the argument."""
    with pytest.raises(ValueError, match=rf"^{named} must be .*got -?\d"):
        scoped_session(sessionmaker(engine), **options)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"leak_after": "5"}, "leak_after"),
        ({"leak_after": True}, "leak_after"),
        ({"max_scopes": 2.5}, "max_scopes"),
        ({"max_scopes": "10"}, "max_scopes"),
    ],
)
def test_leak_limits_of_the_wrong_type_are_named(
    engine: sa.Engine, options: dict[str, Any], named: str
) -> None:
    """A leak limit of the wrong type is a TypeError naming the argument and value."""
    with pytest.raises(TypeError, match=rf"^{named} must be .*got .* \(a \w+\)"):
        scoped_session(sessionmaker(engine), **options)


# -- leak detection ------------------------------------------------------------


def test_leak_after_warns_once_per_session_without_closing_it(
    engine: sa.Engine, logs: Logs
) -> None:
    """An old session is reported once with its scope, creating thread and age, and
    stays usable."""
    key = ["job-1"]
    db = scoped_session(sessionmaker(engine), lambda: key[0], leak_after=0.05)
    creator = threading.Thread(target=query, args=(db,), name="worker-7")
    creator.start()
    creator.join()
    time.sleep(0.06)
    for later in ("job-2", "job-3", "job-4"):  # each creation runs the check
        key[0] = later
        db()

    [warning] = leak_warnings(logs)
    assert ("job-1", "worker-7", "age", 0.05, "warning") == (
        warning["scope"],
        warning["thread"],
        warning["reason"],
        warning["leak_after"],
        warning["log_level"],
    )
    assert warning["age_ms"] >= 50
    key[0] = "job-1"
    old = db()
    assert old.in_transaction()
    assert 1 == db.execute(sa.text("select 1")).scalar()
    assert 1 == engine.pool.checkedout()  # type: ignore[attr-defined]
    old.close()


def test_max_scopes_warns_once_per_crossing(engine: sa.Engine, logs: Logs) -> None:
    """Exceeding max_scopes warns once; dropping back and exceeding again warns."""
    key = ["a"]
    db = scoped_session(sessionmaker(engine), lambda: key[0], max_scopes=2)

    def use(*keys: str) -> None:
        for name in keys:
            key[0] = name
            db()

    use("a", "b", "c", "d")
    assert [3] == [w["live"] for w in leak_warnings(logs)]
    for name in ("b", "c", "d"):
        key[0] = name
        db.remove()
    use("e", "f")

    warnings = leak_warnings(logs)
    assert [(3, "c"), (3, "f")] == [(w["live"], w["scope"]) for w in warnings]
    assert {("max_scopes", 2)} == {(w["reason"], w["max_scopes"]) for w in warnings}
    assert 3 == db.registry.stats()["live"]


def test_check_leaks_from_a_health_endpoint(engine: sa.Engine, logs: Logs) -> None:
    """check_leaks() reports newly suspected sessions once each and closes none."""
    key = ["a"]
    db = scoped_session(sessionmaker(engine), lambda: key[0], leak_after=0.05)
    for name in ("a", "b", "c"):
        key[0] = name
        db()

    assert 0 == db.registry.check_leaks()
    time.sleep(0.06)
    assert 3 == db.registry.check_leaks()
    assert 0 == db.registry.check_leaks()
    assert 3 == len(leak_warnings(logs))
    assert 3 == len(db.registry.entries())


# -- introspection -------------------------------------------------------------


def test_entries_describe_each_live_scope(engine: sa.Engine) -> None:
    """entries() lists each live scope's key, session, creating thread and age."""
    key = ["a"]
    db = scoped_session(sessionmaker(engine), lambda: key[0])
    first = db()
    time.sleep(0.01)  # the first is measurably older
    key[0] = "b"
    creator = threading.Thread(target=db, name="worker-3")
    creator.start()
    creator.join()
    key[0] = "b"
    second = db()

    entries = sorted(db.registry.entries(), key=lambda entry: entry["scope"])

    assert [("a", first, "MainThread"), ("b", second, "worker-3")] == [
        (entry["scope"], entry["session"], entry["thread"]) for entry in entries
    ]
    assert entries[0]["age"] > entries[1]["age"] > 0
    assert 2 == len({entry["session_id"] for entry in entries})


def test_entries_name_the_thread_of_thread_scoped_sessions(
    engine: sa.Engine,
) -> None:
    """For the thread scope, an entry's scope is its thread."""
    db = scoped_session(sessionmaker(engine))
    ready, done = threading.Event(), threading.Event()

    def work() -> None:
        db()
        ready.set()
        done.wait(10)

    worker = threading.Thread(target=work, name="worker-9")
    worker.start()
    ready.wait(10)
    try:
        [entry] = db.registry.entries()
        assert ("worker-9", "worker-9") == (entry["scope"], entry["thread"])
    finally:
        done.set()
        worker.join()
    assert [] == db.registry.entries()


def test_stats_count_removals_and_automatic_cleanups(
    engine: sa.Engine, in_threads: Callable[..., list[Any]]
) -> None:
    """stats() counts sessions created, removed, cleaned up at scope end, live."""
    db = scoped_session(sessionmaker(engine))

    def removes(_: int) -> None:
        query(db)
        db.remove()

    in_threads(3, lambda _: query(db))
    in_threads(2, removes)
    query(db)

    assert {"created": 6, "removed": 2, "cleaned_up": 3, "live": 1} == (
        db.registry.stats()
    )
    db.remove()
    assert {"created": 6, "removed": 3, "cleaned_up": 3, "live": 0} == (
        db.registry.stats()
    )
