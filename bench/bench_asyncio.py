"""Per-call overhead of scoped's async proxies against SQLAlchemy's.

One process, one event loop, one running task holding one ``AsyncSession``
(aiosqlite, in memory) behind two proxies: SQLAlchemy's
``async_scoped_session(factory, scopefunc=asyncio.current_task)`` and
``scoped.asyncio.async_scoped_session(factory)`` (the task scope). For every
row the same statement is timed on the session itself ("direct") and through
each proxy, inside the task; the overhead is the proxy's time minus the
direct time. Every timer is sampled in a shuffled order on every round
(interleaved) and keeps its best sample (best of N), with the sampler of
``bench/run.py``.

Coroutine rows time ``await x.rollback()``: the awaited call never
suspends, so the timing coroutine is stepped synchronously from the task,
and the proxy's own coroutine is part of what both libraries pay. The real
``rollback()`` of a session without a transaction spends about 10 us in
SQLAlchemy's greenlet round trip, with jitter larger than the proxies'
difference, so the gated row uses an ``AsyncSession`` subclass whose
``rollback()`` is a no-op coroutine (both libraries proxy it as they proxy
``AsyncSession``); the real one is shown for information.

A row passes when our overhead is at most 0.5 times SQLAlchemy's. The
``db()`` row times the whole lookup (there is no direct equivalent); it is
shown for information.

Usage: ``python bench/bench_asyncio.py [--rounds N] [--sample-ms MS] [--strict]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from run import (
    Result,
    best_times,
    describe_machine,
    parse_timing,
    render_text,
    timing_arguments,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import async_scoped_session as sa_async_scoped_session

from scoped.asyncio import async_scoped_session

#: Our overhead may be at most this fraction of SQLAlchemy's.
TARGET = 0.5


@dataclass(frozen=True)
class Row:
    """One line of the table: a statement on ``x``, timed per proxy."""

    label: str
    stmt: str
    awaited: bool = False
    gated: bool = True
    #: Time it on a :class:`CheapRollback` session.
    cheap: bool = False


class CheapRollback(AsyncSession):
    """An ``AsyncSession`` whose ``rollback()`` costs next to nothing."""

    async def rollback(self) -> None:
        """Roll back nothing."""


ROWS = [
    Row("autoflush (attribute)", "x.autoflush"),
    Row("get_bind() (method)", "x.get_bind()"),
    Row("await rollback() (no-op)", "await x.rollback()", awaited=True, cheap=True),
    Row("await rollback() (real)", "await x.rollback()", awaited=True, gated=False),
    Row("db() (lookup)", "x()", gated=False),
]


class AwaitTimer:
    """A ``timeit.Timer`` look-alike for a statement with ``await``.

    The statement must complete without suspending; the loop of awaits is
    one coroutine, stepped once from the calling (running) task.
    """

    def __init__(self, stmt: str, x: Any) -> None:
        source = (
            "async def timed(loops, x, clock):\n"
            "    start = clock()\n"
            "    for _ in range(loops):\n"
            f"        {stmt}\n"
            "    return clock() - start\n"
        )
        namespace: dict[str, Any] = {}
        exec(source, namespace)  # the statements above, not user input
        self._timed: Callable[..., Any] = namespace["timed"]
        self._x = x

    def timeit(self, number: int) -> float:
        coro = self._timed(number, self._x, time.perf_counter)
        try:
            coro.send(None)
        except StopIteration as done:
            return float(done.value)
        coro.close()
        msg = "the timed statement suspended; it must complete synchronously"
        raise RuntimeError(msg)


def _timer(row: Row, x: Any) -> Any:
    if row.awaited:
        return AwaitTimer(row.stmt, x)
    return timeit.Timer(row.stmt, globals={"x": x})


async def measure(rounds: int, sample_s: float, seed: int) -> list[Result]:
    """Time every row from inside this task."""
    engine = create_async_engine("sqlite+aiosqlite://")
    proxies: dict[tuple[str, bool], Any] = {}
    sessions: dict[bool, AsyncSession] = {}
    for cheap in (False, True):
        factory = async_sessionmaker(
            engine, class_=CheapRollback if cheap else AsyncSession
        )
        sessions[cheap] = session = factory()
        proxies["sa", cheap] = sa_async_scoped_session(
            factory, scopefunc=asyncio.current_task
        )
        # Lifecycle events fire on creation and removal only, never per call.
        proxies["ours", cheap] = async_scoped_session(factory, log=False)
        for lib in ("sa", "ours"):
            proxies[lib, cheap].registry.set(session)
            assert proxies[lib, cheap]() is session
    timers: dict[tuple[str, str], Any] = {}
    for row in ROWS:
        if row.gated:
            timers["direct", row.label] = _timer(row, sessions[row.cheap])
        for lib in ("sa", "ours"):
            timers[lib, row.label] = _timer(row, proxies[lib, row.cheap])
    try:
        best = best_times(timers, rounds, sample_s, seed)
    finally:
        for proxy in proxies.values():
            await proxy.remove()
        await engine.dispose()
    return [
        Result(
            row,
            best["direct", row.label] if row.gated else None,
            best["sa", row.label],
            best["ours", row.label],
            target=TARGET,
        )
        for row in ROWS
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_arguments(parser, rounds=41, sample_ms=10.0)
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a gated row fails"
    )
    args = parse_timing(parser, argv)

    started = time.perf_counter()
    results = asyncio.run(measure(args.rounds, args.sample_ms / 1000, args.seed))
    elapsed = time.perf_counter() - started
    for line in describe_machine():
        print(line)
    print(
        f"best of {args.rounds} interleaved samples of ~{args.sample_ms:g} ms per "
        f"timer, {elapsed:.0f} s in all; inside a running task; overhead = proxy "
        "- direct on the same AsyncSession"
    )
    print()
    print(render_text(results, TARGET))
    failed = [r.row.label for r in results if r.verdict == "FAIL"]
    if failed:
        print(f"\nabove {TARGET}x of SQLAlchemy's overhead: {'; '.join(failed)}")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
