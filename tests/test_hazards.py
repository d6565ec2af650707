"""Hazards measured with SQLAlchemy's registries, each shown gone with scoped's.

Every test runs the same workload through ``sqlalchemy.orm.scoped_session``
(or ``async_scoped_session``) and through :func:`scoped.scoped_session`, so
that it shows both the hazard and its absence.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm import scoped_session as sa_scoped_session

from scoped import scoped_session

TRIALS = 200


def handed_over(db: Any, *, query: bool) -> bool:
    """One trial: a thread uses the session and exits without ``remove()``,
    then a new thread starts; tell whether it received the dead one's session.
    """
    dead: list[Session] = []
    received: list[bool] = []

    def use() -> None:
        if query:
            db.execute(sa.text("select 1"))
        dead.append(db())

    def look() -> None:
        received.append(db.registry.has() and db() is dead[0])

    for target in (use, look):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    return received[0]


def test_a_new_thread_never_receives_a_dead_threads_session(
    engine: sa.Engine,
) -> None:
    """With scopefunc=threading.get_ident, new threads reuse dead threads'
    ids and so their sessions in SQLAlchemy, never in scoped."""
    factory = sessionmaker(engine)
    theirs = sa_scoped_session(factory, scopefunc=threading.get_ident)
    ours = scoped_session(factory, scopefunc=threading.get_ident)

    # SQLAlchemy's sessions stay in its registry: no query, or they would
    # hold the pool's connections.
    theirs_handed = sum(handed_over(theirs, query=False) for _ in range(TRIALS))
    ours_handed = sum(handed_over(ours, query=True) for _ in range(TRIALS))

    assert theirs_handed > 0
    assert 0 == ours_handed
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert {"created": TRIALS, "removed": 0, "cleaned_up": TRIALS, "live": 0} == (
        ours.registry.stats()
    )
    theirs.registry.registry.clear()


def finished_tasks(
    make: Callable[[], Any], count: int
) -> tuple[Any, list[weakref.ref[asyncio.Task[Any]]]]:
    """Run *count* tasks that use the session and end without remove().

    Returns the registry-bearing object *make* built and weak references to
    the finished tasks, after a garbage collection.
    """
    refs: list[weakref.ref[asyncio.Task[Any]]] = []

    async def job(db: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        refs.append(weakref.ref(task))
        db()

    async def main() -> Any:
        db = make()
        await asyncio.gather(*(job(db) for _ in range(count)))
        if isinstance(db, async_scoped_session):
            for session in list(db.registry.registry.values()):
                await session.close()  # closed, yet still registered
        return db

    db = asyncio.run(main())
    gc.collect()
    return db, refs


def test_finished_tasks_and_their_sessions_are_not_kept(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """With scopefunc=asyncio.current_task, SQLAlchemy's async registry keeps
    1,000 finished tasks and their sessions; scoped keeps none."""
    aengine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
    try:
        theirs, their_tasks = finished_tasks(
            lambda: async_scoped_session(
                async_sessionmaker(aengine), scopefunc=asyncio.current_task
            ),
            1_000,
        )
        ours, our_tasks = finished_tasks(
            lambda: scoped_session(sessionmaker(engine), asyncio.current_task), 1_000
        )

        assert 1_000 == len(theirs.registry.registry)
        assert 1_000 == sum(ref() is not None for ref in their_tasks)
        assert {"created": 1_000, "removed": 0, "cleaned_up": 1_000, "live": 0} == (
            ours.registry.stats()
        )
        assert 0 == sum(ref() is not None for ref in our_tasks)
    finally:
        asyncio.run(aengine.dispose())


def test_a_pool_thread_does_not_pass_a_session_to_its_next_job(
    engine: sa.Engine,
) -> None:
    """A reused pool thread hands a job's session to the next job with
    SQLAlchemy's registry; in scoped's scope() blocks every job starts fresh."""
    factory = sessionmaker(engine)
    theirs = sa_scoped_session(factory)
    ours = scoped_session(factory)

    def their_job(_: int) -> Session:
        return theirs()  # no remove(): the session stays with the thread

    def our_job(_: int) -> Session:
        with ours.scope():
            ours.execute(sa.text("select 1"))
            return ours()

    with ThreadPoolExecutor(max_workers=1) as pool:
        their_sessions = list(pool.map(their_job, range(5)))
        our_sessions = list(pool.map(our_job, range(5)))
        assert 0 == ours.registry.stats()["live"]

    assert 1 == len({id(session) for session in their_sessions})
    assert 5 == len({id(session) for session in our_sessions})
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
