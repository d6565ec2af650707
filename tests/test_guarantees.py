"""What the registry guarantees when threads, forks and timing get in the way.

Each test states one guarantee and holds its race open deterministically
where an event can (a session whose ``close()`` or constructor waits), and
with forced thread switches and barriers where nothing can.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from recording import Recorded, Started, balanced

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

    reached = caller.join()
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
    setter = Started(lambda: db.registry.set(replacement), name="setter")
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
