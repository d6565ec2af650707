"""``python -m scoped demo``: a JSON API under concurrent HTTP load.

A small WSGI application (accounts and their orders) reads and writes through
one module-level ``db_session``, wrapped in
:class:`scoped.integrations.wsgi.ScopedSessionMiddleware`, and is served on a
free 127.0.0.1 port by a real server with a fixed pool of threads, as
production WSGI servers have: whatever a request leaves in its thread reaches
the next request on that thread. Concurrent HTTP clients then send a bounded
mix of requests: reads, writes, a write that raises after it flushed (planned
to fail with a 500) and a streamed listing that queries while it streams.

Once the server has finished every request, with its threads still alive,
the demo measures what was left behind (sessions still registered, sessions
that still exist, connections checked out of the pool), checks the tables
against the requests that succeeded and that only the planned requests
failed, and exits with 0 only if every check passes. ``--no-remove`` serves
the same application without the middleware, to see the checks fail.

Only the standard library serves and sends the requests. SQLAlchemy is
imported inside :func:`run` only: the same command line also serves
``python -m scoped report``, which must not need it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import http.client
import json
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import scoped.logging
from scoped._cli import not_negative, positive
from scoped.lifecycle import set_default_logger

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from sqlalchemy import Engine, MetaData, Table
    from sqlalchemy.orm import Session

    from scoped.session import scoped_session

__all__ = [
    "PooledWSGIServer",
    "add_arguments",
    "drive",
    "make_app",
    "prepare_database",
    "run",
    "serve",
]

_S = TypeVar("_S")

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

#: The request mix, by request number, apart from the planned failures.
MIX = ("read", "write", "read", "write", "stream")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``demo`` subcommand's options on *parser*."""
    parser.add_argument(
        "--clients",
        type=positive,
        default=16,
        help="concurrent HTTP clients (default 16)",
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=500,
        help="requests per client (default 500)",
    )
    parser.add_argument(
        "--threads",
        type=positive,
        default=8,
        help="server threads, and pooled connections (default 8)",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help=(
            "SQLAlchemy database URL; its scoped_demo_* tables are dropped and "
            "recreated (default: a SQLite file in a temporary directory)"
        ),
    )
    parser.add_argument(
        "--fail-every",
        type=not_negative,
        default=10,
        metavar="N",
        help="every Nth request goes to an endpoint that raises (0: none)",
    )
    parser.add_argument(
        "--log",
        default="scoped-demo-events.jsonl",
        metavar="PATH",
        help="write the lifecycle log here as JSON lines, then report on it "
        "('' to skip)",
    )
    parser.add_argument(
        "--no-remove",
        action="store_true",
        help="serve without the middleware (nothing removes the sessions), "
        "to see the checks fail",
    )


# -- the application's data ----------------------------------------------


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


# -- the application -------------------------------------------------------


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


# -- the server --------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a log line per request or traceback per 500.

    The application records unexpected exceptions itself.
    """

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_stderr(self) -> Any:
        return _Discard()


class _Discard:
    """A text stream that drops what it is given."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class PooledWSGIServer(WSGIServer):
    """:mod:`wsgiref`'s server with a fixed pool of request threads.

    Each connection (one request: wsgiref speaks HTTP/1.0) is served by one
    of *threads* long-lived threads, as in production WSGI servers, so a
    thread serves many requests and what one leaves behind reaches the next.
    """

    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WSGIApplication, threads: int):
        super().__init__(address, _QuietHandler)
        self.set_app(app)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="scoped-server")
        self._busy = 0
        self._idle = threading.Condition()

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            self._busy += 1
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a client that left early
            # The client sees what went wrong; the application records its
            # own exceptions.
            pass
        finally:
            self.shutdown_request(request)
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until every accepted request was served; tell whether it was."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=True)


@contextmanager
def serve(app: WSGIApplication, threads: int) -> Iterator[PooledWSGIServer]:
    """Serve *app* on a free 127.0.0.1 port until the block ends."""
    server = PooledWSGIServer(("127.0.0.1", 0), app, threads)
    loop = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="scoped-server-accept",
    )
    loop.start()
    try:
        yield server
    finally:
        server.shutdown()
        loop.join()
        server.server_close()


# -- the load ----------------------------------------------------------------


def _plan(number: int, fail_every: int) -> str:
    """What request *number* does: read, write, stream or fail."""
    if fail_every and number % fail_every == fail_every // 2:
        return "fail"
    return MIX[number % len(MIX)]


@dataclass
class _Tally:
    """What one client sent and received."""

    ok: int = 0
    failed: int = 0
    errors: int = 0
    first_error: str = ""
    amount: int = 0
    written: int = 0
    streams: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class _Progress:
    """Prints a short line each time another fifth of the requests is done."""

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self.total = total
        self.step = max(1, total // 5)
        self.quiet = quiet
        self.done = self.ok = self.failed = self.errors = 0
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def record(self, *, ok: bool = False, failed: bool = False) -> None:
        """Count one request: ok, failed on purpose, or else an error."""
        with self._lock:
            self.done += 1
            self.ok += ok
            self.failed += failed
            self.errors += not (ok or failed)
            if self.quiet or (self.done % self.step and self.done != self.total):
                return
            errors = f", {self.errors} errors" if self.errors else ""
            rate = self.done / (time.perf_counter() - self.started)
            print(
                f"  {self.done:>6}/{self.total} requests ({self.ok} ok, "
                f"{self.failed} failed on purpose{errors}), {rate:.0f}/s",
                flush=True,
            )


def _check_response(kind: str, status: int, body: bytes, amount: int) -> str:
    """Why the response to a *kind* request is wrong, or ``""``."""
    expected = {"read": 200, "write": 201, "stream": 200, "fail": 500}[kind]
    if status != expected:
        return f"{kind}: status {status}, expected {expected}: {body[:200]!r}"
    if kind == "write" and json.loads(body)["amount"] != amount:
        return f"write: {body[:200]!r} does not charge {amount}"
    if kind == "stream":
        last = json.loads(body.rsplit(b"\n", 1)[-1])
        if not last.get("end"):
            return f"stream: incomplete, ends with {body[-200:]!r}"
    return ""


@dataclass
class _Load:
    """The clients' requests: who sends which, and how long they wait."""

    port: int
    requests: int
    fail_every: int
    timeout: float
    progress: _Progress

    def send(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """One request on a new connection; return the status and the body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            if body is None:
                conn.request(method, path)
            else:
                data = json.dumps(body).encode()
                conn.request(method, path, data, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def request(self, kind: str, number: int) -> str:
        """Send request *number*, a *kind* one; return what was wrong, or ``""``."""
        account_id = 1 + number % ACCOUNTS
        try:
            if kind in {"write", "fail"}:
                path = "/orders" if kind == "write" else "/orders/fail"
                order = {"account": account_id, "amount": _amount(number)}
                status, body = self.send("POST", path, order)
            elif kind == "stream":
                status, body = self.send("GET", f"/accounts/{account_id}/orders")
            else:
                status, body = self.send("GET", f"/accounts/{account_id}")
            return _check_response(kind, status, body, _amount(number))
        except (OSError, ValueError, KeyError) as exc:
            return f"{kind}: {type(exc).__name__}: {exc}"

    def client(self, index: int, tally: _Tally) -> None:
        """Send client *index*'s requests and tally the responses."""
        for n in range(self.requests):
            number = index * self.requests + n
            kind = _plan(number, self.fail_every)
            tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
            problem = self.request(kind, number)
            if problem:
                tally.errors += 1
                tally.first_error = tally.first_error or problem
                self.progress.record()
            elif kind == "fail":
                tally.failed += 1
                self.progress.record(failed=True)
            else:
                tally.ok += 1
                if kind == "write":
                    tally.written += 1
                    tally.amount += _amount(number)
                tally.streams += kind == "stream"
                self.progress.record(ok=True)


def _amount(number: int) -> int:
    return 1 + number % 9


def drive(
    port: int,
    *,
    clients: int,
    requests: int,
    fail_every: int,
    timeout: float = WAIT_SECONDS,
    quiet: bool = False,
) -> list[_Tally]:
    """Send *clients* x *requests* requests concurrently; return each client's tally."""
    progress = _Progress(clients * requests, quiet=quiet)
    load = _Load(port, requests, fail_every, timeout, progress)
    tallies = [_Tally() for _ in range(clients)]
    threads = [
        threading.Thread(
            target=load.client, args=(i, tallies[i]), name=f"scoped-client-{i}"
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tallies


# -- measuring -----------------------------------------------------------------


class _SessionCounter(Generic[_S]):
    """A session factory that counts the sessions it makes and that are freed.

    "Removed" is measured, not inferred from ``remove()`` calls: a session
    counts once it no longer exists, i.e. its registry slot let go of it and
    nothing else holds it.
    """

    def __init__(self, factory: Callable[..., _S]) -> None:
        self.factory = factory
        # Which class the scoped_session proxies, as for the wrapped factory.
        self.class_: type | None = getattr(factory, "class_", None)
        # list.append is atomic and takes no lock, so finalizers that the
        # garbage collector runs in any thread cannot deadlock on it.
        self._made: list[None] = []
        self._freed: list[None] = []

    def __call__(self, **kw: Any) -> _S:
        session = self.factory(**kw)
        self._made.append(None)
        weakref.finalize(session, self._freed.append, None)
        return session

    def made(self) -> int:
        """Return how many sessions were created."""
        return len(self._made)

    def freed(self) -> int:
        """Collect garbage, then return how many sessions no longer exist."""
        gc.collect()
        return len(self._freed)


@dataclass
class _Outcome:
    """Everything the summary reports, measured after the load."""

    tallies: list[_Tally]
    planned: int
    elapsed: float
    made: int
    freed: int
    live: int
    checked_out: int
    server_errors: list[str]
    orders: int = 0
    amount: int = 0
    mismatched: int = 0


@dataclass
class _Check:
    label: str
    value: str
    passed: bool


def _serve_and_measure(
    engine: Engine, accounts: Table, orders: Table, args: argparse.Namespace
) -> _Outcome:
    """Serve the app to the clients, then measure what the requests left."""
    from sqlalchemy.orm import sessionmaker

    from scoped.integrations.wsgi import ScopedSessionMiddleware
    from scoped.session import scoped_session

    counter: _SessionCounter[Session] = _SessionCounter(sessionmaker(bind=engine))
    # The one global session of the application.
    db_session = scoped_session(counter, name="demo")
    errors: list[str] = []
    app = make_app(db_session, accounts, orders, errors=errors)
    if not args.no_remove:
        app = ScopedSessionMiddleware(app, db_session)
    total = args.clients * args.requests
    started = time.perf_counter()
    with serve(app, args.threads) as server:
        print(
            f"serving on {server.url} with {args.threads} threads; "
            f"{args.clients} clients x {args.requests} requests",
            flush=True,
        )
        tallies = drive(
            server.server_port,
            clients=args.clients,
            requests=args.requests,
            fail_every=args.fail_every,
            timeout=_wait(args) * 2,
        )
        # Measured once the server finished every request, while its
        # threads (and whatever they hold) are still alive.
        finished = server.wait_idle()
        elapsed = time.perf_counter() - started
        outcome = _Outcome(
            tallies=tallies,
            planned=sum(_plan(n, args.fail_every) == "fail" for n in range(total)),
            elapsed=elapsed,
            made=counter.made(),
            freed=counter.freed(),
            live=db_session.registry.stats()["live"],
            checked_out=engine.pool.checkedout(),  # type: ignore[attr-defined]
            server_errors=errors,
        )
        if not finished:
            errors.append(f"the server did not finish within {WAIT_SECONDS} s")
    return outcome


def _count_rows(
    engine: Engine, accounts: Table, orders: Table, outcome: _Outcome
) -> None:
    """Record the orders, their total and the accounts whose balance is off."""
    from sqlalchemy import func, select

    totals = (
        select(orders.c.account_id, func.sum(orders.c.amount).label("total"))
        .group_by(orders.c.account_id)
        .subquery()
    )
    mismatched = (
        select(func.count())
        .select_from(accounts.outerjoin(totals, accounts.c.id == totals.c.account_id))
        .where(accounts.c.balance != func.coalesce(totals.c.total, 0))
    )
    with engine.connect() as conn:
        n_orders, amount = conn.execute(
            select(func.count(), func.coalesce(func.sum(orders.c.amount), 0))
        ).one()
        outcome.mismatched = conn.execute(mismatched).scalar_one()
    outcome.orders, outcome.amount = int(n_orders), int(amount)


def _checks(outcome: _Outcome, total: int) -> list[_Check]:
    tallies = outcome.tallies
    ok = sum(t.ok for t in tallies)
    failed = sum(t.failed for t in tallies)
    errors = sum(t.errors for t in tallies)
    written = sum(t.written for t in tallies)
    streams = sum(t.kinds.get("stream", 0) for t in tallies)
    streamed = sum(t.streams for t in tallies)
    expected_amount = sum(t.amount for t in tallies)
    made, freed = outcome.made, outcome.freed
    planned = outcome.planned
    unexpected = len(outcome.server_errors)
    return [
        _Check(
            "requests served",
            f"{ok + failed} ({ok} ok, {failed} failed on purpose, {errors} errors)",
            ok + failed == total and errors == 0,
        ),
        _Check(
            "only planned failures",
            f"{failed} of {planned} planned, {unexpected} unplanned exceptions",
            failed == planned and errors == 0 and unexpected == 0,
        ),
        _Check("streams complete", f"{streamed} of {streams}", streamed == streams),
        _Check("sessions created", str(made), made > 0),
        _Check("sessions removed", str(freed), freed == made),
        _Check("sessions still live", str(outcome.live), outcome.live == 0),
        _Check(
            "connections checked out",
            str(outcome.checked_out),
            outcome.checked_out == 0,
        ),
        _Check(
            "order rows",
            f"{outcome.orders} (expected {written})",
            outcome.orders == written,
        ),
        _Check(
            "amount ordered",
            f"{outcome.amount} (expected {expected_amount})",
            outcome.amount == expected_amount,
        ),
        _Check(
            "account balances",
            f"{ACCOUNTS - outcome.mismatched} of {ACCOUNTS} match their orders",
            outcome.mismatched == 0,
        ),
    ]


def _summarize(outcome: _Outcome, total: int) -> int:
    """Print the summary; return the exit status."""
    checks = _checks(outcome, total)
    print("summary")
    width = max(len(c.value) for c in checks)
    for check in checks:
        mark = "ok" if check.passed else "FAIL"
        print(f"  {check.label:<24} {check.value:<{width}}  {mark}")
    rate = total / outcome.elapsed if outcome.elapsed else 0.0
    print(f"  {'time':<24} {outcome.elapsed:.2f} s ({rate:.0f} requests/s)")
    first_error = next((t.first_error for t in outcome.tallies if t.first_error), "")
    if first_error:
        print(f"first unexpected response: {first_error}")
    if outcome.server_errors:
        first_line = outcome.server_errors[0].splitlines()[0]
        print(f"first unexpected exception in the server: {first_line}")
    failures = [c.label for c in checks if not c.passed]
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the load described by *args*; return 0 if every check passed."""
    try:
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        print("the demo needs SQLAlchemy: pip install 'scoped-registry[sqlalchemy]'")
        return 2

    with _database(args.db) as url:
        try:
            engine, accounts, orders = prepare_database(
                url, args.threads, wait=_wait(args)
            )
        except (ArgumentError, ValueError, ImportError) as exc:
            print(f"cannot use --db {url!r}: {exc}")
            return 2
        try:
            print(
                "scoped demo: a JSON API on "
                f"{engine.url.render_as_string(hide_password=True)}"
                + (", served WITHOUT the middleware" if args.no_remove else ""),
                flush=True,
            )
            with _lifecycle_log(args.log):
                outcome = _serve_and_measure(engine, accounts, orders, args)
            _count_rows(engine, accounts, orders, outcome)
        finally:
            engine.dispose()
    if args.log:
        _report(args.log)
    return _summarize(outcome, args.clients * args.requests)


def _wait(args: argparse.Namespace) -> float:
    return SHORT_WAIT_SECONDS if args.no_remove else WAIT_SECONDS


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    """Yield *url*, or the URL of a SQLite file in a fresh temporary directory."""
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="scoped-demo-") as tmp:
        yield f"sqlite:///{tmp}/demo.db"


@contextmanager
def _lifecycle_log(path: str) -> Iterator[None]:
    """Send the registry's lifecycle events to *path* while the load runs."""
    if not path:
        yield
        return
    with Path(path).open("w", encoding="utf-8") as stream:
        scoped.logging.to_json(stream)
        try:
            yield
        finally:
            set_default_logger(None)


def _report(path: str) -> None:
    """Print where the lifecycle log went, then the report of it."""
    from scoped import report

    with Path(path).open("rb") as stream:
        data = report.read_log(stream, source=path, top=3, limit=5)
    print(f"\nlifecycle log written to {path}; python -m scoped report {path}:\n")
    print(report.render_text(data))
