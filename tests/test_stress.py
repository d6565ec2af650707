"""Many threads and event loops at once, with forced thread switches.

Each test drives one kind of scope from 16 threads (and several event loops
for the task scope) through seeded random mixes of creation, lookup,
``remove()``, ``set()``, ``clear()``, ``scope()`` blocks, thread and task
ends and cancellation, while a reader checks every ``stats()`` snapshot.
Afterwards: no caller saw an exception, no session served two scopes, each
session was closed exactly once, and none is live.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import random
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import run_in_threads
from extension import both
from recording import AsyncRecorded, Recorded, Started, balanced, switching

from scoped import scoped_session, scopes
from scoped.asyncio import async_scoped_session
from scoped.proxies import _codegen
from scoped.registry import MISSING

pytestmark = [
    pytest.mark.stress,
    pytest.mark.thread_unsafe(reason="sets the process-wide switch interval"),
]

THREADS = 16

SPEEDUPS = both(False, True, in_use=_codegen._compiled_attribute is not None)


@pytest.fixture(params=SPEEDUPS)
def speedups(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Generate the test's proxies with the C attributes, or without."""
    monkeypatch.setattr(_codegen, "SPEEDUPS", request.param)
    return request.param  # type: ignore[no-any-return]


def _tracking(
    where: Callable[[], object], base: type[Recorded] = Recorded
) -> tuple[type[Recorded], list[Recorded]]:
    """A session class that records every instance, and where each is used.

    *where* names the scope a use happens in; ``seen`` collects them per
    session, so a session that served two scopes shows two.
    """
    made: list[Recorded] = []
    lock = threading.Lock()

    class Tracked(base):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            super().__init__()
            self.seen: set[object] = set()
            with lock:
                made.append(self)

        def ping(self) -> Recorded:
            self.seen.add(where())
            return super().ping()  # type: ignore[no-any-return]

    return Tracked, made


def _reach(db: Any, rng: random.Random) -> Recorded:
    """The current session, through a proxied method, property or the call."""
    how = rng.randrange(3)
    if how == 0:
        return db.ping()  # type: ignore[no-any-return]
    session = db.me if how == 1 else db()
    session.ping()
    return session  # type: ignore[no-any-return]


@contextmanager
def _stats_checked(db: Any) -> Iterator[list[dict[str, int]]]:
    """Check every ``stats()`` snapshot while the block runs; yields the
    snapshots that did not add up (at most a few)."""
    broken: list[dict[str, int]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set() and len(broken) < 3:
            snapshot = db.registry.stats()
            if not balanced(snapshot):
                broken.append(snapshot)

    reader = Started(read, name="stats reader")
    try:
        yield broken
    finally:
        done.set()
        reader.join()


def _assert_all_closed_once(db: Any, made: list[Recorded]) -> None:
    gc.collect()
    # Every session here is a _tracking() class, which adds seen.
    shared = [sorted(map(repr, s.seen)) for s in made if len(s.seen) > 1]  # type: ignore[attr-defined]
    assert [] == shared[:3], "sessions used in more than one scope"
    closes = [s.closes for s in made]
    assert [] == [c for c in closes if c != 1][:10], (
        f"{sum(c == 0 for c in closes)} of {len(made)} never closed, "
        f"{sum(c > 1 for c in closes)} closed more than once"
    )
    stats = db.registry.stats()
    assert 0 == stats["live"], stats
    assert balanced(stats), stats


# -- the thread scope ------------------------------------------------------------


def test_thread_scope(speedups: bool) -> None:
    """Threads that create, look up, remove, set, clear, open blocks, start
    short-lived threads and exit with or without ``remove()``."""
    session_class, made = _tracking(threading.current_thread)
    db = scoped_session(session_class)

    def short_lived(rng: random.Random) -> None:
        # Ends without remove(): the thread's end closes its session.
        _reach(db, rng)

    def work(index: int) -> None:
        rng = random.Random(index)
        current: Recorded | None = None
        for _ in range(600):
            op = rng.randrange(10)
            if op < 4:
                session = _reach(db, rng)
                assert current is None or session is current
                current = session
            elif op == 4:
                db.remove()
                current = None
            elif op == 5:
                replacement = session_class()
                replaced = db.registry.peek()
                db.registry.set(replacement)
                if replaced is not MISSING:
                    replaced.close()  # set() hands the old one back to us
                current = replacement
            elif op == 6:
                cleared = db.registry.peek()
                db.registry.clear()
                if cleared is not MISSING:
                    cleared.close()
                current = None
            elif op == 7:
                with db.scope():
                    inner = _reach(db, rng)
                    assert inner is not current
                assert db.registry.peek() is (MISSING if current is None else current)
            else:
                Started(lambda: short_lived(rng), name=f"short {index}").join()
        if index % 2:
            db.remove()

    with switching(), _stats_checked(db) as broken:
        run_in_threads(THREADS, work)
    assert [] == broken
    _assert_all_closed_once(db, made)


# -- a custom key shared by several threads ----------------------------------------


def test_shared_custom_keys(speedups: bool) -> None:
    """Groups of four threads share a scope key: each round they all use it,
    two of them remove its session at once, and the key moves on."""
    groups, rounds = 4, 150
    local = threading.local()
    generation = [0] * groups

    def key() -> str:
        return f"{local.group}/{generation[local.group]}"

    session_class, made = _tracking(key)
    db = scoped_session(session_class, key)
    barriers = [threading.Barrier(THREADS // groups, timeout=20) for _ in range(groups)]
    per_round: dict[str, set[int]] = {}
    lock = threading.Lock()

    def work(index: int) -> None:
        rng = random.Random(index)
        local.group = group = index % groups
        barrier = barriers[group]
        try:
            for _ in range(rounds):
                session = _reach(db, rng)
                with lock:
                    per_round.setdefault(key(), set()).add(id(session))
                barrier.wait()
                if index < 2 * groups:  # two threads per group remove at once
                    db.remove()
                if barrier.wait() == 0:
                    generation[group] += 1
                barrier.wait()
        except BaseException:
            barrier.abort()
            raise

    with switching(), _stats_checked(db) as broken:
        run_in_threads(THREADS, work)
    assert [] == broken
    assert [] == [k for k, ids in per_round.items() if len(ids) != 1]
    assert groups * rounds == len(made)
    _assert_all_closed_once(db, made)


# -- the context scope -------------------------------------------------------------


def test_context_scope(speedups: bool) -> None:
    """Threads run jobs in fresh contexts: each job's session is its own,
    whether the job removes it, leaves it in a ``scope()`` block or just
    ends (the context's end closes it)."""
    session_class, made = _tracking(lambda: id(scopes.context()))
    db = scoped_session(session_class, scopes.context)

    def job(rng: random.Random) -> None:
        first = _reach(db, rng)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(4)
            if op == 0:
                assert _reach(db, rng) is first
            elif op == 1:
                with db.scope():
                    assert _reach(db, rng) is not first
                assert db.registry.peek() is first
            elif op == 2:
                # A copy of the context is the same scope.
                assert contextvars.copy_context().run(_reach, db, rng) is first
            else:
                db.remove()
                first = _reach(db, rng)
        if rng.randrange(2):
            db.remove()

    def work(index: int) -> None:
        rng = random.Random(index)
        for _ in range(300):
            contextvars.Context().run(job, rng)

    with switching(), _stats_checked(db) as broken:
        run_in_threads(THREADS, work)
    assert [] == broken
    _assert_all_closed_once(db, made)


# -- the task scope ----------------------------------------------------------------


class _Yielding(AsyncRecorded):
    """An async close that yields to the loop twice: room for cancellation."""

    async def _closing(self) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)


def test_task_scope(speedups: bool) -> None:
    """Long-lived loops and one-job loops in a thread pool run tasks that
    use their session and end, remove it, open ``async with db.scope()``
    blocks, or are cancelled in the middle of a close; loops report no
    exception and every session is closed once."""
    session_class, made = _tracking(asyncio.current_task, _Yielding)
    db = async_scoped_session(session_class)
    reported: list[str] = []

    async def one_task(rng: random.Random) -> None:
        session = _reach(db, rng)
        op = rng.randrange(5)
        if op == 0:
            await db.remove()
        elif op == 1:
            async with db.scope():
                assert _reach(db, rng) is not session
            assert db.registry.peek() is session
        elif op == 2:
            # Cancelled somewhere in the close, or before it.
            await _cancelled_after(rng.randrange(4), db.remove())
        elif op == 3:
            # A timeout around a scope block, cancelled while it closes.
            async def block() -> None:
                async with db.scope():
                    _reach(db, rng)

            await _cancelled_after(rng.randrange(4), block())
        # op 4: the task just ends.

    async def batch(seed: int, tasks: int) -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reported.append(
                f"{context.get('message')}: {context.get('exception')!r}"
            )
        )
        rng = random.Random(seed)
        await asyncio.gather(*(one_task(rng) for _ in range(tasks)))
        await db.wait_closed()

    def long_lived(index: int) -> None:
        for round_ in range(10):
            asyncio.run(batch(index * 100 + round_, 40))

    def one_job_loops(index: int) -> None:
        for job in range(30):
            asyncio.run(batch(10_000 + index * 100 + job, 5))

    def work(index: int) -> None:
        (long_lived if index < 4 else one_job_loops)(index)

    with switching(), _stats_checked(db) as broken:
        run_in_threads(THREADS, work)
    assert [] == broken
    assert [] == reported[:3]
    _assert_all_closed_once(db, made)


async def _cancelled_after(steps: int, work: Awaitable[None]) -> None:
    """Await *work* in the current task, which is cancelled after *steps*
    turns of the loop, during *work* or just after it; the cancellation
    ends here."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def countdown(left: int) -> None:
        if left:
            loop.call_soon(countdown, left - 1)
        else:
            task.cancel()

    countdown(steps)
    try:
        await work
        while True:  # until the cancellation arrives, a few turns at most
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        if sys.version_info >= (3, 11):
            task.uncancel()
