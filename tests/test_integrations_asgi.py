"""The ASGI middleware and the FastAPI dependency under uvicorn, with real clients."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints'
# annotations at run time, and some name local variables.

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import BackgroundTasks, Depends, FastAPI
from models import User
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import AsyncAdaptedQueuePool
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from web import (
    TIMEOUT,
    all_removed,
    asgi_server,
    hang_up_mid_stream,
    load,
    paused_stream,
    pg_load,
    settled,
    tagged_pg_engine,
    user_count,
    wait_for,
)

from scoped import scoped_session, scopes
from scoped.asyncio import async_scoped_session
from scoped.integrations.asgi import ScopedSessionMiddleware, scoped_dependency


def context_db(engine: sa.Engine) -> scoped_session[Session]:
    """The recommended set-up: sessions scoped to the request's context."""
    return scoped_session(sessionmaker(engine), scopes.context)


def starlette_app(
    db: scoped_session[Session], **middleware: Any
) -> tuple[Starlette, dict[str, Any]]:
    """A Starlette app with the middleware; *seen* collects what its parts saw."""
    seen: dict[str, Any] = {"lifespan": False, "release": threading.Event()}

    async def add_async(request: Request) -> Response:
        user = User(name="async")
        db.add(user)
        # Yield to the other requests between uses of the session.
        await asyncio.sleep(0.001)
        db.commit()
        await asyncio.sleep(0.001)
        return JSONResponse({"session": db().hash_key, "id": user.id})

    def add_sync(request: Request) -> Response:
        # Runs in a worker thread with a copy of the request's context.
        user = User(name="sync")
        db.add(user)
        db.commit()
        return JSONResponse({"session": db().hash_key, "id": user.id})

    def fail(request: Request) -> Response:
        db.add(User(name="fail"))
        db.flush()
        msg = "fails on purpose"
        raise RuntimeError(msg)

    async def stream(request: Request) -> Response:
        first = db().hash_key

        async def body() -> AsyncIterator[bytes]:
            yield f"{first}\n".encode()
            await asyncio.to_thread(seen["release"].wait, TIMEOUT)
            db.add(User(name="streamed"))
            db.commit()
            yield f"{db().hash_key}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    def stream_sync(request: Request) -> Response:
        first = db().hash_key

        def body() -> Iterator[bytes]:
            # Starlette iterates a sync body in worker threads.
            for _ in range(3):
                yield f"{first} {db().hash_key}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    async def endless(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                for n in range(2000):  # bounded; the client leaves early
                    db.execute(sa.select(1))
                    yield f"{n}\n".encode() * 100
                    await asyncio.sleep(0.005)
                seen["endless"] = "exhausted"
            except BaseException:
                seen["endless"] = "closed"
                raise

        return StreamingResponse(body(), media_type="text/plain")

    def background_work() -> None:
        seen["background"] = (db().hash_key, db.registry.stats()["live"])
        db.add(User(name="background"))
        db.commit()

    async def background(request: Request) -> Response:
        seen["endpoint"] = db().hash_key
        return JSONResponse({}, background=BackgroundTask(background_work))

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        for _ in range(2):
            await ws.receive_text()
            await ws.send_json({"session": db().hash_key})
        await ws.close()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        seen["lifespan"] = True
        yield

    app = Starlette(
        routes=[
            Route("/async", add_async, methods=["POST"]),
            Route("/sync", add_sync, methods=["POST"]),
            Route("/fail", fail),
            Route("/stream", stream),
            Route("/stream-sync", stream_sync),
            Route("/endless", endless),
            Route("/background", background),
            WebSocketRoute("/ws", websocket),
        ],
        middleware=[Middleware(ScopedSessionMiddleware, db_session=db, **middleware)],
        lifespan=lifespan,
    )
    return app, seen


def test_concurrent_async_and_sync_requests_each_get_their_own_session(
    engine: sa.Engine, in_threads: Callable[..., list[Any]]
) -> None:
    """8 clients x 50 requests, async and threadpool endpoints: a session each."""
    db = context_db(engine)
    app, seen = starlette_app(db)

    with asgi_server(app) as url:
        bodies = load(in_threads, url, lambda i: "/async" if i % 2 else "/sync")
        stats = settled(db)

    assert seen["lifespan"]  # lifespan events passed through
    assert 400 == len({body["session"] for body in bodies})
    assert 400 == len({body["id"] for body in bodies})
    assert all_removed(400) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 400 == user_count(engine)


def test_exception_gives_a_500_and_removes_the_session(engine: sa.Engine) -> None:
    """A view that raises: 500, its session removed and its flush rolled back."""
    db = context_db(engine)
    app, _ = starlette_app(db)

    with asgi_server(app) as url:
        # A connection each: uvicorn closes one whose application raised.
        statuses = [httpx.get(f"{url}/fail").status_code for _ in range(5)]
        stats = settled(db)

    assert [500] * 5 == statuses
    assert all_removed(5) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 0 == user_count(engine)


def test_streamed_body_keeps_the_session_until_it_is_sent(engine: sa.Engine) -> None:
    """A streaming response uses the request's session between chunks."""
    db = context_db(engine)
    app, seen = starlette_app(db)

    with asgi_server(app) as url:
        lines, live_mid_stream, stats = paused_stream(
            url, "/stream", db, seen["release"]
        )

    assert 1 == live_mid_stream
    assert 2 == len(lines)
    assert 1 == len(set(lines))  # one session throughout
    assert all_removed(1) == stats
    assert 1 == user_count(engine)


def test_sync_stream_in_worker_threads_shares_the_request_session(
    engine: sa.Engine,
) -> None:
    """A sync body iterated in worker threads sees the endpoint's session."""
    db = context_db(engine)
    app, _ = starlette_app(db)

    with asgi_server(app) as url, httpx.Client(base_url=url) as http:
        lines = http.get("/stream-sync").raise_for_status().text.split()
        stats = settled(db)

    assert 6 == len(lines)
    assert 1 == len(set(lines))
    assert all_removed(1) == stats


def test_client_disconnect_mid_stream_removes_the_session(engine: sa.Engine) -> None:
    """A client that hangs up mid-stream: the body is cancelled, the session goes."""
    db = context_db(engine)
    app, seen = starlette_app(db)

    with asgi_server(app) as url:
        live_mid_stream = hang_up_mid_stream(url, "/endless", db)
        wait_for(lambda: "endless" in seen, "the server to notice the disconnect")
        stats = settled(db)

    assert 1 == live_mid_stream
    assert "closed" == seen["endless"]
    assert all_removed(1) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]


def test_background_task_sees_the_request_session_then_it_goes(
    engine: sa.Engine,
) -> None:
    """A background task runs with the request's session, which goes after it."""
    db = context_db(engine)
    app, seen = starlette_app(db)

    with asgi_server(app) as url, httpx.Client(base_url=url) as http:
        http.get("/background").raise_for_status()
        stats = settled(db)

    assert (seen["endpoint"], 1) == seen["background"]
    assert all_removed(1) == stats
    assert 1 == user_count(engine)


async def websocket_exchange(app: Starlette, messages: int) -> list[int]:
    """Open ``/ws``, send *messages* texts, return the sessions it reported."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
    }
    await inbox.put({"type": "websocket.connect"})
    connection = asyncio.create_task(app(scope, inbox.get, outbox.put))
    assert "websocket.accept" == (await outbox.get())["type"]
    sessions = []
    for _ in range(messages):
        await inbox.put({"type": "websocket.receive", "text": "hello"})
        sessions.append(json.loads((await outbox.get())["text"])["session"])
    assert "websocket.close" == (await outbox.get())["type"]
    await asyncio.wait_for(connection, TIMEOUT)
    return sessions


def test_websocket_connection_has_one_session(engine: sa.Engine) -> None:
    """All messages of one websocket share a session, removed when it closes.

    uvicorn here has no websocket library, so the test speaks ASGI to the
    application itself.
    """
    db = context_db(engine)
    app, _ = starlette_app(db)

    async def two_connections() -> list[int]:
        return [
            *await websocket_exchange(app, 2),
            *await websocket_exchange(app, 2),
        ]

    sessions = asyncio.run(two_connections())

    assert sessions[0] == sessions[1] != sessions[2] == sessions[3]
    assert all_removed(2) == (db.registry.stats())


def test_commit_on_success_commits_ok_responses_only(engine: sa.Engine) -> None:
    """With commit_on_success, a 2xx commits, a 4xx and an exception roll back."""
    db = context_db(engine)

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        db.add(User(name=path))  # never committed by the view
        if path == "/raise":
            db.flush()
            msg = "fails on purpose"
            raise RuntimeError(msg)
        return JSONResponse(path, status_code=404 if path == "/missing" else 200)

    app = Starlette(
        routes=[Route(path, endpoint) for path in ("/ok", "/missing", "/raise")],
        middleware=[
            Middleware(ScopedSessionMiddleware, db_session=db, commit_on_success=True)
        ],
    )
    with asgi_server(app) as url:
        statuses = [
            httpx.get(f"{url}{path}").status_code
            for path in ("/ok", "/missing", "/raise")
        ]
        settled(db)

    assert [200, 404, 500] == statuses
    with Session(engine) as session:
        assert ["/ok"] == list(session.scalars(sa.select(User.name)))


def test_task_scope_fails_in_sync_endpoints(engine: sa.Engine) -> None:
    """Under scopes.task, a sync endpoint's first query raises a clear error."""
    db = scoped_session(sessionmaker(engine), scopes.task)
    errors: list[str] = []

    def endpoint(request: Request) -> Response:
        try:
            db.execute(sa.select(1))
        except RuntimeError as exc:
            errors.append(str(exc))
            raise
        return Response()

    app = ScopedSessionMiddleware(Starlette(routes=[Route("/", endpoint)]), db)
    with asgi_server(app) as url:
        assert 500 == httpx.get(url).status_code
        settled(db)

    assert ["the task scope needs a running asyncio task"] == [
        error.split(";")[0] for error in errors
    ]


@pytest.mark.parametrize(
    "scope", [None, scopes.greenlet], ids=["thread scope", "greenlet scope"]
)
def test_refuses_scopes_shared_by_all_requests(
    engine: sa.Engine, scope: scopes.Scope | None
) -> None:
    """Thread and greenlet scopes are refused: one event loop runs every request."""
    db = scoped_session(sessionmaker(engine), scope)

    with pytest.raises(ValueError, match=r"scoped to the (thread|greenlet)") as excinfo:
        ScopedSessionMiddleware(Starlette(), db)
    assert "scopefunc=scoped.scopes.context" in str(excinfo.value)
    with pytest.raises(ValueError, match="scoped_dependency"):
        scoped_dependency(db)


# -- FastAPI's Depends --------------------------------------------------------


def fastapi_app(
    db: scoped_session[Session], *, commit_on_success: bool = False
) -> tuple[FastAPI, dict[str, Any]]:
    """A FastAPI app whose endpoints take the session as a dependency."""
    seen: dict[str, Any] = {}
    session_dep = Annotated[
        Session, Depends(scoped_dependency(db, commit_on_success=commit_on_success))
    ]

    def named(session: session_dep) -> str:
        # A sub-dependency asking for the session gets the same one.
        return f"user of session {session.hash_key}"

    app = FastAPI()

    @app.post("/async")
    async def add_async(
        session: session_dep, name: Annotated[str, Depends(named)]
    ) -> dict[str, Any]:
        user = User(name=name)
        session.add(user)
        await asyncio.sleep(0.001)
        session.commit()
        return {"session": session.hash_key, "name": user.name, "global": db().hash_key}

    @app.post("/sync")
    def add_sync(
        session: session_dep, name: Annotated[str, Depends(named)]
    ) -> dict[str, Any]:
        user = User(name=name)
        session.add(user)
        session.commit()
        return {"session": session.hash_key, "name": user.name, "global": db().hash_key}

    @app.post("/uncommitted")
    def uncommitted(session: session_dep, fail: bool = False) -> dict[str, Any]:
        session.add(User(name="uncommitted"))
        if fail:
            session.flush()
            msg = "fails on purpose"
            raise RuntimeError(msg)
        return {}

    def background_work() -> None:
        seen["background"] = db().hash_key

    @app.get("/background")
    async def with_background(
        session: session_dep, tasks: BackgroundTasks
    ) -> dict[str, Any]:
        seen["endpoint"] = session.hash_key
        tasks.add_task(background_work)
        return {}

    @app.get("/stream")
    def stream(session: session_dep) -> StreamingResponse:
        def body() -> Iterator[bytes]:
            for _ in range(3):
                yield f"{session.hash_key} {db().hash_key}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    return app, seen


def test_dependency_gives_each_request_one_session(
    engine: sa.Engine, in_threads: Callable[..., list[Any]]
) -> None:
    """Depends(scoped_dependency(db)): one session per request, shared by its parts."""
    db = context_db(engine)
    app, _ = fastapi_app(db)

    with asgi_server(app) as url:
        paths = lambda i: "/async" if i % 2 else "/sync"  # noqa: E731
        bodies = load(in_threads, url, paths, requests=25)
        stats = settled(db)

    assert 200 == len({body["session"] for body in bodies})
    for body in bodies:
        # The sub-dependency and the global db_session agree with the endpoint.
        assert f"user of session {body['session']}" == body["name"]
        assert body["session"] == body["global"]
    assert all_removed(200) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]


def test_dependency_session_outlives_the_response_for_background_and_stream(
    engine: sa.Engine,
) -> None:
    """Background tasks and streamed bodies use the dependency's session."""
    db = context_db(engine)
    app, seen = fastapi_app(db)

    with asgi_server(app) as url, httpx.Client(base_url=url) as http:
        http.get("/background").raise_for_status()
        lines = http.get("/stream").raise_for_status().text.splitlines()
        stats = settled(db)

    assert seen["endpoint"] == seen["background"]
    # Each line: the dependency's session, then the global db_session's.
    assert 3 == len(lines)
    assert 1 == len({part for line in lines for part in line.split()})
    assert all_removed(2) == stats


@pytest.mark.parametrize("commit", [False, True], ids=["default", "commit_on_success"])
def test_dependency_commits_only_when_asked_and_successful(
    engine: sa.Engine, commit: bool
) -> None:
    """The dependency discards uncommitted work by default, commits it on request."""
    db = context_db(engine)
    app, _ = fastapi_app(db, commit_on_success=commit)

    with asgi_server(app) as url:
        ok = httpx.post(f"{url}/uncommitted").status_code
        failed = httpx.post(f"{url}/uncommitted", params={"fail": True}).status_code
        stats = settled(db)

    assert (200, 500) == (ok, failed)
    assert (1 if commit else 0) == user_count(engine)
    assert all_removed(2) == stats


def test_dependency_is_made_once_per_scoped_session(engine: sa.Engine) -> None:
    """scoped_dependency() returns the same function for the same arguments."""
    db = context_db(engine)

    assert scoped_dependency(db) is scoped_dependency(db)
    assert scoped_dependency(db) is not scoped_dependency(db, commit_on_success=True)
    assert scoped_dependency(db) is not scoped_dependency(context_db(engine))


# -- async sessions -------------------------------------------------------------


@pytest.fixture
def async_db(engine: sa.Engine) -> Iterator[async_scoped_session[AsyncSession]]:
    """Task-scoped AsyncSessions on the test database, through aiosqlite."""
    # Named, since SQLAlchemy 2.0.35 still gives aiosqlite files a NullPool,
    # which keeps no count of checked-out connections.
    async_engine = create_async_engine(
        engine.url.set(drivername="sqlite+aiosqlite"), poolclass=AsyncAdaptedQueuePool
    )
    yield async_scoped_session(async_sessionmaker(async_engine))
    asyncio.run(async_engine.dispose())


def test_async_sessions_are_committed_and_closed_by_awaiting(
    engine: sa.Engine,
    async_db: async_scoped_session[AsyncSession],
    in_threads: Callable[..., list[Any]],
) -> None:
    """With an async_scoped_session the middleware awaits the commit and the close."""

    async def add(request: Request) -> Response:
        session = async_db()
        session.add(User(name="async session"))  # committed by the middleware
        await session.flush()
        await asyncio.sleep(0.001)
        return JSONResponse({"session": session.sync_session.hash_key})

    app = Starlette(
        routes=[Route("/", add, methods=["POST"])],
        middleware=[
            Middleware(
                ScopedSessionMiddleware, db_session=async_db, commit_on_success=True
            )
        ],
    )
    with asgi_server(app) as url:
        bodies = load(in_threads, url, lambda _: "/", requests=25)
        stats = settled(async_db)

    assert 200 == len({body["session"] for body in bodies})
    assert all_removed(200) == stats
    assert 200 == user_count(engine)
    assert 0 == async_db.session_factory.kw["bind"].pool.checkedout()  # type: ignore[attr-defined]


def test_dependency_with_async_sessions(
    async_db: async_scoped_session[AsyncSession],
) -> None:
    """scoped_dependency() yields an AsyncSession and awaits its close."""
    app = FastAPI()
    session_dep = Annotated[AsyncSession, Depends(scoped_dependency(async_db))]

    @app.get("/")
    async def query(session: session_dep) -> dict[str, Any]:
        return {
            "one": await session.scalar(sa.select(1)),
            "same": session is async_db(),
        }

    with asgi_server(app) as url:
        bodies = [httpx.get(url).raise_for_status().json() for _ in range(3)]
        stats = settled(async_db)

    assert [{"one": 1, "same": True}] * 3 == bodies
    assert all_removed(3) == stats


def test_wsgi_and_flask_refuse_async_sessions(
    async_db: async_scoped_session[AsyncSession],
) -> None:
    """Integrations that cannot await a close refuse an async_scoped_session."""
    import flask

    from scoped.integrations import flask as scoped_flask
    from scoped.integrations import wsgi

    with pytest.raises(TypeError, match="cannot use an async_scoped_session"):
        wsgi.ScopedSessionMiddleware(lambda environ, start_response: [], async_db)
    with pytest.raises(TypeError, match="cannot use an async_scoped_session"):
        scoped_flask.init_app(flask.Flask(__name__), async_db)


@pytest.mark.servers
def test_no_connection_left_idle_in_transaction_on_postgresql(
    pg_url: str, in_threads: Callable[..., list[Any]]
) -> None:
    """After a load under uvicorn, no connection of ours is idle in transaction."""
    engine, name = tagged_pg_engine(pg_url, pool_size=8, max_overflow=0)
    db = context_db(engine)

    def query(request: Request) -> Response:
        db.execute(sa.select(1))
        db.commit()
        # Begins a transaction that only the teardown ends.
        return JSONResponse(db.scalar(sa.select(sa.func.pg_backend_pid())))

    app = ScopedSessionMiddleware(Starlette(routes=[Route("/", query)]), db)
    try:
        with asgi_server(app) as url:
            states = pg_load(in_threads, url, db, pg_url, name)
        stats = db.registry.stats()
    finally:
        engine.dispose()

    assert states  # the pool kept its connections: there was something to see
    assert [] == [s for s in states if s.startswith("idle in transaction")]
    assert all_removed(200) == stats
