"""What the registry guarantees when threads, forks and timing get in the way.

Each test states one guarantee and holds its race open deterministically
where an event can (a session whose ``close()`` or constructor waits), and
with forced thread switches and barriers where nothing can.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_in_threads
from recording import Recorded, Started, balanced, in_child, switching

from scoped import scoped_session

#: Where the registry's own code lives, to tell its calls of a scope
#: function from the proxies' and the test's.
_REGISTRY_DIR = Path(sys.modules["scoped.registry"].__file__ or "").parent


def _called_from_registry() -> bool:
    """Whether the scope function running now was called by registry code."""
    caller = sys._getframe(2).f_code.co_filename
    return Path(caller).parent == _REGISTRY_DIR


def _use(db: Any, member: str) -> Any:
    """Reach the current session through a proxied method or property."""
    return db.ping() if member == "method" else db.me


# -- 1: a proxied call never fails because of another thread's timing --------


@pytest.mark.parametrize("member", ["method", "property"])
def test_a_creation_elsewhere_during_a_lookup_miss_is_not_an_error(
    member: str,
) -> None:
    """A proxied call that misses while another thread creates the scope's
    session reaches that session; it never raises the lookup's own miss.

    The race is held open at its worst point: the caller's lookup has missed
    and the registry is about to be asked about the scope when another
    thread sharing the scope key creates its session.
    """
    raced = threading.Event()
    others: list[Started[Any]] = []

    def key() -> str:
        if (
            threading.current_thread().name == "caller"
            and not raced.is_set()
            and _called_from_registry()
        ):
            raced.set()
            other = Started(db, name="other")
            others.append(other)
            # A registry that calls the scope function under its lock makes
            # the other thread wait for the caller instead: let it.
            other.finished(2.0)
        return "shared"

    db = scoped_session(Recorded, key)
    caller = Started(lambda: _use(db, member), name="caller")

    reached: Recorded | None = caller.join()
    for other in others:
        other.join()
    assert reached is db.registry.peek()
    assert all(other.result is reached for other in others)
    stats = db.registry.stats()
    assert {"created": 1, "live": 1} == {k: stats[k] for k in ("created", "live")}
    db.remove()
    assert 1 == reached.closes


# -- 2: each session is closed exactly once ----------------------------------


def _slow_first_close() -> tuple[type[Recorded], threading.Event, threading.Event]:
    """A session class whose first close (of any instance) waits for a release."""
    closing, release = threading.Event(), threading.Event()
    pending = [True]

    class SlowClose(Recorded):
        def close(self) -> None:
            super().close()
            if pending and pending.pop():
                closing.set()
                release.wait(10)

    return SlowClose, closing, release


def test_removes_from_two_threads_close_the_session_once_and_spare_the_next() -> None:
    """Two threads removing one scope's session close it once; a session the
    scope gets while that close is still running is not touched by it: it
    stays the scope's, live and open.

    The first close waits (a slow rollback) while a second thread removes the
    same scope and a third thread uses the scope again.
    """
    session_class, closing, release = _slow_first_close()
    db = scoped_session(session_class, lambda: "shared")
    first = db()

    remover = Started(db.remove, name="first remove")
    assert closing.wait(10)
    second = Started(db.remove, name="second remove")
    if not second.finished(2.0):
        # A registry may make the second remove() wait for the first close.
        release.set()
    second.join()
    following = db()
    release.set()
    remover.join()

    assert 1 == first.closes
    assert following is not first
    assert 0 == following.closes
    assert following is db()
    assert {"created": 2, "removed": 1, "cleaned_up": 0, "live": 1} == (
        db.registry.stats()
    )
    db.remove()
    assert 1 == following.closes
    assert {"created": 2, "removed": 2, "cleaned_up": 0, "live": 0} == (
        db.registry.stats()
    )


# -- 3: set() racing a creation ----------------------------------------------


def test_set_during_a_creation_leaves_one_session_in_the_scope() -> None:
    """``set(obj)`` while another thread creates the scope's session leaves
    exactly one object in the scope; the other is discarded, its entry no
    longer live, and the counters add up.
    """
    building, release = threading.Event(), threading.Event()

    class SlowInit(Recorded):
        def __init__(self) -> None:
            super().__init__()
            building.set()
            release.wait(10)

    db = scoped_session(SlowInit, lambda: "shared")
    replacement = Recorded()
    creator = Started(db, name="creator")
    assert building.wait(10)
    setter = Started(lambda: db.registry.set(replacement), name="setter")  # type: ignore[arg-type]
    if not setter.finished(2.0):
        # set() may wait for the creation in flight.
        release.set()
    release.set()
    created = creator.join()
    setter.join()

    held = db.registry.peek()
    assert held is replacement or held is created
    assert [held] == [entry["session"] for entry in db.registry.entries()]
    stats = db.registry.stats()
    assert 1 == stats["live"]
    assert balanced(stats), stats
    db.remove()
    assert 1 == held.closes
    stats = db.registry.stats()
    assert 0 == stats["live"]
    assert balanced(stats), stats


# -- 7, 8, 10: fork ----------------------------------------------------------


def needs_fork(test: Callable[..., None]) -> Callable[..., None]:
    """Skip without ``os.fork()``; never fork beside the test's own copies run
    in parallel, whose locks the child would inherit held."""
    test = pytest.mark.thread_unsafe(reason="forks the process")(test)
    return pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")(test)  # type: ignore[no-any-return]


SCOPES = pytest.mark.parametrize(
    "scopefunc", [None, lambda: "job"], ids=["thread", "keyed"]
)


@needs_fork
@SCOPES
def test_a_forked_child_can_leave_the_scope_block_it_was_forked_in(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """A child forked inside ``with db.scope():`` leaves that block as the
    parent would: its own session there is closed and removed, and the
    parent's sessions (the block's, the one set aside) never become the
    child's.
    """
    db = scoped_session(Recorded, scopefunc)
    outer = db()
    block = db.scope()
    block.__enter__()
    inside = db()

    def child() -> dict[str, Any]:
        mine = db()
        block.__exit__(None, None, None)
        current = db.registry.peek()
        return {
            "mine_is_new": mine is not inside and mine is not outer,
            "mine_closes": mine.closes,
            "parents_session_back": current is outer or current is inside,
            "stats": db.registry.stats(),
        }

    report = in_child(child)
    block.__exit__(None, None, None)

    assert "error" not in report, report["error"]
    stats = report.pop("stats")
    assert {
        "mine_is_new": True,
        "mine_closes": 1,
        "parents_session_back": False,
    } == report
    # How a child counts what it inherited is the fork's business; that the
    # counters add up, and that nothing is live, is not.
    assert balanced(stats), stats
    assert 0 == stats["live"], stats
    assert outer is db()
    assert (1, 0) == (inside.closes, outer.closes)


@needs_fork
@SCOPES
def test_a_forked_childs_counters_add_up(
    scopefunc: Callable[[], Any] | None,
) -> None:
    """The counters a forked child reports account for every session:
    ``created == removed + cleaned_up + live``, then and after it works.

    The parent has removed one session and holds others (gunicorn's
    ``preload_app`` forks such a process).
    """
    current = ["a"]
    db = scoped_session(Recorded, scopefunc and (lambda: current[0]))
    db()
    db.remove()
    for current[0] in ["a", "b", "c"]:
        db()
    # Sessions of other threads, live at the fork, which the child does not
    # inherit (for the thread scope; the same key's session otherwise).
    holding = threading.Barrier(3, timeout=10)
    release = threading.Event()

    def hold() -> None:
        db()
        holding.wait()
        release.wait(10)

    holders = [Started(hold, name=f"holder {i}") for i in range(2)]
    holding.wait()

    def child() -> dict[str, Any]:
        forked = db.registry.stats()
        db()
        db.remove()
        return {"forked": forked, "after": db.registry.stats()}

    report = in_child(child)
    release.set()
    for holder in holders:
        holder.join()
    db.remove()

    assert "error" not in report, report["error"]
    assert balanced(report["forked"]), report
    assert balanced(report["after"]), report
    assert 0 == report["after"]["live"] - report["forked"]["live"]


# -- 9: counters read while other threads work --------------------------------


@pytest.mark.thread_unsafe(reason="sets the process-wide switch interval")
def test_stats_snapshots_always_add_up_while_threads_create_and_remove() -> None:
    """Every ``stats()`` snapshot satisfies ``created == removed + cleaned_up
    + live``, however the threads that create and remove are interleaved
    with the reader (forced switches every 10 microseconds).

    The reader takes up to 50 000 snapshots (at most 3 s) while three
    threads create and remove; on the first one that does not add up it
    stops, and the test fails.
    """
    db = scoped_session(Recorded)
    workers = 3
    start = threading.Barrier(workers + 1, timeout=10)
    done = threading.Event()
    broken: list[dict[str, int]] = []

    def work(_: int) -> None:
        start.wait()
        created = 0
        while not done.is_set():
            db.ping()
            created += 1
            if created % 3:
                db.remove()
        db.remove()

    def read() -> None:
        try:
            start.wait()
            deadline = time.monotonic() + 3.0
            for _ in range(50_000):
                snapshot = db.registry.stats()
                if not balanced(snapshot):
                    broken.append(snapshot)
                    return
                if time.monotonic() > deadline:
                    return
        finally:
            done.set()

    with switching():
        reader = Started(read, name="reader")
        run_in_threads(workers, work)
        reader.join()

    assert [] == broken
    final = db.registry.stats()
    assert balanced(final), final
    assert 0 == final["live"]


@needs_fork
def test_a_child_forked_during_proxy_generation_can_generate_proxies() -> None:
    """A child forked while another thread generates the proxy class of a new
    session class can still create a ``scoped_session`` of a class not yet
    generated (within 5 s), instead of waiting forever for a thread that no
    longer exists in it.

    Generation is held open by a class whose member listing waits.
    """
    listing, release = threading.Event(), threading.Event()

    class SlowToList(type):
        def __dir__(cls) -> Iterable[str]:
            listing.set()
            release.wait(10)
            return super().__dir__()

    class Generating(Recorded, metaclass=SlowToList):
        pass

    class NotYetGenerated(Recorded):
        pass

    generator = Started(lambda: scoped_session(Generating), name="generator")
    try:
        assert listing.wait(10)

        def child() -> dict[str, Any]:
            db = scoped_session(NotYetGenerated)
            return {"forwards": db.ping() is db()}

        report = in_child(child, timeout=5)
    finally:
        release.set()
        generator.join()
    assert {"forwards": True} == report
