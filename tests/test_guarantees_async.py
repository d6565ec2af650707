"""What the async registry guarantees across event loops and cancellation."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from recording import AsyncRecorded, Started, balanced

from scoped import scopes
from scoped.asyncio import AnyAsyncScopedSession, async_scoped_session

# -- 4: closes started on loops in several threads ----------------------------


class _PausingLoop(asyncio.SelectorEventLoop):
    """A loop that, the first time another thread asks whether it is closed
    after :meth:`arm`, keeps that thread waiting a moment for a third thread.

    That question is what a thread scanning every loop with pending closes
    asks; the pause holds the scan open while another loop starts closes.
    """

    def arm(self, paused: threading.Event, resume: threading.Event) -> None:
        self._owner = threading.get_ident()
        self._pause: tuple[threading.Event, threading.Event] | None = (paused, resume)

    def is_closed(self) -> bool:
        pause = getattr(self, "_pause", None)
        if pause is not None and threading.get_ident() != self._owner:
            self._pause = None
            paused, resume = pause
            paused.set()
            # A registry that scans under a lock keeps the other thread out
            # instead; then waiting longer would prove nothing.
            resume.wait(2.0)
        return super().is_closed()


def _task_session_ends(db: AnyAsyncScopedSession[Any]) -> Callable[[], Any]:
    """A coroutine function: a task uses its session and ends; return it once
    its close has finished."""

    async def run() -> AsyncRecorded:
        used = asyncio.get_running_loop().create_task(_use(db))
        session = await used
        await db.wait_closed()
        return session

    return run


async def _use(db: AnyAsyncScopedSession[Any]) -> AsyncRecorded:
    return db.ping()  # type: ignore[no-any-return]


@pytest.mark.thread_unsafe(reason="pauses whichever thread scans the loops' closes")
def test_closes_started_on_loops_in_other_threads_are_all_finished() -> None:
    """A task's session is closed when the task ends, and counted cleaned up
    only then, while loops in other threads start and finish closes of their
    own; nothing is reported to any loop's exception handler.

    One loop with pending closes idles in the main thread; a second thread's
    task ends while a third thread's loop starts its first close.
    """
    db = async_scoped_session(AsyncRecorded)
    idle = _PausingLoop()
    scanned, inserted, finished = (threading.Event() for _ in range(3))
    reported: list[dict[str, Any]] = []
    try:
        first = idle.run_until_complete(_task_session_ends(db)())
        idle.arm(scanned, inserted)

        async def scanning() -> AsyncRecorded:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _, context: reported.append(context))
            try:
                return await _task_session_ends(db)()  # type: ignore[no-any-return]
            finally:
                finished.set()

        async def starting() -> AsyncRecorded:
            # Wait for the other thread's scan (or its end, if it never
            # scans), start this loop's first close, then keep the loop alive
            # until that thread is done.
            await asyncio.to_thread(_either, scanned, finished, 10.0)
            session = await _task_session_ends(db)()
            inserted.set()
            await asyncio.to_thread(finished.wait, 10.0)
            return session  # type: ignore[no-any-return]

        starter = Started(lambda: asyncio.run(starting()), name="starting loop")
        scanner = Started(lambda: asyncio.run(scanning()), name="scanning loop")
        sessions = [first, scanner.join(), starter.join()]
    finally:
        idle.run_until_complete(idle.shutdown_asyncgens())
        idle.close()
        # A close that was never started warns when its coroutine is
        # collected: here, not in whichever test runs next.
        gc.collect()

    assert [] == [
        f"{context.get('message')}: {context.get('exception')!r}"
        for context in reported
    ]
    assert [1, 1, 1] == [session.closes for session in sessions]
    assert {"created": 3, "removed": 0, "cleaned_up": 3, "live": 0} == (
        db.registry.stats()
    )


def _either(first: threading.Event, second: threading.Event, timeout: float) -> None:
    """Wait until either event is set, for at most *timeout* seconds."""
    for _ in range(int(timeout / 0.005)):
        if first.is_set() or second.is_set():
            return
        second.wait(0.005)


# -- 5 and 6: cancelled while closing ------------------------------------------


class _Gate:
    """A session class whose close waits for :attr:`open`, and a helper that
    cancels a task once such a close has started."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.open = asyncio.Event()
        gate = self

        class GatedClose(AsyncRecorded):
            async def _closing(self) -> None:
                gate.closing.set()
                await gate.open.wait()

        self.session_class = GatedClose

    async def cancel_when_closing(
        self, task: asyncio.Task[Any], *, then_open: bool
    ) -> None:
        await self.closing.wait()
        task.cancel()
        if then_open:
            self.open.set()


def _uncancel(task: asyncio.Task[Any] | None) -> None:
    """Let *task* go on normally after it handled a cancellation (3.11+)."""
    if task is not None and sys.version_info >= (3, 11):
        task.uncancel()


@pytest.mark.parametrize(
    "scope", [scopes.task, scopes.context], ids=["task", "context"]
)
def test_cancelled_while_leaving_a_scope_block_restores_the_outer_session(
    scope: Any,
) -> None:
    """A cancellation (a timeout, a client gone) that arrives while ``async
    with db.scope():`` awaits its session's close still leaves the block: the
    outer session is current again, no open block is left behind, and the
    inner session's close is finished, not abandoned. The cancellation
    reaches the caller.
    """

    async def main() -> dict[str, Any]:
        gate = _Gate()
        db = async_scoped_session(gate.session_class, scope)
        me = asyncio.current_task()
        assert me is not None
        outer = db()
        helper = asyncio.create_task(gate.cancel_when_closing(me, then_open=True))
        inner: list[AsyncRecorded] = []
        with pytest.raises(asyncio.CancelledError):
            async with db.scope():
                inner.append(db())
        _uncancel(me)
        await helper
        result: dict[str, Any] = {
            "outer_is_current": db() is outer,
            "open_blocks": bool(db.registry.frames),
        }
        await db.wait_closed()
        result["inner_closes"] = inner[0].closes
        result["outer_closes"] = outer.closes
        await db.remove()
        result.update(outer_closed=outer.closes, stats=db.registry.stats())
        return result

    result = asyncio.run(main())
    assert {
        "outer_is_current": True,
        "open_blocks": False,
        "inner_closes": 1,
        "outer_closes": 0,
        "outer_closed": 1,
        "stats": {"created": 2, "removed": 2, "cleaned_up": 0, "live": 0},
    } == result


def test_a_cancelled_remove_still_closes_the_session_and_counts_it_then() -> None:
    """``await db.remove()`` cancelled during the close raises the
    cancellation to its caller, and the session is still closed; it is
    counted removed once that close has finished, not before.
    """
    gate = _Gate()
    db = async_scoped_session(gate.session_class)
    sessions: list[AsyncRecorded] = []

    async def main() -> dict[str, int]:
        sessions.append(db())
        me = asyncio.current_task()
        assert me is not None
        helper = asyncio.create_task(gate.cancel_when_closing(me, then_open=False))
        with pytest.raises(asyncio.CancelledError):
            await db.remove()
        _uncancel(me)
        await helper
        while_closing = db.registry.stats()
        gate.open.set()
        await db.wait_closed()
        return while_closing

    while_closing = asyncio.run(main())
    assert balanced(while_closing), while_closing
    assert 0 == while_closing["removed"]
    assert 1 == sessions[0].closes
    assert {"created": 1, "removed": 1, "cleaned_up": 0, "live": 0} == (
        db.registry.stats()
    )
