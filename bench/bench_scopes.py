"""What scopes that clean up after themselves cost.

One process, SQLAlchemy sessions on a SQLite file, three questions:

1. **Lookup with many live scopes.** The current scope's session is looked
   up (``db()``) in a registry holding 10,000 live scopes and in one holding
   only the current scope, for plain keys (a request id from a
   ``ContextVar``), request objects (``scopes.objects`` and a plain scope
   function returning them) and the task scope (10,000 live tasks). Passes
   at a ratio of at most 1.2.
2. **Create + remove.** ``db(); db.remove()`` on the thread scope, against
   ``sqlalchemy.orm.scoped_session``; and beside 10,000 live plain-key scopes
   with ``leak_after`` and ``max_scopes`` set, against the same without
   them (the leak checks run on every creation). Both pass at 1.2.
3. **Automatic cleanup.** A scope that ends without ``remove()`` (a thread
   exits, a task ends, a context or request object is dropped) against the
   same scope calling ``remove()`` before it ends. Passes at 1.5.

Each group is timed with the sampler of ``bench/run.py``: every timer is
sampled on every round in a shuffled order (interleaved) and keeps its best
sample (best of N). The task-scope lookups run inside a task that shares the
loop with 10,000 others, so they are a second interleaved set of their own.

Usage: ``python bench/bench_scopes.py [--rounds N] [--sample-ms MS] [--strict]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import functools
import operator
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from run import (
    best_times,
    describe_machine,
    format_table,
    parse_timing,
    timing_arguments,
)
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm import scoped_session as sa_scoped_session

from scoped import scoped_session, scopes

LIVE = 10_000


@dataclass(frozen=True)
class Row:
    """One ratio of the table: *numerator* time over *denominator* time."""

    group: str
    label: str
    numerator: str
    denominator: str
    limit: float


ROWS = [
    Row("lookup", "plain keys (ContextVar.get)", "keys-many", "keys-one", 1.2),
    Row("lookup", "scopes.objects(request)", "objects-many", "objects-one", 1.2),
    Row("lookup", "request objects, plain func", "weak-many", "weak-one", 1.2),
    Row("lookup", "scopes.task", "task-many", "task-one", 1.2),
    Row("create+remove", "thread scope vs SQLAlchemy", "cycle-ours", "cycle-sa", 1.2),
    Row("create+remove", "leak checks, 10,000 live", "checked", "unchecked", 1.2),
    Row("cleanup", "thread exits", "thread-auto", "thread-remove", 1.5),
    Row("cleanup", "task ends", "task-auto", "task-remove", 1.5),
    Row("cleanup", "context dropped", "context-auto", "context-remove", 1.5),
    Row("cleanup", "request dropped", "request-auto", "request-remove", 1.5),
]


class Request:
    """A web request object, compared by identity."""


def _filled(
    factory: sessionmaker[Session],
    scopefunc: Callable[[], Any],
    keys: Sequence[Callable[[], object]],
    **options: Any,
) -> scoped_session[Session]:
    """A registry with one session for each scope that *keys* make current."""
    db: scoped_session[Session] = scoped_session(
        factory, scopefunc, log=False, **options
    )
    for make_current in keys:
        make_current()
        db()
    return db


def _lookups(factory: sessionmaker[Session]) -> tuple[dict[str, timeit.Timer], Any]:
    """Timers for ``db()`` with LIVE scopes and with one; and what keeps them."""
    timers: dict[str, timeit.Timer] = {}

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    ids = [f"req-{i}" for i in range(LIVE)]
    setters: list[Callable[[], object]] = [
        functools.partial(request_id.set, name) for name in ids
    ]
    many = _filled(factory, request_id.get, setters)
    one = _filled(factory, request_id.get, setters[-1:])
    timers["keys-many"] = timeit.Timer("db()", globals={"db": many})
    timers["keys-one"] = timeit.Timer("db()", globals={"db": one})

    requests = [Request() for _ in range(LIVE)]
    current: list[Request] = [requests[-1]]
    get_request = functools.partial(operator.getitem, current, 0)
    setters = [functools.partial(operator.setitem, current, 0, r) for r in requests]
    for prefix, scopefunc in (
        ("objects", scopes.objects(get_request)),
        ("weak", lambda: current[0]),
    ):
        many = _filled(factory, scopefunc, setters)
        one = _filled(factory, scopefunc, setters[-1:])
        assert many.registry.stats()["live"] == LIVE
        timers[f"{prefix}-many"] = timeit.Timer("db()", globals={"db": many})
        timers[f"{prefix}-one"] = timeit.Timer("db()", globals={"db": one})
    job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id")
    setters = [functools.partial(job_id.set, name) for name in ids]
    for name, limits in (
        ("checked", {"leak_after": 3600.0, "max_scopes": 2 * LIVE}),
        ("unchecked", {}),
    ):
        db = _filled(factory, job_id.get, setters, **limits)
        timers[name] = timeit.Timer("db(); db.remove()", globals={"db": db})
    job_id.set("next")
    return timers, requests


def _cycles(
    factory: sessionmaker[Session], loop: asyncio.AbstractEventLoop
) -> dict[str, timeit.Timer]:
    """Create + remove, and scopes ending with and without remove().

    Task cycles run one task each on *loop*.
    """
    ours = scoped_session(factory)
    theirs = sa_scoped_session(factory)
    timers = {
        "cycle-ours": timeit.Timer("db(); db.remove()", globals={"db": ours}),
        "cycle-sa": timeit.Timer("db(); db.remove()", globals={"db": theirs}),
    }

    def use_and_remove(db: Any) -> None:
        db()
        db.remove()

    thread_db = scoped_session(factory)
    thread_cycle = (
        "t = Thread(target=work); t.start(); t.join()"  # a fresh thread each time
    )
    for name, work in (
        ("thread-auto", thread_db),
        ("thread-remove", functools.partial(use_and_remove, thread_db)),
    ):
        timers[name] = timeit.Timer(
            thread_cycle, globals={"Thread": threading.Thread, "work": work}
        )

    task_db = scoped_session(factory, scopes.task)

    async def task_auto() -> None:
        task_db()

    async def task_remove() -> None:
        use_and_remove(task_db)

    for name, job in (("task-auto", task_auto), ("task-remove", task_remove)):
        timers[name] = timeit.Timer(
            "run(job())", globals={"run": loop.run_until_complete, "job": job}
        )

    context_db = scoped_session(factory, scopes.context)
    for name, work in (
        ("context-auto", context_db),
        ("context-remove", functools.partial(use_and_remove, context_db)),
    ):
        timers[name] = timeit.Timer(
            "Context().run(work)",
            globals={"Context": contextvars.Context, "work": work},
        )

    current: list[Request | None] = [None]
    request_db = scoped_session(
        factory, scopes.objects(functools.partial(operator.getitem, current, 0))
    )
    timers["request-auto"] = timeit.Timer(
        "current[0] = Request(); db(); current[0] = None",
        globals={"current": current, "Request": Request, "db": request_db},
    )
    timers["request-remove"] = timeit.Timer(
        "current[0] = Request(); db(); db.remove(); current[0] = None",
        globals={"current": current, "Request": Request, "db": request_db},
    )
    return timers


async def _task_lookups(
    factory: sessionmaker[Session], rounds: int, sample_s: float, seed: int
) -> dict[str, float]:
    """Time the task scope's lookup from a task beside LIVE - 1 live others."""
    many = scoped_session(factory, scopes.task, log=False)
    one = scoped_session(factory, scopes.task, log=False)
    release = asyncio.Event()
    started = 0

    async def parked() -> None:
        nonlocal started
        many()
        started += 1
        await release.wait()

    tasks = [asyncio.create_task(parked()) for _ in range(LIVE - 1)]
    while started < LIVE - 1:
        await asyncio.sleep(0)
    many()
    one()
    assert many.registry.stats()["live"] == LIVE
    timers = {
        "task-many": timeit.Timer("db()", globals={"db": many}),
        "task-one": timeit.Timer("db()", globals={"db": one}),
    }
    try:
        # Synchronous: the loop (and every parked task) waits meanwhile.
        return best_times(timers, rounds, sample_s, seed)
    finally:
        release.set()
        await asyncio.gather(*tasks)


def measure(rounds: int, sample_s: float, seed: int) -> dict[str, float]:
    """Best nanoseconds per statement of every timer."""
    with tempfile.TemporaryDirectory(prefix="scoped-bench-") as tmp:
        engine = create_engine(f"sqlite:///{tmp}/bench.db")
        factory = sessionmaker(engine)
        try:
            timers, requests = _lookups(factory)
            loop = asyncio.new_event_loop()
            try:
                timers.update(_cycles(factory, loop))
                best = best_times(timers, rounds, sample_s, seed)
            finally:
                loop.close()
            del requests  # kept alive while their sessions were looked up
            best.update(asyncio.run(_task_lookups(factory, rounds, sample_s, seed)))
            return best
        finally:
            engine.dispose()


def render(best: dict[str, float]) -> tuple[str, list[str]]:
    """The table, and the labels of the rows that failed."""
    header = ("group", "row", "ns", "baseline ns", "ratio", "target", "")
    rows = []
    failed = []
    for row in ROWS:
        ratio = best[row.numerator] / best[row.denominator]
        verdict = "PASS" if ratio <= row.limit else "FAIL"
        if verdict == "FAIL":
            failed.append(f"{row.group} {row.label}")
        rows.append(
            (
                row.group,
                row.label,
                f"{best[row.numerator]:,.0f}",
                f"{best[row.denominator]:,.0f}",
                f"{ratio:.2f}",
                f"<= {row.limit}",
                verdict,
            )
        )
    return format_table(header, rows, left=2), failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_arguments(parser, rounds=21, sample_ms=20.0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a row fails")
    args = parse_timing(parser, argv)

    started = time.perf_counter()
    best = measure(args.rounds, args.sample_ms / 1000, args.seed)
    elapsed = time.perf_counter() - started
    for line in describe_machine():
        print(line)
    print(
        f"best of {args.rounds} interleaved samples of ~{args.sample_ms:g} ms per "
        f"timer (at least 1,000 statements each), {elapsed:.0f} s in all"
    )
    print()
    table, failed = render(best)
    print(table)
    if failed:
        print(f"\nabove target: {'; '.join(failed)}")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
