"""The demo's application: accounts and their orders behind a JSON API.

The model classes are mapped imperatively, and only when the database is
prepared, so that importing the demo does not import SQLAlchemy.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from sqlalchemy import Engine, MetaData, Table
    from sqlalchemy.orm import Session

    from scoped.session import scoped_session

__all__ = [
    "ACCOUNTS",
    "SHORT_WAIT_SECONDS",
    "STREAM_ROWS",
    "WAIT_SECONDS",
    "Account",
    "Order",
    "PlannedFailureError",
    "make_app",
    "prepare_database",
]

#: Accounts shared by all clients, so that requests write the same rows.
ACCOUNTS = 20

#: Orders a streamed listing returns at most.
STREAM_ROWS = 20

#: How long anything waits: SQLite's write lock, a pooled connection, a
#: response, the server to finish.
WAIT_SECONDS = 30

#: The same waits with ``--no-remove``: sessions left behind hold locks
#: between requests, and waiting long for them only delays the failures.
SHORT_WAIT_SECONDS = 1


class Account:
    """A customer account; its balance is the sum of its orders' amounts."""

    id: int
    name: str
    balance: int

    def __init__(self, name: str, balance: int = 0) -> None:
        self.name = name
        self.balance = balance


class Order:
    """One successful request's purchase."""

    id: int
    account_id: int
    amount: int

    def __init__(self, account_id: int, amount: int) -> None:
        self.account_id = account_id
        self.amount = amount


class PlannedFailureError(Exception):
    """Raised by a request that fails on purpose, after it wrote rows."""


@functools.cache
def _schema() -> tuple[MetaData, Table, Table]:
    """Map :class:`Account` and :class:`Order` (once) and return their tables.

    Imperative mapping keeps the model classes importable without SQLAlchemy.
    """
    from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table
    from sqlalchemy.orm import registry

    metadata = MetaData()
    accounts = Table(
        "scoped_demo_accounts",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(40), nullable=False),
        Column("balance", Integer, nullable=False),
    )
    orders = Table(
        "scoped_demo_orders",
        metadata,
        Column("id", Integer, primary_key=True),
        # Indexed for the streamed listing, which would otherwise slow down
        # as the orders pile up.
        Column("account_id", ForeignKey(accounts.c.id), nullable=False, index=True),
        Column("amount", Integer, nullable=False),
    )
    mapper = registry(metadata=metadata)
    mapper.map_imperatively(Account, accounts)
    mapper.map_imperatively(Order, orders)
    return metadata, accounts, orders


def _sqlite_pragmas(wait: float, dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets readers run while one thread writes; busy_timeout makes
    # writers wait for the lock instead of failing with "database is locked";
    # synchronous=NORMAL is durable enough in WAL mode and avoids an fsync
    # per commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _engine(url: str, threads: int, wait: float) -> Engine:
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import QueuePool

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (
        None,
        "",
        ":memory:",
    ):
        msg = (
            f"--db {url!r} is an in-memory SQLite database, which each pooled "
            "connection would see separately; give a file, e.g. sqlite:///demo.db"
        )
        raise ValueError(msg)
    # One pooled connection per server thread and no overflow: a leaked
    # connection shows up in checkedout() instead of being papered over.
    engine = create_engine(
        parsed,
        poolclass=QueuePool,
        pool_size=threads,
        max_overflow=0,
        pool_timeout=wait,
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, wait))
    return engine


def prepare_database(
    url: str, threads: int, *, wait: float = WAIT_SECONDS
) -> tuple[Engine, Table, Table]:
    """An engine on *url* with fresh demo tables and :data:`ACCOUNTS` accounts.

    Its pool has a connection per server thread; *wait* bounds how long a
    request waits for a connection or a SQLite lock.
    """
    from sqlalchemy import insert

    engine = _engine(url, threads, wait)
    try:
        metadata, accounts, orders = _schema()
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(accounts),
                [{"name": f"account-{i}", "balance": 0} for i in range(ACCOUNTS)],
            )
    except BaseException:
        engine.dispose()
        raise
    return engine, accounts, orders


def _json(start_response: StartResponse, status: str, body: object) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def make_app(
    db_session: scoped_session[Session],
    accounts: Table,
    orders: Table,
    *,
    errors: list[str] | None = None,
) -> WSGIApplication:
    """The demo's JSON API as a bare WSGI application, with no teardown.

    * ``GET /accounts/<id>``: the account;
    * ``POST /orders`` with ``{"account": id, "amount": n}``: charge it (201);
    * ``POST /orders/fail``: the same write, flushed, then an exception (500);
    * ``GET /accounts/<id>/orders``: the account's latest orders as JSON
      lines, queried while they stream, ending with ``{"end": true, ...}``.

    Unexpected exceptions are appended to *errors* before they propagate.
    """
    from sqlalchemy import select, update

    def get_account(account_id: int) -> dict[str, Any]:
        account = db_session.get(Account, account_id)
        if account is None:
            msg = f"account {account_id} is missing"
            raise LookupError(msg)
        return {"id": account.id, "name": account.name, "balance": account.balance}

    def charge(environ: WSGIEnvironment, *, fail: bool) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(length))
        account_id, amount = int(request["account"]), int(request["amount"])
        # An UPDATE in SQL rather than read-modify-write in Python, so that
        # concurrent requests on one account cannot lose each other's
        # amounts. It runs before the order's INSERT, whose foreign key check
        # would otherwise lock the account row first and deadlock (MariaDB).
        db_session.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(balance=accounts.c.balance + amount)
        )
        order = Order(account_id=account_id, amount=amount)
        db_session.add(order)
        if fail:
            db_session.flush()
            msg = f"an order of {amount} on account {account_id} fails on purpose"
            raise PlannedFailureError(msg)
        db_session.commit()
        # Rendering the response reloads the expired order and account: a
        # new transaction that holds a pooled connection until teardown.
        account = get_account(account_id)
        return {"order": order.id, "amount": order.amount, "account": account}

    def stream_orders(account_id: int) -> Iterator[bytes]:
        # Runs after the application returned, while the server sends the
        # body: the session must still be there.
        rows = db_session.execute(
            select(orders.c.id, orders.c.amount)
            .where(orders.c.account_id == account_id)
            .order_by(orders.c.id.desc())
            .limit(STREAM_ROWS)
        )
        count = 0
        for order_id, amount in rows:
            count += 1
            yield json.dumps({"order": order_id, "amount": amount}).encode() + b"\n"
        balance = get_account(account_id)["balance"]
        yield json.dumps({"end": True, "orders": count, "balance": balance}).encode()

    def route(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        method = environ["REQUEST_METHOD"]
        parts = environ["PATH_INFO"].strip("/").split("/")
        if method == "POST" and parts[0] == "orders" and len(parts) <= 2:
            fail = parts[1:] == ["fail"]
            return _json(start_response, "201 Created", charge(environ, fail=fail))
        if method == "GET" and parts[0] == "accounts" and len(parts) == 2:
            return _json(start_response, "200 OK", get_account(int(parts[1])))
        if method == "GET" and parts[0] == "accounts" and parts[2:] == ["orders"]:
            start_response("200 OK", [("Content-Type", "application/x-ndjson")])
            return stream_orders(int(parts[1]))
        return _json(start_response, "404 Not Found", {"error": "no such route"})

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        try:
            return route(environ, start_response)
        except PlannedFailureError:
            raise
        except Exception as exc:
            if errors is not None:
                errors.append(f"{type(exc).__name__}: {exc}")
            raise

    return app
