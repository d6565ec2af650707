"""init_app(): sessions per Flask app context, under werkzeug's threaded server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import flask
import httpx
import pytest
import sqlalchemy as sa
from models import User
from sqlalchemy.orm import Session, sessionmaker
from web import (
    TIMEOUT,
    all_removed,
    load,
    paused_stream,
    pg_load,
    settled,
    tagged_pg_engine,
    user_count,
    wsgi_server,
)

from scoped import scoped_session
from scoped.integrations import flask as scoped_flask


def app_db(engine: sa.Engine) -> scoped_session[Session]:
    """A scoped_session keyed by the current app context."""
    return scoped_session(sessionmaker(engine), scoped_flask.app_context)


def flask_app(db: scoped_session[Session], **options: Any) -> flask.Flask:
    """An app whose views use the global *db*; ``init_app`` tears it down."""
    app = flask.Flask(__name__)
    scoped_flask.init_app(app, db, **options)
    app.extensions["release"] = threading.Event()

    @app.post("/add")
    def add() -> dict[str, Any]:
        user = User(name="flask")
        db.add(user)
        db.commit()
        # Reloading after the commit begins a transaction the teardown ends.
        return {"session": db().hash_key, "id": user.id}

    @app.get("/fail")
    def fail() -> str:
        db.add(User(name="fail"))
        db.flush()
        msg = "fails on purpose"
        raise RuntimeError(msg)

    @app.get("/stream")
    def stream() -> flask.Response:
        def body() -> Iterator[str]:
            yield f"{db().hash_key}\n"
            app.extensions["release"].wait(TIMEOUT)
            db.add(User(name="streamed"))
            db.commit()
            yield f"{db().hash_key}\n"

        return flask.Response(flask.stream_with_context(body()))

    return app


def test_concurrent_requests_each_get_their_own_session(
    engine: sa.Engine, in_threads: Callable[..., list[Any]]
) -> None:
    """8 clients x 50 requests: one session per request's app context, all removed."""
    db = app_db(engine)
    app = flask_app(db)

    with wsgi_server(app) as url:
        bodies = load(in_threads, url, lambda _: "/add")
        stats = settled(db)

    assert 400 == len({body["session"] for body in bodies})
    assert all_removed(400) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 400 == user_count(engine)


def test_exception_gives_a_500_and_removes_the_session(engine: sa.Engine) -> None:
    """A view that raises: 500, its session removed and its flush rolled back."""
    db = app_db(engine)
    app = flask_app(db)

    with wsgi_server(app) as url, httpx.Client(base_url=url) as http:
        statuses = [http.get("/fail").status_code for _ in range(5)]
        stats = settled(db)

    assert [500] * 5 == statuses
    assert all_removed(5) == stats
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 0 == user_count(engine)


def test_streamed_body_keeps_the_context_and_its_session(engine: sa.Engine) -> None:
    """Inside stream_with_context the body has one session until its last chunk."""
    db = app_db(engine)
    app = flask_app(db)

    with wsgi_server(app) as url:
        lines, live_mid_stream, stats = paused_stream(
            url, "/stream", db, app.extensions["release"]
        )

    assert 1 == live_mid_stream
    assert 2 == len(lines)
    assert 1 == len(set(lines))  # one session throughout
    assert all_removed(1) == stats
    assert 1 == user_count(engine)


def _scoped_to(scope: str, engine: sa.Engine) -> scoped_session[Session]:
    if scope == "thread":
        # Flask's own documented pattern: thread scope, removed at teardown.
        return scoped_session(sessionmaker(engine))
    return app_db(engine)


@pytest.mark.parametrize("scope", ["app_context", "thread"])
@pytest.mark.parametrize("registered", ["before", "after"])
def test_a_raising_teardown_cannot_skip_the_removal(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, scope: str, registered: str
) -> None:
    """Every context's session is removed, even when another teardown function
    raises, which makes Flask (up to 3.1) skip the teardowns after it; and that
    teardown can still use the session."""
    db = _scoped_to(scope, engine)
    app = flask.Flask(__name__)
    used: list[bool] = []

    def broken_teardown(exc: BaseException | None) -> None:
        used.append(db.is_active)
        msg = "teardown fails"
        raise RuntimeError(msg)

    if registered == "before":
        app.teardown_appcontext(broken_teardown)
    scoped_flask.init_app(app, db)
    if registered == "after":
        # Registered later, it runs first.
        app.teardown_appcontext(broken_teardown)

    @app.post("/add")
    def add() -> str:
        db.add(User(name="flask"))
        db.commit()
        return "ok"

    monkeypatch.setattr(logging.getLogger("werkzeug"), "disabled", True)
    with wsgi_server(app) as url, httpx.Client(base_url=url) as http:
        statuses = [http.post("/add").status_code for _ in range(2)]
        stats = settled(db)
    with pytest.raises(RuntimeError, match="teardown fails"), app.app_context():
        db.add(User(name="cli"))

    assert [500, 500] == statuses
    assert all_removed(2) == stats
    assert all_removed(3) == db.registry.stats()
    assert [True] * 3 == used
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 2 == user_count(engine)


def test_thread_scope_sessions_end_with_each_context(engine: sa.Engine) -> None:
    """Flask's documented thread-scoped pattern: one session per context in
    turn, removed at the end of each, requests and CLI contexts alike."""
    db = scoped_session(sessionmaker(engine))
    app = flask_app(db)

    with wsgi_server(app) as url, httpx.Client(base_url=url) as http:
        bodies = [http.post("/add").json() for _ in range(3)]
        stats = settled(db)
    with app.app_context():
        db.add(User(name="cli"))
        db.commit()

    assert 3 == len({body["session"] for body in bodies})
    assert all_removed(3) == stats
    assert all_removed(4) == db.registry.stats()
    assert 4 == user_count(engine)


def test_nested_app_contexts_have_their_own_sessions(engine: sa.Engine) -> None:
    """An app context pushed inside another has its own session, removed at its pop."""
    db = app_db(engine)
    app = flask_app(db)

    with app.app_context():
        outer = db()
        with app.app_context():
            inner = db()
            assert 2 == db.registry.stats()["live"]
        assert outer is db()
        assert 1 == db.registry.stats()["live"]

    assert inner is not outer
    assert all_removed(2) == (db.registry.stats())


def test_outside_an_app_context_flask_error_propagates(engine: sa.Engine) -> None:
    """Without an app context the session is unreachable: Flask's own RuntimeError."""
    db = app_db(engine)

    with pytest.raises(RuntimeError, match="Working outside of application context"):
        db.execute(sa.select(1))
    assert 0 == db.registry.stats()["created"]


def test_commit_on_success_commits_ok_contexts_only(engine: sa.Engine) -> None:
    """commit_on_success commits a 2xx or a plain app context, not a 4xx or an error."""
    db = app_db(engine)
    app = flask.Flask(__name__)
    scoped_flask.init_app(app, db, commit_on_success=True)

    @app.get("/<name>")
    def add(name: str) -> tuple[str, int]:
        db.add(User(name=name))  # never committed by the view
        if name == "raise":
            db.flush()
            msg = "fails on purpose"
            raise RuntimeError(msg)
        return name, 404 if name == "missing" else 200

    with wsgi_server(app) as url, httpx.Client(base_url=url) as http:
        statuses = [
            http.get(f"/{name}").status_code for name in ("ok", "missing", "raise")
        ]
        settled(db)
    with app.app_context():  # a CLI command, say
        db.add(User(name="cli"))
    with pytest.raises(LookupError), app.app_context():  # noqa: PT012
        db.add(User(name="cli failed"))
        raise LookupError

    assert [200, 404, 500] == statuses
    with Session(engine) as session:
        assert ["cli", "ok"] == sorted(session.scalars(sa.select(User.name)))


def test_init_app_refuses_scopes_that_outlive_the_context(engine: sa.Engine) -> None:
    """A session scoped otherwise than to the app context or the thread is
    refused with the fix in the message."""
    app = flask.Flask(__name__)
    db = scoped_session(sessionmaker(engine), lambda: "everyone")

    with pytest.raises(ValueError, match=r"scopefunc=scoped\.integrations\.flask"):
        scoped_flask.init_app(app, db)


@pytest.mark.servers
def test_no_connection_left_idle_in_transaction_on_postgresql(
    pg_url: str, in_threads: Callable[..., list[Any]]
) -> None:
    """After a load on PostgreSQL, no connection of ours is idle in transaction."""
    engine, name = tagged_pg_engine(pg_url, pool_size=8, max_overflow=0)
    db = app_db(engine)
    app = flask.Flask(__name__)
    scoped_flask.init_app(app, db)

    @app.get("/")
    def query() -> dict[str, int | None]:
        db.execute(sa.select(1))
        db.commit()
        # Begins a transaction that only the teardown ends.
        return {"pid": db.scalar(sa.select(sa.func.pg_backend_pid()))}

    try:
        with wsgi_server(app, "pooled") as url:
            states = pg_load(in_threads, url, db, pg_url, name)
        stats = db.registry.stats()
    finally:
        engine.dispose()

    assert states  # the pool kept its connections: there was something to see
    assert [] == [s for s in states if s.startswith("idle in transaction")]
    assert all_removed(200) == stats
