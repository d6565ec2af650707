"""Real servers and checks shared by the web integration tests.

Servers listen on a free 127.0.0.1 port and are shut down when the ``with``
block ends, whatever happened inside it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from werkzeug.serving import WSGIRequestHandler, make_server

from scoped import scoped_session
from scoped.demo import serve

#: Upper bound for anything a test waits for.
TIMEOUT = 10.0


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a log line per request (errors still log)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def wsgi_server(app: Any, kind: str = "werkzeug") -> Iterator[str]:
    """Serve *app* on a threaded server; yield its base URL.

    ``werkzeug``: werkzeug's development server, a thread per request.
    ``pooled``: the demo's server, a fixed pool of 8 threads that each serve
    many requests, as production servers do.
    """
    if kind == "pooled":
        with serve(app, threads=8) as pooled:
            yield pooled.url
        return
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """Serve *app* with uvicorn in a background thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: leave the process's logging configuration alone.
    config = uvicorn.Config(app, log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        if not server.started:
            pytest.fail("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Poll *condition* until it is true; fail the test after :data:`TIMEOUT`."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {TIMEOUT}s waiting for {what}")
        time.sleep(0.005)


def settled(db_session: scoped_session[Any]) -> dict[str, int]:
    """Wait until no session is live, then return the registry's counters.

    A client can read the whole response before the server has closed it,
    so the server gets a moment to finish its teardown.
    """
    registry = db_session.registry
    wait_for(lambda: registry.stats()["live"] == 0, "the sessions to be removed")
    return registry.stats()


def tagged_pg_engine(url: str, **options: Any) -> tuple[sa.Engine, str]:
    """An engine whose connections carry a unique ``application_name``."""
    name = f"scoped-web-{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url, connect_args={"application_name": name}, **options)
    return engine, name


def pg_connection_states(url: str, name: str) -> list[str]:
    """The ``pg_stat_activity`` states of the connections named *name*."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.scalars(
                    sa.text(
                        "SELECT state FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": name},
                )
            )
    finally:
        engine.dispose()


def user_count(engine: sa.Engine) -> int:
    """How many rows the ``users`` table holds."""
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM users")) or 0


def load(
    in_threads: Callable[..., list[Any]],
    url: str,
    paths: Callable[[int], str],
    *,
    method: str = "POST",
    clients: int = 8,
    requests: int = 50,
) -> list[Any]:
    """*clients* concurrent clients send *requests* each; return the JSON bodies.

    Client ``i`` requests ``paths(i)``; any response but a success fails.
    """

    def client(index: int) -> list[Any]:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as http:
            return [
                http.request(method, paths(index)).raise_for_status().json()
                for _ in range(requests)
            ]

    return [body for bodies in in_threads(clients, client) for body in bodies]


def paused_stream(
    url: str, path: str, db_session: scoped_session[Any], release: threading.Event
) -> tuple[list[str], int, dict[str, int]]:
    """Stream *path*, pausing after its first line until *release* is set.

    Returns the lines, the sessions live during the pause, and the
    registry's counters once the response is finished.
    """
    with (
        httpx.Client(base_url=url, timeout=TIMEOUT) as http,
        http.stream("GET", path) as response,
    ):
        lines = response.iter_lines()
        received = [next(lines)]
        live = db_session.registry.stats()["live"]
        release.set()
        received += lines
    return received, live, settled(db_session)


def hang_up_mid_stream(url: str, path: str, db_session: scoped_session[Any]) -> int:
    """Read the first chunk of *path*, then close the connection.

    Returns the sessions live while the stream was open.
    """
    with (
        httpx.Client(base_url=url, timeout=TIMEOUT) as http,
        http.stream("GET", path) as response,
    ):
        # Kept: a discarded iterator would close the response at once.
        chunks = response.iter_bytes()
        next(chunks)
        return db_session.registry.stats()["live"]


def pg_load(
    in_threads: Callable[..., list[Any]],
    url: str,
    db_session: scoped_session[Any],
    pg_url: str,
    name: str,
    *,
    settle: bool = True,
) -> list[str]:
    """8 clients x 25 GETs of ``/``; return the PostgreSQL states of *name*.

    The states are read while the server and its threads are still up;
    with *settle*, only once no session is live.
    """
    load(in_threads, url, lambda _: "/", method="GET", requests=25)
    if settle:
        settled(db_session)
    return pg_connection_states(pg_url, name)


def all_removed(count: int) -> dict[str, int]:
    """The counters of a registry whose *count* sessions were all removed."""
    return {"created": count, "removed": count, "cleaned_up": 0, "live": 0}
