"""Thread isolation and remove() against real PostgreSQL and MariaDB servers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from scoped import scoped_session

pytestmark = pytest.mark.servers

THREADS = 4


@dataclass
class Server:
    """One database server and the SQL that inspects it."""

    url: str
    #: Connect arguments that tag our connections.
    connect_args: dict[str, Any]
    #: The server-side id of the current connection.
    connection_id: str
    #: Counts our connections with an open transaction (bound: ``ids``, ``app``).
    open_transactions: str


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each database server in turn; skipped (or failed) when it is down."""
    app = f"scoped-test-{uuid.uuid4().hex[:12]}"
    if request.param == "postgresql":
        return Server(
            url=request.getfixturevalue("pg_url"),
            connect_args={"application_name": app},
            connection_id="SELECT pg_backend_pid()",
            open_transactions=(
                "SELECT count(*) FROM pg_stat_activity "
                f"WHERE application_name = '{app}' "
                "AND state LIKE 'idle in transaction%'"
            ),
        )
    return Server(
        url=request.getfixturevalue("mariadb_url"),
        connect_args={},
        connection_id="SELECT CONNECTION_ID()",
        open_transactions=(
            "SELECT count(*) FROM information_schema.innodb_trx "
            "WHERE trx_mysql_thread_id IN :ids"
        ),
    )


@pytest.fixture
def engine(server: Server) -> Iterator[sa.Engine]:
    """A pooled engine on the server, tagged so our connections can be found."""
    engine = sa.create_engine(
        server.url, connect_args=server.connect_args, pool_size=THREADS
    )
    yield engine
    engine.dispose()


@pytest.fixture
def observer(server: Server) -> Iterator[sa.Engine]:
    """A separate engine for looking at the server from outside."""
    engine = sa.create_engine(server.url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def table(engine: sa.Engine) -> Iterator[sa.Table]:
    """A scratch table with a unique name, dropped afterwards."""
    metadata = sa.MetaData()
    table = sa.Table(
        f"scoped_rows_{uuid.uuid4().hex[:12]}",
        metadata,
        sa.Column("n", sa.Integer, nullable=False),
    )
    metadata.create_all(engine)
    yield table
    metadata.drop_all(engine)


def _open_transactions(
    server: Server, observer: sa.Engine, ids: list[int], expected: int
) -> int:
    """Count our open transactions, waiting briefly for *expected*.

    MariaDB serves ``information_schema.innodb_trx`` from a cache that it
    refreshes only when the previous read is over 0.1 s old, so a look can be
    stale in either direction and polling faster than that never refreshes.
    """
    statement = sa.text(server.open_transactions)
    if ":ids" in server.open_transactions:
        statement = statement.bindparams(sa.bindparam("ids", expanding=True))
    deadline = time.monotonic() + 3
    while True:
        with observer.connect() as connection:
            count = int(connection.scalar(statement, {"ids": ids}) or 0)
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.15)


def test_each_thread_uses_its_own_connection_until_remove(
    server: Server,
    engine: sa.Engine,
    observer: sa.Engine,
    table: sa.Table,
    in_threads: Callable[..., list[Any]],
) -> None:
    """Threads hold separate connections in open transactions; remove() ends both."""
    db: scoped_session[Session] = scoped_session(sessionmaker(engine))
    holding = threading.Barrier(THREADS + 1, timeout=20)
    released = threading.Barrier(THREADS + 1, timeout=20)
    ids: list[int] = []
    while_held: dict[str, int] = {}

    def work(index: int) -> None:
        db.execute(table.insert().values(n=index))
        connection_id = int(db.scalar(sa.text(server.connection_id)))
        ids.append(connection_id)
        holding.wait()  # every worker is mid-transaction now
        released.wait()
        assert connection_id == db.scalar(sa.text(server.connection_id))
        db.remove()
        assert not db.registry.has()

    def inspect_while_held() -> None:
        holding.wait()
        try:
            while_held["checked_out"] = engine.pool.checkedout()  # type: ignore[attr-defined]
            while_held["open"] = _open_transactions(server, observer, ids, THREADS)
        finally:
            released.wait()

    in_threads(
        THREADS + 1,
        lambda index: work(index) if index < THREADS else inspect_while_held(),
    )

    assert THREADS == len(set(ids))
    assert {"checked_out": THREADS, "open": THREADS} == while_held
    assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
    assert 0 == _open_transactions(server, observer, ids, 0)
    with observer.connect() as connection:
        # remove() closed the sessions without committing: nothing was kept.
        assert 0 == connection.scalar(sa.select(sa.func.count()).select_from(table))
