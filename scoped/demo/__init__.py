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

Each part is a module of its own: :mod:`~scoped.demo.app` (the data and the
WSGI application), :mod:`~scoped.demo.server` (the pooled server),
:mod:`~scoped.demo.load` (the clients) and :mod:`~scoped.demo.checks` (what
is measured and judged); this module wires them into the command.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import scoped.logging
from scoped._cli import not_negative, positive
from scoped.demo.app import (
    SHORT_WAIT_SECONDS,
    WAIT_SECONDS,
    make_app,
    prepare_database,
)
from scoped.demo.checks import Outcome, SessionCounter, count_rows, summarize
from scoped.demo.load import drive, plan
from scoped.demo.server import PooledWSGIServer, serve
from scoped.lifecycle import set_default_logger

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table
    from sqlalchemy.orm import Session

__all__ = [
    "PooledWSGIServer",
    "add_arguments",
    "drive",
    "make_app",
    "prepare_database",
    "run",
    "serve",
]


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


def _serve_and_measure(
    engine: Engine, accounts: Table, orders: Table, args: argparse.Namespace
) -> Outcome:
    """Serve the app to the clients, then measure what the requests left."""
    from sqlalchemy.orm import sessionmaker

    from scoped.integrations.wsgi import ScopedSessionMiddleware
    from scoped.session import scoped_session

    counter: SessionCounter[Session] = SessionCounter(sessionmaker(bind=engine))
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
        outcome = Outcome(
            tallies=tallies,
            planned=sum(plan(n, args.fail_every) == "fail" for n in range(total)),
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
            count_rows(engine, accounts, orders, outcome)
        finally:
            engine.dispose()
    if args.log:
        _report(args.log)
    return summarize(outcome, args.clients * args.requests)


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
