"""Shared fixtures: SQLite engines, thread runners and the database servers."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import structlog
from models import Base
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool
from structlog.testing import capture_logs

from scoped import scoped_session

_T = TypeVar("_T")

#: Where the servers of the development environment listen; override with
#: ``SCOPED_PG_URL`` / ``SCOPED_MARIADB_URL``.
PG_URL = os.environ.get(
    "SCOPED_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get(
    "SCOPED_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


def run_in_threads(
    count: int, target: Callable[[int], _T], *, timeout: float = 30.0
) -> list[_T]:
    """Run ``target(i)`` in *count* new threads; return results in order.

    The first exception raised in a thread is re-raised here, so a failed
    assertion inside a worker fails the test instead of vanishing.
    """
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(i,), name=f"worker-{i}")
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        pytest.fail(f"threads still running after {timeout}s: {stuck}")
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def in_threads() -> Callable[..., list[Any]]:
    """``in_threads(count, target)`` runs *target* in fresh threads."""
    return run_in_threads


def run_in_fork(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run *work* in a forked child; return the JSON-able dict it returned.

    An exception in the child comes back as ``{"error": repr(exc)}``. The
    child leaves with ``os._exit``, so nothing of the parent's is finalised.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            status = work()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            status = {"error": repr(exc)}
        os.write(write, json.dumps(status).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        return json.loads(pipe.read())  # type: ignore[no-any-return]


@pytest.fixture
def in_fork() -> Callable[[Callable[[], dict[str, Any]]], dict[str, Any]]:
    """``in_fork(work)`` runs *work* in a forked child and returns its report."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork()")
    return run_in_fork


def _held(db: scoped_session[Any], engine: sa.Engine) -> tuple[int, int]:
    return engine.pool.checkedout(), db.registry.stats()["live"]  # type: ignore[attr-defined]


@pytest.fixture
def held() -> Callable[[scoped_session[Any], sa.Engine], tuple[int, int]]:
    """``held(db, engine)``: the (checked-out connections, live sessions) left."""
    return _held


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Lifecycle events captured with structlog's ``capture_logs``.

    Registries must be created inside the test for their events to arrive
    here. Leaving ``capture_logs`` marks structlog as configured, which would
    make later registries print; the defaults are restored afterwards.
    """
    with capture_logs() as captured:
        yield captured
    structlog.reset_defaults()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine on a fresh SQLite file (real connection pool, test tables)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: sa.Engine) -> Iterator[scoped_session[Session]]:
    """A thread-local scoped_session over ``sessionmaker(engine)``."""
    db = scoped_session(sessionmaker(engine))
    yield db
    db.remove()


def _unreachable(name: str, url: str) -> str | None:
    """Connect once to *url*; return why it failed, or ``None``."""
    try:
        engine = sa.create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": 3}
        )
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        shown = sa.make_url(url).render_as_string(hide_password=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return f"{name} at {shown} is not reachable: {type(exc).__name__}: {first_line}"
    return None


def _server(name: str, url: str) -> str:
    reason = _unreachable(name, url)
    if reason is None:
        return url
    if os.environ.get("SCOPED_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (required: SCOPED_REQUIRE_SERVERS=1)")
    pytest.skip(f"{reason} (set SCOPED_REQUIRE_SERVERS=1 to fail instead)")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the local PostgreSQL server; skips (or fails) when it is down."""
    return _server("PostgreSQL", PG_URL)


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """URL of the local MariaDB server; skips (or fails) when it is down."""
    return _server("MariaDB", MARIADB_URL)
