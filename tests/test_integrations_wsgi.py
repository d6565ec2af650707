"""The WSGI middleware under werkzeug's threaded server, with real HTTP clients."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.util import FileWrapper

import httpx
import pytest
import sqlalchemy as sa
from models import User
from sqlalchemy.orm import Session, sessionmaker
from web import (
    TIMEOUT,
    all_removed,
    hang_up_mid_stream,
    load,
    paused_stream,
    pg_load,
    settled,
    tagged_pg_engine,
    user_count,
    wait_for,
    wsgi_server,
)

from scoped import scoped_session, scopes
from scoped.integrations.wsgi import ScopedSessionMiddleware

StartResponse = Callable[..., Any]


def respond(
    start_response: StartResponse, body: object, status: str = "200 OK"
) -> list[bytes]:
    """Send *body* as a JSON response."""
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def user_app(db: scoped_session[Session]) -> Callable[..., Iterable[bytes]]:
    """``/add`` commits a user and reads it back; ``/fail`` flushes one, then raises.

    ``/add`` reloads the user after the commit, which begins a transaction
    that only the teardown ends.
    """

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        user = User(name=path)
        db.add(user)
        if path == "/fail":
            db.flush()
            msg = "fails on purpose"
            raise RuntimeError(msg)
        db.commit()
        return respond(
            start_response,
            {"session": db().hash_key, "id": user.id, "thread": threading.get_ident()},
        )

    return app


@pytest.mark.parametrize("server", ["werkzeug", "pooled"])
@pytest.mark.parametrize("scope", [None, scopes.context], ids=["thread", "context"])
def test_concurrent_requests_each_get_their_own_session(
    engine: sa.Engine,
    in_threads: Callable[..., list[Any]],
    scope: scopes.Scope | None,
    server: str,
) -> None:
    """8 clients x 50 requests: 400 sessions, each used by one request and removed."""
    db = scoped_session(sessionmaker(engine), scope)
    app = ScopedSessionMiddleware(user_app(db), db)

    with wsgi_server(app, server) as url:
        bodies = load(in_threads, url, lambda _: "/add")
        stats = settled(db)

    assert 400 == len({body["session"] for body in bodies})
    if server == "pooled":
        # Each server thread served many requests, each with its own session:
        # a session left behind would have reached the next request.
        assert len({body["thread"] for body in bodies}) <= 8
    assert all_removed(400) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 400 == user_count(engine)


def test_exception_removes_the_session_and_discards_its_work(
    engine: sa.Engine,
) -> None:
    """A view that raises gets a 500; its session is removed and its flush undone."""
    db = scoped_session(sessionmaker(engine))
    app = ScopedSessionMiddleware(user_app(db), db)

    with wsgi_server(app) as url, httpx.Client(base_url=url) as http:
        responses = [http.post("/fail") for _ in range(5)]
        stats = settled(db)

    assert [500] * 5 == [response.status_code for response in responses]
    assert all_removed(5) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 0 == user_count(engine)


def test_streamed_body_keeps_the_session_until_the_last_chunk(
    engine: sa.Engine,
) -> None:
    """A streaming view uses its session between chunks; it goes after the last."""
    db = scoped_session(sessionmaker(engine))
    release = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        session = db()
        yield f"{session.hash_key}\n".encode()
        release.wait(TIMEOUT)
        # The same session, still usable, after the view function returned.
        db.add(User(name="streamed"))
        db.commit()
        yield f"{db().hash_key}\n".encode()

    with wsgi_server(ScopedSessionMiddleware(app, db)) as url:
        lines, live_mid_stream, stats = paused_stream(url, "/", db, release)

    assert 1 == live_mid_stream
    assert 2 == len(lines)
    assert 1 == len(set(lines))  # one session throughout
    assert all_removed(1) == stats
    assert 1 == user_count(engine)


def test_client_disconnect_mid_stream_removes_the_session(engine: sa.Engine) -> None:
    """A client hangs up mid-stream: the server closes the body, the session goes."""
    db = scoped_session(sessionmaker(engine))
    ended: list[str] = []
    done = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            # Bounded: at most 2000 chunks of 5 ms; the client leaves early.
            for n in range(2000):
                db.execute(sa.select(1))
                yield f"{n}\n".encode() * 100
                done.wait(0.005)
            ended.append("exhausted")
        except GeneratorExit:
            ended.append("closed")
            raise
        finally:
            done.set()

    with wsgi_server(ScopedSessionMiddleware(app, db)) as url:
        live_mid_stream = hang_up_mid_stream(url, "/", db)
        wait_for(done.is_set, "the server to close the stream")
        stats = settled(db)

    assert 1 == live_mid_stream
    assert ["closed"] == ended
    assert all_removed(1) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]


def test_commit_on_success_commits_ok_responses_only(engine: sa.Engine) -> None:
    """With commit_on_success, a 2xx commits; a 4xx and an exception roll back."""
    db = scoped_session(sessionmaker(engine))

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ["PATH_INFO"]
        db.add(User(name=path))  # never committed by the view
        if path == "/raise":
            db.flush()
            msg = "fails on purpose"
            raise RuntimeError(msg)
        status = "404 Not Found" if path == "/missing" else "200 OK"
        return respond(start_response, path, status)

    wrapped = ScopedSessionMiddleware(app, db, commit_on_success=True)
    with wsgi_server(wrapped) as url, httpx.Client(base_url=url) as http:
        statuses = [
            http.get(path).status_code for path in ("/ok", "/missing", "/raise")
        ]
        settled(db)

    assert [200, 404, 500] == statuses
    with Session(engine) as session:
        assert ["/ok"] == list(session.scalars(sa.select(User.name)))


def test_commit_on_success_rolls_back_a_status_it_cannot_read(
    engine: sa.Engine,
) -> None:
    """A garbled status line is no success: the request's work is rolled back."""
    db = scoped_session(sessionmaker(engine))

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        db.add(User(name="garbled"))
        start_response("XYZ garbled", [])
        return [b""]

    wrapped = ScopedSessionMiddleware(app, db, commit_on_success=True)
    response = wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None)  # type: ignore[arg-type]
    list(response)
    response.close()  # type: ignore[attr-defined]

    assert {"created": 1, "removed": 1, "cleaned_up": 0, "live": 0} == (
        db.registry.stats()
    )
    with Session(engine) as session:
        assert [] == list(session.scalars(sa.select(User.name)))


def test_default_is_to_close_without_committing(engine: sa.Engine) -> None:
    """Without commit_on_success, whatever the view did not commit is discarded."""
    db = scoped_session(sessionmaker(engine))

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        db.add(User(name="uncommitted"))
        db.flush()
        return respond(start_response, "ok")

    wrapped = ScopedSessionMiddleware(app, db)
    with wsgi_server(wrapped) as url, httpx.Client(base_url=url) as http:
        assert 200 == http.get("/").status_code
        settled(db)

    assert 0 == user_count(engine)


class _QuietWSGIRequestHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_file_wrapper_and_length_reach_the_server(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """wsgiref still sees a ``wsgi.file_wrapper`` body and the length of a list."""
    db = scoped_session(sessionmaker(engine))
    page = tmp_path / "page.txt"
    page.write_bytes(b"x" * 10_000)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Any:
        db.execute(sa.select(1))
        if environ["PATH_INFO"] == "/file":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return environ["wsgi.file_wrapper"](page.open("rb"), 4096)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"one chunk"]

    wrapped = ScopedSessionMiddleware(app, db)
    served = make_server(
        "127.0.0.1", 0, wrapped, handler_class=_QuietWSGIRequestHandler
    )
    thread = threading.Thread(target=served.serve_forever, args=(0.05,))
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{served.server_port}") as http:
            file_response = http.get("/file")
            list_response = http.get("/list")
        stats = settled(db)
    finally:
        served.shutdown()
        served.server_close()
        thread.join(TIMEOUT)

    assert b"x" * 10_000 == file_response.content
    # wsgiref sets Content-Length only for a body whose len() is 1.
    assert "9" == list_response.headers["content-length"]
    assert all_removed(2) == stats

    environ = {"PATH_INFO": "/file", "wsgi.file_wrapper": FileWrapper}
    body = wrapped(environ, lambda *args: None)  # type: ignore[arg-type]
    assert isinstance(body, FileWrapper)
    body.close()
    assert 0 == db.registry.stats()["live"]


def test_exhausting_the_body_ends_the_request_without_close(engine: sa.Engine) -> None:
    """Code that joins the body and never calls close() still ends the request."""
    db = scoped_session(sessionmaker(engine))
    wrapped = ScopedSessionMiddleware(user_app(db), db)

    body = b"".join(wrapped({"PATH_INFO": "/add"}, lambda *args: None))  # type: ignore[arg-type]

    assert "/add" != json.loads(body)  # a real response
    assert all_removed(1) == (db.registry.stats())


def test_restores_the_session_the_thread_had_before(engine: sa.Engine) -> None:
    """A request served on a thread that holds a session leaves that session alone."""
    db = scoped_session(sessionmaker(engine))
    mine = db()
    wrapped = ScopedSessionMiddleware(user_app(db), db)

    body = json.loads(b"".join(wrapped({"PATH_INFO": "/add"}, lambda *args: None)))  # type: ignore[arg-type]

    assert mine.hash_key != body["session"]
    assert mine is db()
    db.remove()


def test_rejects_sqlalchemy_scoped_session(engine: sa.Engine) -> None:
    """SQLAlchemy's own scoped_session cannot open scopes: a clear TypeError."""
    from sqlalchemy.orm import scoped_session as sa_scoped_session

    with pytest.raises(TypeError, match=r"needs a scoped\.scoped_session, got"):
        ScopedSessionMiddleware(
            lambda environ, start_response: [],
            sa_scoped_session(sessionmaker(engine)),  # type: ignore[arg-type]
        )


def pg_app(db: scoped_session[Session]) -> Callable[..., Iterable[bytes]]:
    """Query, commit, query again: the second query's transaction awaits teardown."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        db.execute(sa.select(1))
        db.commit()
        return respond(start_response, db.scalar(sa.select(sa.func.pg_backend_pid())))

    return app


@pytest.mark.servers
@pytest.mark.parametrize("teardown", [True, False], ids=["middleware", "none"])
def test_no_connection_left_idle_in_transaction_on_postgresql(
    pg_url: str, in_threads: Callable[..., list[Any]], teardown: bool
) -> None:
    """After a load on PostgreSQL, no connection of ours is idle in transaction."""
    engine, name = tagged_pg_engine(pg_url, pool_size=8, max_overflow=0)
    db = scoped_session(sessionmaker(engine))
    app = pg_app(db)
    # Without the middleware (the control), some are: the check can fail.
    wrapped: Any = ScopedSessionMiddleware(app, db) if teardown else app
    try:
        with wsgi_server(wrapped, "pooled") as url:
            # Read while the server's threads (and what they hold) live.
            states = pg_load(in_threads, url, db, pg_url, name, settle=teardown)
        # Without the middleware, the sessions go when their threads end.
        stats = settled(db)
    finally:
        engine.dispose()

    idle_in_transaction = [s for s in states if s.startswith("idle in transaction")]
    assert states  # the pool kept its connections: there was something to see
    if teardown:
        assert [] == idle_in_transaction
        assert all_removed(200) == stats
    else:
        assert idle_in_transaction
        assert 0 == stats["removed"]
