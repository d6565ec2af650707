"""Requests per second of the demo app: scoped's teardown against a hand-written one.

``python -m scoped demo``'s JSON API (reads, writes, a raising endpoint and a
streamed listing, on a SQLite file) is served twice, by the demo's pooled
WSGI server on two free 127.0.0.1 ports:

* **scoped**: ``scoped.scoped_session`` and
  :class:`scoped.integrations.wsgi.ScopedSessionMiddleware`;
* **sqlalchemy**: ``sqlalchemy.orm.scoped_session`` and the teardown people
  write by hand, ``try: ... finally: db_session.remove()`` around the
  application and its (possibly streamed) body.

The demo's concurrent HTTP clients run in a separate process. Each round
sends both apps the same load in slices that alternate between them
(A B B A A B ...), so that both meet the same background load on a shared
machine, and records each app's requests per second (wall clock) and
requests per CPU-second of the server process (for information: the
servers' own cost, without the clients'). The rounds' ratios, scoped /
sqlalchemy, are compared rather than samples from different rounds: the
median of the rounds' requests/s ratios passes at 0.98 or more, i.e. the
middleware and registry may cost at most 2 % of the throughput. Every
response is checked as in the demo; a wrong one stops the run.

Usage: ``python bench/bench_web.py [--rounds N] [--slices N] [--clients N]
[--requests N] [--db URL] [--strict]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from run import describe_machine
from sqlalchemy.orm import scoped_session as sa_scoped_session
from sqlalchemy.orm import sessionmaker

from scoped import scoped_session
from scoped.demo import drive, make_app, prepare_database, serve
from scoped.integrations.wsgi import ScopedSessionMiddleware

#: scoped's requests per second may be no lower than this fraction of SQLAlchemy's.
TARGET = 0.98

#: Server threads (and pooled connections) per app.
THREADS = 8


def remove_by_hand(app: Callable[..., Any], db_session: Any) -> Callable[..., Any]:
    """The usual hand-written teardown: ``remove()`` once the body is done."""

    def teardown(environ: Any, start_response: Any) -> Iterator[bytes]:
        # A generator, so that ``finally`` runs after a streamed body too
        # (when the server closes it), on the request's thread.
        try:
            yield from app(environ, start_response)
        finally:
            db_session.remove()

    return teardown


def drive_once(port: int, clients: int, requests: int) -> tuple[float, str]:
    """In the client process: one round of load; its seconds and first problem."""
    started = time.perf_counter()
    tallies = drive(port, clients=clients, requests=requests, fail_every=10, quiet=True)
    elapsed = time.perf_counter() - started
    return elapsed, next((t.first_error for t in tallies if t.first_error), "")


@dataclass
class Sample:
    """One round of one app: its requests, their wall-clock and server CPU time."""

    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def rate(self, metric: str) -> float:
        """Requests per second of ``wall`` or ``cpu`` time."""
        seconds: float = getattr(self, metric)
        return self.requests / seconds


def drive_slice(
    clients: Any, port: int, args: argparse.Namespace, into: Sample
) -> None:
    """Drive one app once from the client process; add what it took to *into*."""
    cpu = time.process_time()
    elapsed, problem = clients.apply(drive_once, (port, args.clients, args.requests))
    into.cpu += time.process_time() - cpu
    into.wall += elapsed
    into.requests += args.clients * args.requests
    if problem:
        msg = f"a response was wrong: {problem}"
        raise RuntimeError(msg)


def measure(args: argparse.Namespace, url: str) -> dict[str, list[Sample]]:
    """Serve both apps; each round alternates slices of load between them."""
    samples: dict[str, list[Sample]] = {"scoped": [], "sqlalchemy": []}
    # The clients run in another process, so that this one's CPU time is
    # the servers' alone. "spawn": this process already runs threads.
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        clients = stack.enter_context(context.Pool(1))
        # One engine: the apps take turns, so each has the whole pool.
        engine, accounts, orders = prepare_database(url, THREADS)
        stack.callback(engine.dispose)
        ports: dict[str, int] = {}
        for name in samples:
            if name == "scoped":
                ours = scoped_session(sessionmaker(bind=engine))
                app: Callable[..., Any] = ScopedSessionMiddleware(
                    make_app(ours, accounts, orders), ours
                )
            else:
                theirs = sa_scoped_session(sessionmaker(bind=engine))
                bare = make_app(theirs, accounts, orders)  # type: ignore[arg-type]
                app = remove_by_hand(bare, theirs)
            ports[name] = stack.enter_context(serve(app, THREADS)).server_port
        for port in ports.values():  # warm-up, not recorded
            drive_slice(clients, port, args, Sample())
        order = list(samples)
        for round_ in range(args.rounds):
            current = {name: Sample() for name in order}
            # Slices alternate (A B B A A B ...) so that both apps meet the
            # same background load on this shared machine.
            for slice_ in range(args.slices):
                for name in order if slice_ % 2 else reversed(order):
                    drive_slice(clients, ports[name], args, current[name])
            for name, one in current.items():
                samples[name].append(one)
            print(
                f"  round {round_ + 1:>2}/{args.rounds}: "
                + ", ".join(
                    f"{name} {one.rate('wall'):.0f}/s ({one.rate('cpu'):.0f}/CPU-s)"
                    for name, one in current.items()
                ),
                flush=True,
            )
    return samples


def _ratio(samples: dict[str, list[Sample]], metric: str) -> tuple[float, float]:
    """The median of the rounds' ratios, and the ratio of the medians."""
    ours = [s.rate(metric) for s in samples["scoped"]]
    theirs = [s.rate(metric) for s in samples["sqlalchemy"]]
    paired = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    return paired, statistics.median(ours) / statistics.median(theirs)


def render(samples: dict[str, list[Sample]]) -> tuple[str, bool]:
    """The result table and whether the requests/s ratio meets :data:`TARGET`."""
    lines = [f"{'':<12} {'median':>8} {'min':>8} {'max':>8}"]
    passed = False
    for metric, label in (("wall", "requests/s"), ("cpu", "requests/CPU-s")):
        lines.append(label)
        for name, values in samples.items():
            numbers = [s.rate(metric) for s in values]
            lines.append(
                f"  {name:<10} {statistics.median(numbers):>8.0f} "
                f"{min(numbers):>8.0f} {max(numbers):>8.0f}"
            )
        paired, of_medians = _ratio(samples, metric)
        summary = (
            f"  scoped/sqlalchemy: {paired:.3f} (median of the rounds' ratios; "
            f"ratio of the medians {of_medians:.3f})"
        )
        if metric == "wall":
            passed = paired >= TARGET
            summary += f", target >= {TARGET}: {'PASS' if passed else 'FAIL'}"
        else:
            summary += ", for information"
        lines.append(summary)
    return "\n".join(lines), passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--slices", type=int, default=6, help="per app and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client and slice")
    parser.add_argument(
        "--db", metavar="URL", help="database URL (default: a SQLite file)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when the ratio misses"
    )
    args = parser.parse_args(argv)
    for line in describe_machine():
        print(line)
    print(
        f"{args.rounds} rounds of {args.slices} slices x {args.clients} clients x "
        f"{args.requests} requests per app, {THREADS} server threads each"
    )
    with tempfile.TemporaryDirectory(prefix="scoped-bench-") as tmp:
        url = args.db or f"sqlite:///{tmp}/bench.db"
        samples = measure(args, url)
    table, passed = render(samples)
    print(table)
    return 0 if passed or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
