"""Test doubles that record what a registry does to its sessions, and the
helpers the concurrency guarantees are checked with."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")

#: Guards every close counter: closes may run on any thread.
_count_lock = threading.Lock()


class Recorded:
    """A session-like object that counts how often it is closed."""

    def __init__(self) -> None:
        self.closes = 0
        self.uses = 0

    def ping(self) -> Recorded:
        """A proxied method: returns the session it ran on."""
        self.uses += 1
        return self

    @property
    def me(self) -> Recorded:
        """A proxied property: the session it was read from."""
        return self

    def close(self) -> None:
        with _count_lock:
            self.closes += 1


class AsyncRecorded(Recorded):
    """:class:`Recorded` with a coroutine ``close()`` that counts only when it
    finishes: a close abandoned half-way is not a close."""

    def __init__(self) -> None:
        super().__init__()
        self.close_started = 0

    async def close(self) -> None:  # type: ignore[override]
        with _count_lock:
            self.close_started += 1
        await self._closing()
        with _count_lock:
            self.closes += 1

    async def _closing(self) -> None:
        """What the close awaits (a network round trip); a no-op by default."""


def balanced(stats: Mapping[str, int]) -> bool:
    """The bookkeeping invariant: every session created is exactly one of
    removed, cleaned up or live."""
    return stats["created"] == stats["removed"] + stats["cleaned_up"] + stats["live"]


class Started(Generic[_T]):
    """A function running in its own thread; :meth:`join` re-raises its error."""

    def __init__(self, target: Callable[[], _T], name: str = "worker") -> None:
        self._target = target
        self.result: _T | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._target()
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self.error = exc

    def finished(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds; tell whether the function returned."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def join(self, timeout: float = 10.0) -> _T | None:
        if not self.finished(timeout):
            msg = f"{self.thread.name} still running after {timeout}s"
            raise AssertionError(msg)
        if self.error is not None:
            raise self.error
        return self.result


@contextmanager
def switching(interval: float = 1e-5) -> Iterator[None]:
    """Offer the GIL to another thread every *interval* seconds, then restore."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def in_child(
    work: Callable[[], dict[str, Any]], *, timeout: float = 10.0
) -> dict[str, Any]:
    """Run *work* in a forked child; return the JSON-able dict it returned.

    An exception in the child comes back as ``{"error": <traceback>}``, a
    child still running after *timeout* seconds is killed and reported as
    ``{"error": "hung"}``. The child leaves through ``os._exit``, so nothing
    of the parent's is finalised there. Forking while other threads run is
    what these tests are about, so Python's warning about it is silenced for
    the fork only.
    """
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            try:
                report = work()
            except BaseException:  # noqa: BLE001 - reported to the parent
                report = {"error": traceback.format_exc()}
            os.write(write, json.dumps(report, default=repr).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return {"error": "hung"}
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"error": "no report"}')  # type: ignore[no-any-return]
