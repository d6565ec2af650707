"""Cancellation on a real server: uvicorn, Starlette and PostgreSQL.

Requests open nested ``scope()`` blocks while clients hang up (before the
response, in the middle of a stream, on their own timeout) and the server
cuts requests short (anyio's ``move_on_after``, asyncio's ``wait_for``),
for thread-, context- and task-scoped sessions. Sessions close slowly, as
over a slow network, so that cuts land in the middle of closes. Afterwards
nothing may be left: no connection idle in a transaction, none checked out,
no live session, no open block, and no session counted as closed whose close
did not finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from recording import balanced
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from web import TIMEOUT, asgi_server, pg_connection_states, tagged_pg_engine, wait_for

from scoped import scoped_session, scopes
from scoped.asyncio import async_scoped_session
from scoped.integrations.asgi import ScopedSessionMiddleware

pytestmark = [
    pytest.mark.servers,
    pytest.mark.thread_unsafe(reason="runs a server and counts its sessions"),
]

#: How long a close waits before its ROLLBACK, as over a slow network.
SLOW_CLOSE = 0.03
#: The server-side cut: after the first query, inside the nested blocks.
CUT = 0.02


@dataclass
class Closes:
    """Closes that ran to their end, counted by the session class."""

    finished: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self) -> None:
        with self.lock:
            self.finished += 1


def _slow_async_session(closes: Closes) -> type[AsyncSession]:
    class SlowCloseSession(AsyncSession):
        async def close(self) -> None:
            await asyncio.sleep(SLOW_CLOSE)
            await super().close()
            closes.done()

    return SlowCloseSession


def _slow_session(closes: Closes) -> type[Session]:
    class SlowCloseSession(Session):
        def close(self) -> None:
            threading.Event().wait(SLOW_CLOSE)
            super().close()
            closes.done()

    return SlowCloseSession


@dataclass
class Setup:
    """One way of scoping the server's sessions, and what to inspect."""

    db: Any
    app: Starlette
    checked_out: Callable[[], int]
    app_name: str
    closes: Closes


async def _cut(how: str, work: Callable[[], Any]) -> None:
    """Run *work*, cut short after :data:`CUT` seconds as *how* says."""
    if how == "anyio":
        with anyio.move_on_after(CUT):
            await work()
    elif how == "asyncio":
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(work(), CUT)
    else:
        await work()


def _async_setup(pg_url: str, scope: Any) -> Iterator[Setup]:
    closes = Closes()
    name = f"scoped-cancel-{uuid.uuid4().hex[:12]}"
    url = sa.make_url(pg_url).set(drivername="postgresql+asyncpg")
    engine: AsyncEngine = create_async_engine(
        url, connect_args={"server_settings": {"application_name": name}}
    )
    db = async_scoped_session(
        async_sessionmaker(engine, class_=_slow_async_session(closes)), scope
    )
    one, nap = sa.text("SELECT 1"), sa.text("SELECT pg_sleep(0.01)")

    async def nested() -> None:
        await db.execute(one)
        async with db.scope():
            await db.execute(nap)
            async with db.scope():
                await db.execute(one)

    async def cut(request: Request) -> Response:
        await _cut(request.query_params.get("how", ""), nested)
        return PlainTextResponse("done")

    async def slow(request: Request) -> Response:
        await db.execute(sa.text("SELECT pg_sleep(0.3)"))
        return PlainTextResponse("late")

    async def stream(request: Request) -> Response:
        async def lines() -> AsyncIterator[str]:
            for i in range(20):
                async with db.scope():
                    await db.execute(one)
                yield f"{i}\n"

        return StreamingResponse(lines())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # On the server's loop, which the connections belong to.
        await engine.dispose()

    app = Starlette(
        routes=[Route("/cut", cut), Route("/slow", slow), Route("/stream", stream)],
        middleware=[Middleware(ScopedSessionMiddleware, db_session=db)],
        lifespan=lifespan,
    )
    yield Setup(db, app, engine.sync_engine.pool.checkedout, name, closes)  # type: ignore[attr-defined]


def _thread_setup(pg_url: str) -> Iterator[Setup]:
    closes = Closes()
    engine, name = tagged_pg_engine(pg_url)
    db = scoped_session(sessionmaker(engine, class_=_slow_session(closes)))
    one, nap = sa.text("SELECT 1"), sa.text("SELECT pg_sleep(0.01)")

    def nested() -> None:
        # Sync endpoints run on worker threads that serve many requests: a
        # block per request, so that nothing stays on the thread.
        with db.scope():
            db.execute(one)
            with db.scope():
                db.execute(nap)
                with db.scope():
                    db.execute(one)

    async def cut(request: Request) -> Response:
        how = request.query_params.get("how", "")
        await _cut(how, lambda: anyio.to_thread.run_sync(nested))
        return PlainTextResponse("done")

    def slow(request: Request) -> Response:
        with db.scope():
            db.execute(sa.text("SELECT pg_sleep(0.3)"))
        return PlainTextResponse("late")

    def stream(request: Request) -> Response:
        def lines() -> Iterator[str]:
            for i in range(20):
                with db.scope():
                    db.execute(one)
                yield f"{i}\n"

        return StreamingResponse(lines())

    app = Starlette(
        routes=[Route("/cut", cut), Route("/slow", slow), Route("/stream", stream)]
    )
    yield Setup(db, app, engine.pool.checkedout, name, closes)  # type: ignore[attr-defined]
    engine.dispose()


@pytest.fixture(params=["thread", "context", "task"])
def setup(request: pytest.FixtureRequest, pg_url: str) -> Iterator[Setup]:
    """The server's sessions scoped to worker threads, request contexts or
    tasks (the last two through the ASGI middleware)."""
    if request.param == "thread":
        yield from _thread_setup(pg_url)
    else:
        scope = scopes.context if request.param == "context" else scopes.task
        yield from _async_setup(pg_url, scope)


def _traffic(url: str) -> None:
    """Four clients: requests cut by the server, hang-ups before the
    response and mid-stream, and client-side timeouts."""

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as http:
            for how in ("", "anyio", "asyncio") * 3:
                assert "done" == http.get("/cut", params={"how": how}).text
            for _ in range(2):
                # The client gives up; the server finishes without it.
                with contextlib.suppress(httpx.TimeoutException):
                    http.get("/slow", timeout=0.05)
                with contextlib.suppress(httpx.TimeoutException):
                    http.get("/cut", params={"how": "anyio"}, timeout=0.005)
                with http.stream("GET", "/stream") as response:
                    lines = response.iter_lines()
                    assert "0" == next(lines)
                # Leaving the block hung up in the middle of the stream.

    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            client(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "clients hung"
    if errors:
        raise errors[0]


def _open_blocks(db: Any) -> int:
    frames: dict[Any, list[Any]] | None = getattr(db.registry, "_frames", None)
    return sum(map(len, (frames or {}).values()))


def test_cuts_and_hang_ups_leave_nothing_behind(setup: Setup, pg_url: str) -> None:
    """After requests cut by the server and clients that hang up, the server
    holds no transaction, no connection, no session and no open block, and
    every session counted as removed or cleaned up was really closed."""
    db = setup.db
    with asgi_server(setup.app) as url:
        _traffic(url)
        wait_for(
            lambda: db.registry.stats()["live"] == 0 and setup.checked_out() == 0,
            "the sessions to be closed",
        )
        idle = [
            state
            for state in pg_connection_states(pg_url, setup.app_name)
            if state.startswith("idle in transaction")
        ]
        checked_out = setup.checked_out()
        stats = db.registry.stats()
        open_blocks = _open_blocks(db)

    assert [] == idle
    assert 0 == checked_out
    assert 0 == stats["live"], stats
    assert balanced(stats), stats
    assert 0 == open_blocks
    assert stats["removed"] + stats["cleaned_up"] == setup.closes.finished, (
        f"{setup.closes.finished} closes finished for {stats}"
    )
