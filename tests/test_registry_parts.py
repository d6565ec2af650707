"""The registry's collaborators, each on its own: ledger, leak watch, frames,
closer and loop closers."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from extension import both

from scoped._extension import compiled
from scoped.lifecycle import Entry, Events
from scoped.registry._closing import Closer
from scoped.registry._frames import Frame, Frames
from scoped.registry._leaks import LeakWatch
from scoped.registry._ledger import Ledger, LedgerFields


def _entry(obj: object = None) -> Entry:
    return Entry(object() if obj is None else obj, "scope")


def _events() -> Events:
    return Events("parts", enabled=False)


# -- ledger --------------------------------------------------------------------

COMPILED_LEDGER = compiled("LedgerFields")


@pytest.fixture(
    params=both(LedgerFields, COMPILED_LEDGER, in_use=COMPILED_LEDGER is not None)
)
def new_ledger(request: pytest.FixtureRequest) -> Callable[[], Ledger]:
    """Ledgers built as :class:`Ledger` is, on the C fields or the Python ones."""
    base = request.param

    def init(self: Any) -> None:
        base.__init__(self)
        self.add = self._entries.setdefault

    methods = {
        name: value
        for name, value in vars(Ledger).items()
        if callable(value) and (name == "__len__" or not name.startswith("__"))
    }
    namespace = {"__slots__": ("add",), "__init__": init, **methods}
    return type("Ledger", (base,), namespace)


def test_the_ledger_is_built_on_the_extension_when_it_is_in_use() -> None:
    assert Ledger.__mro__[1] is (COMPILED_LEDGER or LedgerFields)


def test_settle_takes_its_flag_by_keyword_only(
    new_ledger: Callable[[], Ledger],
) -> None:
    ledger = new_ledger()
    entry = _entry()
    ledger.add(entry)
    with pytest.raises(TypeError):
        ledger.settle(entry, True)  # type: ignore[call-arg]
    assert 1 == len(ledger)


def test_a_ledger_without_its_lock_refuses_to_settle(
    new_ledger: Callable[[], Ledger],
) -> None:
    ledger = new_ledger()
    entry = _entry()
    ledger.add(entry)
    del ledger.lock
    with pytest.raises(AttributeError):
        ledger.settle(entry, removed=True)
    assert 1 == len(ledger)


def test_settle_holds_the_ledgers_lock(new_ledger: Callable[[], Ledger]) -> None:
    """While another thread holds the lock, settling waits for it."""
    ledger = new_ledger()
    entry = _entry()
    ledger.add(entry)
    settled = threading.Event()

    def settle() -> None:
        ledger.settle(entry, removed=True)
        settled.set()

    with ledger.lock:
        thread = threading.Thread(target=settle)
        thread.start()
        assert not settled.wait(0.2)
        assert 1 == len(ledger)
    thread.join()
    assert settled.is_set()
    assert {"created": 1, "removed": 1, "cleaned_up": 0, "live": 0} == ledger.stats()


def test_settling_from_many_threads_counts_every_entry_once(
    new_ledger: Callable[[], Ledger],
) -> None:
    """Eight threads settle the same 400 entries, as removed or cleaned up:
    each is counted once, and every snapshot taken meanwhile adds up."""
    ledger = new_ledger()
    entries = [_entry() for _ in range(400)]
    for entry in entries:
        ledger.add(entry)
    barrier = threading.Barrier(9)
    wins: list[int] = []
    snapshots: list[dict[str, int]] = []

    def settle(removed: bool) -> None:
        barrier.wait()
        wins.append(sum(ledger.settle(e, removed=removed) for e in entries))

    def watch() -> None:
        barrier.wait()
        for _ in range(200):
            snapshots.append(ledger.stats())

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [
            threading.Thread(target=settle, args=(i % 2 == 0,)) for i in range(8)
        ]
        threads.append(threading.Thread(target=watch))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    stats = ledger.stats()
    assert 400 == sum(wins) == stats["removed"] + stats["cleaned_up"]
    assert 0 == stats["live"]
    assert all(400 == snap["created"] for snap in snapshots)


def test_the_ledger_counts_each_entry_once_however_often_it_is_settled(
    new_ledger: Callable[[], Ledger],
) -> None:
    """Settling twice (two parties ending one object) counts it once."""
    ledger = new_ledger()
    entry = _entry()
    ledger.add(entry)
    assert {"created": 1, "removed": 0, "cleaned_up": 0, "live": 1} == ledger.stats()
    assert ledger.settle(entry, removed=True)
    assert not ledger.settle(entry, removed=False)
    assert {"created": 1, "removed": 1, "cleaned_up": 0, "live": 0} == ledger.stats()


def test_an_entry_is_claimed_by_one_party_only(
    new_ledger: Callable[[], Ledger],
) -> None:
    """The second claim fails, and so does a claim on an entry never added."""
    ledger = new_ledger()
    entry = _entry()
    assert not ledger.claim(entry)
    ledger.add(entry)
    assert ledger.claim(entry)
    assert ledger.claimed(entry)
    assert not ledger.claim(entry)
    ledger.settle(entry, removed=False)
    assert not ledger.claimed(entry)
    assert {"created": 1, "removed": 0, "cleaned_up": 1, "live": 0} == ledger.stats()


def test_claims_race_to_one_winner(new_ledger: Callable[[], Ledger]) -> None:
    """Sixteen threads claim one entry at once: exactly one succeeds."""
    ledger = new_ledger()
    entry = _entry()
    ledger.add(entry)
    barrier = threading.Barrier(16, timeout=10)
    wins: list[bool] = []

    def claim() -> None:
        barrier.wait()
        wins.append(ledger.claim(entry))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [True] == [won for won in wins if won]


def test_a_forked_ledger_starts_from_zero_and_hands_back_the_parents_entries(
    new_ledger: Callable[[], Ledger],
) -> None:
    """After a fork the counts add up again (all zero) and the lock is new."""
    ledger = new_ledger()
    kept, settled = _entry(), _entry()
    ledger.add(kept)
    ledger.add(settled)
    ledger.settle(settled, removed=True)
    lock = ledger.lock
    assert [kept] == ledger.after_fork()
    assert lock is not ledger.lock
    assert {"created": 0, "removed": 0, "cleaned_up": 0, "live": 0} == ledger.stats()


# -- leak watch ----------------------------------------------------------------


def test_leak_limits_are_checked_by_name() -> None:
    """Wrong types and ranges are refused with the argument's name."""
    ledger = Ledger()
    with pytest.raises(TypeError, match="leak_after"):
        LeakWatch(ledger, _events(), "1", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_scopes"):
        LeakWatch(ledger, _events(), None, 0)
    assert not LeakWatch(ledger, _events(), None, None).active


def test_the_leak_watch_warns_once_per_old_session_and_once_per_crowding() -> None:
    """Old sessions are warned about once each; crowding once until it eases."""
    ledger = Ledger()
    watch = LeakWatch(ledger, _events(), 1e-9, 1)
    first, second = _entry(), _entry()
    ledger.add(first)
    ledger.add(second)
    assert 3 == watch.check()  # two old sessions, two scopes over a bound of 1
    assert 0 == watch.check()
    ledger.settle(second, removed=True)
    assert 0 == watch.check()  # back under the bound
    fresh = _entry()
    ledger.add(fresh)
    assert 2 == watch.check()  # the new one is old at once, and crowding again


# -- frames --------------------------------------------------------------------


def test_frames_stack_per_slot_and_end_with_their_scope() -> None:
    """The innermost frame is the last pushed; a scope's end returns what its
    blocks set aside and leaves no frame behind."""
    frames = Frames()
    outer, inner = _entry(), _entry()
    first, second = Frame("a", outer), Frame("a", inner)
    frames.push(first)
    frames.push(second)
    frames.push(Frame("b", None))
    assert second is frames.innermost("a")
    assert frames.sets_aside("a", outer)
    frames.pop(second)
    assert first is frames.innermost("a")
    assert [outer] == frames.end("a")
    assert frames.innermost("a") is None
    assert first.saved is None


def test_forked_frames_stay_open_without_the_parents_objects() -> None:
    """In a child, the forking thread's blocks stay; other threads' go."""
    frames = Frames()
    here, other = threading.current_thread(), threading.Thread()
    saved = _entry()
    mine = Frame(here, saved)
    frames.push(mine)
    frames.push(Frame(other, _entry()))
    frames.push(Frame("key", None))
    orphans = frames.after_fork(here)
    assert saved in orphans
    assert 2 == len(orphans)
    assert mine is frames.innermost(here)
    assert mine.saved is None
    assert frames.innermost(other) is None
    assert frames.innermost("key") is not None


# -- closer --------------------------------------------------------------------


class _Closing:
    def __init__(self, fail: bool = False) -> None:
        self.closes = 0
        self.fail = fail

    def close(self) -> None:
        self.closes += 1
        if self.fail:
            raise OSError("connection reset")

    async def aclose(self) -> None:
        await asyncio.sleep(0.01)
        self.closes += 1


def _closer(
    method: str = "close",
) -> tuple[Closer, Ledger]:
    ledger = Ledger()
    closer = Closer(lambda obj: getattr(obj, method)(), ledger, _events())
    return closer, ledger


def test_the_closer_settles_after_closing_and_returns_failures() -> None:
    """A failed close is returned (not raised) and the entry still settles."""
    closer, ledger = _closer()
    good, bad = _Closing(), _Closing(fail=True)
    entries = [_entry(good), _entry(bad)]
    for entry in entries:
        ledger.add(entry)
    assert closer.end(entries[0], during="remove", removed=True) is None
    failure = closer.end(entries[1], during="scope_end", removed=False)
    assert isinstance(failure, OSError)
    assert (1, 1) == (good.closes, bad.closes)
    assert {"created": 2, "removed": 1, "cleaned_up": 1, "live": 0} == ledger.stats()


def test_an_async_close_is_counted_once_it_has_finished() -> None:
    """Awaited close: live until done. A cancelled awaiter does not stop it."""
    closer, ledger = _closer("aclose")
    session = _Closing()
    entry = _entry(session)
    ledger.add(entry)

    async def main() -> dict[str, Any]:
        waiter = asyncio.create_task(closer.aend(entry, during="remove", removed=True))
        await asyncio.sleep(0)
        during = ledger.stats()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        cancelled = ledger.stats()
        await asyncio.sleep(0.05)
        return {"during": during["live"], "cancelled": cancelled["live"]}

    assert {"during": 1, "cancelled": 1} == asyncio.run(main())
    assert 1 == session.closes
    assert {"created": 1, "removed": 1, "cleaned_up": 0, "live": 0} == ledger.stats()


def test_an_async_close_without_a_loop_is_reported_and_settled() -> None:
    """No loop can run it: the coroutine is closed unawaited, the entry settles."""
    closer, ledger = _closer("aclose")
    entry = _entry(_Closing())
    ledger.add(entry)
    assert closer.end(entry, during="scope_end", removed=False) is None
    assert {"created": 1, "removed": 0, "cleaned_up": 1, "live": 0} == ledger.stats()


def test_two_threads_never_warn_about_one_session_twice() -> None:
    """Leak checks racing on many threads warn once per old session."""
    ledger = Ledger()
    watch = LeakWatch(ledger, _events(), 1e-9, None)
    for _ in range(200):
        entry = _entry()
        ledger.add(entry)
    barrier = threading.Barrier(8, timeout=10)
    warned: list[int] = []
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:

        def check() -> None:
            barrier.wait()
            warned.append(watch.check())

        threads = [threading.Thread(target=check) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert 200 == sum(warned)


def test_loop_shutdown_ends_only_the_scopes_of_its_own_thread_object() -> None:
    """Sessions are matched to a loop's thread by the thread object, so a new
    thread that reuses a finished thread's ident does not end its scopes."""
    from scoped.registry import ScopedRegistry

    registry: ScopedRegistry[_Closing] = ScopedRegistry(
        _Closing, lambda: "job", close=_Closing.close
    )
    session: list[_Closing] = []
    worker = threading.Thread(target=lambda: session.append(registry()))
    worker.start()
    worker.join()

    class SameIdent(threading.Thread):
        @property
        def ident(self) -> int | None:
            return worker.ident

    registry.end_scopes(SameIdent())
    assert (0, 1) == (session[0].closes, registry.stats()["live"])
    registry.end_scopes(worker)
    assert (1, 0) == (session[0].closes, registry.stats()["live"])
