"""``python -m scoped demo``: many threads, one global ``scoped_session``.

Worker threads serve simulated requests against an embedded SQLite file (or
the database given with ``--db``), each request reading and writing through
the proxies of one module-level ``db_session`` and calling
``db_session.remove()`` at teardown. Some requests fail on purpose and are
rolled back. While the workers are still alive, the demo measures what they
left behind (sessions in their registry slots, sessions that still exist,
connections checked out of the pool) and then checks the tables against the
requests that succeeded. The exit status is 0 only if every check passes.

SQLAlchemy is imported inside :func:`run` only: the same command line also
serves ``python -m scoped report``, which must not need it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import scoped.logging
from scoped._cli import not_negative, positive
from scoped.lifecycle import set_default_logger

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData, Table
    from sqlalchemy.orm import Session

    from scoped.session import scoped_session

__all__ = ["add_arguments", "run"]

_S = TypeVar("_S")

#: Accounts shared by all workers, so that threads write the same rows.
ACCOUNTS = 20

#: How long a thread waits for SQLite's write lock or a pooled connection.
WAIT_SECONDS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``demo`` subcommand's options on *parser*."""
    parser.add_argument(
        "--threads", type=positive, default=8, help="worker threads (default 8)"
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=200,
        help="requests per worker thread (default 200)",
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
        help="every Nth request fails on purpose and is rolled back (0: none)",
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
        help="skip db_session.remove() at request teardown, to see the checks fail",
    )


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
        Column("account_id", ForeignKey(accounts.c.id), nullable=False),
        Column("amount", Integer, nullable=False),
    )
    mapper = registry(metadata=metadata)
    mapper.map_imperatively(Account, accounts)
    mapper.map_imperatively(Order, orders)
    return metadata, accounts, orders


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
class _Tally:
    """What one worker thread did and saw."""

    ok: int = 0
    failed: int = 0
    errors: int = 0
    first_error: str = ""
    amount: int = 0
    left_in_registry: bool = False


class _Progress:
    """Prints a short line each time another fifth of the requests is done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = max(1, total // 5)
        self.done = self.ok = self.failed = self.errors = 0
        self._lock = threading.Lock()

    def record(self, *, ok: bool = False, failed: bool = False) -> None:
        """Count one request: ok, failed on purpose, or else an error."""
        with self._lock:
            self.done += 1
            self.ok += ok
            self.failed += failed
            self.errors += not (ok or failed)
            if self.done % self.step == 0 or self.done == self.total:
                errors = f", {self.errors} errors" if self.errors else ""
                print(
                    f"  {self.done:>6}/{self.total} requests ({self.ok} ok, "
                    f"{self.failed} failed on purpose{errors})",
                    flush=True,
                )


@dataclass
class _Check:
    label: str
    value: str
    passed: bool


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    """Yield *url*, or the URL of a SQLite file in a fresh temporary directory."""
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="scoped-demo-") as tmp:
        yield f"sqlite:///{tmp}/demo.db"


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets readers run while one thread writes; busy_timeout makes
    # writers wait for the lock instead of failing with "database is locked";
    # synchronous=NORMAL is durable enough in WAL mode and avoids an fsync
    # per commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={WAIT_SECONDS * 1000}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _engine(url: str, threads: int) -> Engine:
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
    # One pooled connection per thread and no overflow: a leaked connection
    # shows up in checkedout() instead of being papered over.
    engine = create_engine(
        parsed,
        poolclass=QueuePool,
        pool_size=threads,
        max_overflow=0,
        pool_timeout=WAIT_SECONDS,
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _handle(
    db_session: scoped_session[Session], accounts: Table, number: int, fail: bool
) -> int:
    """Serve request *number*; return the amount it charged."""
    from sqlalchemy import update

    account_id = 1 + number % ACCOUNTS
    amount = 1 + number % 9
    account = db_session.get(Account, account_id)
    if account is None:
        msg = f"account {account_id} is missing"
        raise LookupError(msg)
    # An UPDATE in SQL rather than read-modify-write in Python, so that
    # concurrent requests on one account cannot lose each other's amounts.
    # It runs before the order's INSERT, whose foreign key check would
    # otherwise lock the account row first and deadlock (MariaDB).
    db_session.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(balance=accounts.c.balance + amount)
    )
    db_session.add(Order(account_id=account.id, amount=amount))
    if fail:
        db_session.flush()
        msg = f"request {number} fails on purpose"
        raise PlannedFailureError(msg)
    db_session.commit()
    # Rendering the response reloads the expired account: a new transaction
    # that holds a pooled connection until teardown closes the session.
    if account.balance < amount:
        msg = f"account {account_id} balance {account.balance} < {amount}"
        raise AssertionError(msg)
    return amount


def _work(
    db_session: scoped_session[Session],
    accounts: Table,
    args: argparse.Namespace,
    *,
    index: int,
    tally: _Tally,
    progress: _Progress,
) -> None:
    """Serve worker *index*'s requests, each one torn down by ``remove()``."""
    for n in range(args.requests):
        number = index * args.requests + n
        every = args.fail_every
        fail = every > 0 and number % every == every // 2
        try:
            tally.amount += _handle(db_session, accounts, number, fail)
        except Exception as exc:  # noqa: BLE001 - counted, and shown in the summary
            db_session.rollback()
            if isinstance(exc, PlannedFailureError):
                tally.failed += 1
                progress.record(failed=True)
            else:
                tally.errors += 1
                tally.first_error = tally.first_error or repr(exc)
                progress.record()
        else:
            tally.ok += 1
            progress.record(ok=True)
        finally:
            if not args.no_remove:
                db_session.remove()
    tally.left_in_registry = db_session.registry.has()


@dataclass
class _Outcome:
    """Everything the summary reports, measured after the workload."""

    tallies: list[_Tally]
    elapsed: float
    made: int
    freed: int
    live: int
    checked_out: int
    orders: int = 0
    amount: int = 0
    mismatched: int = 0


def _serve(engine: Engine, accounts: Table, args: argparse.Namespace) -> _Outcome:
    """Run the workers through one global ``db_session`` and measure the rest."""
    from sqlalchemy.orm import sessionmaker

    from scoped.session import scoped_session

    counter: _SessionCounter[Session] = _SessionCounter(sessionmaker(bind=engine))
    # The one global session of the application.
    db_session = scoped_session(counter, name="demo")

    tallies = [_Tally() for _ in range(args.threads)]
    progress = _Progress(args.threads * args.requests)
    # Workers park here after their last request so that what they left
    # behind is measured while they are still alive.
    parked = threading.Barrier(args.threads + 1, timeout=WAIT_SECONDS * 4)

    def worker(index: int) -> None:
        tally = tallies[index]
        try:
            _work(
                db_session,
                accounts,
                args,
                index=index,
                tally=tally,
                progress=progress,
            )
        except Exception as exc:  # noqa: BLE001 - shown in the summary
            tally.errors += 1
            tally.first_error = repr(exc)
        finally:
            try:
                parked.wait()  # the workload is done
                parked.wait()  # the main thread has measured
            except threading.BrokenBarrierError:
                pass
            # Tidy up after a --no-remove run, once it was measured.
            db_session.remove()

    started = time.perf_counter()
    threads = [
        threading.Thread(target=worker, args=(i,), name=f"scoped-demo-{i}")
        for i in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    try:
        parked.wait()
        outcome = _Outcome(
            tallies=tallies,
            elapsed=time.perf_counter() - started,
            made=counter.made(),
            freed=counter.freed(),
            live=sum(t.left_in_registry for t in tallies),
            checked_out=engine.pool.checkedout(),  # type: ignore[attr-defined]
        )
        parked.wait()
    finally:
        for thread in threads:
            thread.join()
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
    expected_amount = sum(t.amount for t in tallies)
    made, freed = outcome.made, outcome.freed
    return [
        _Check(
            "requests served",
            f"{ok + failed} ({ok} ok, {failed} failed on purpose, {errors} errors)",
            ok + failed == total and errors == 0,
        ),
        _Check("sessions created", str(made), made > 0),
        _Check("sessions removed", str(freed), freed == made),
        _Check("sessions still live", str(outcome.live), outcome.live == 0),
        _Check(
            "connections checked out",
            str(outcome.checked_out),
            outcome.checked_out == 0,
        ),
        _Check("order rows", f"{outcome.orders} (expected {ok})", outcome.orders == ok),
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
    print(f"  {'time':<24} {outcome.elapsed:.2f} s")
    first_error = next((t.first_error for t in outcome.tallies if t.first_error), "")
    if first_error:
        print(f"first unexpected error: {first_error}")
    failures = [c.label for c in checks if not c.passed]
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the workload described by *args*; return 0 if every check passed."""
    try:
        from sqlalchemy import insert
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        print("the demo needs SQLAlchemy: pip install 'scoped-registry[sqlalchemy]'")
        return 2

    with _database(args.db) as url:
        try:
            engine = _engine(url, args.threads)
        except (ArgumentError, ValueError, ImportError) as exc:
            print(f"cannot use --db {url!r}: {exc}")
            return 2
        try:
            metadata, accounts, orders = _schema()
            metadata.drop_all(engine)
            metadata.create_all(engine)
            with engine.begin() as conn:
                conn.execute(
                    insert(accounts),
                    [{"name": f"account-{i}", "balance": 0} for i in range(ACCOUNTS)],
                )
            print(
                f"scoped demo: {args.threads} threads x {args.requests} requests "
                f"on {engine.url.render_as_string(hide_password=True)}",
                flush=True,
            )
            with _lifecycle_log(args.log):
                try:
                    outcome = _serve(engine, accounts, args)
                except threading.BrokenBarrierError:
                    print("the workers did not finish in time")
                    return 1
            _count_rows(engine, accounts, orders, outcome)
        finally:
            engine.dispose()
    if args.log:
        _report(args.log)
    return _summarize(outcome, args.threads * args.requests)


@contextmanager
def _lifecycle_log(path: str) -> Iterator[None]:
    """Send the registry's lifecycle events to *path* while the workload runs."""
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
