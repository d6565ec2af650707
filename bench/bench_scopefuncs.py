"""What common custom scope functions cost through each library's proxies.

``bench/run.py`` gates the proxies on the scope functions that reach each of
scoped's registries. This benchmark shows others that applications use: a
context variable's ``get`` (the README's example), ``greenlet.getcurrent``
(which scoped serves with its greenlet scope) and a scope function written
in Python. ``partial(get_ident)``, the keyed row of ``run.py``, is repeated
for reference.

Every scope function is timed in its own interpreter, as an application with
one ``scoped_session`` would run it: the generated proxy functions of one
class are shared by its instances, and CPython's inline caches in them adapt
to the scope function they call, so timing several kinds of scope function
in one process would slow each of them down.

The scope function runs on every access through either library, so its own
time is part of both overheads; the last column takes it out of both. The
rows are for information; the gated rows are in ``run.py``.

Usage: ``python bench/bench_scopefuncs.py [--rounds N] [--sample-ms MS] [--markdown]``
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import json
import subprocess
import sys
import threading
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from run import (
    MEMBERS,
    Row,
    best_times,
    describe_machine,
    format_markdown,
    format_table,
    measure,
    parse_timing,
    timing_arguments,
)

from scoped import scoped_session

#: A request key in a context variable, as in the README's example.
REQUEST_ID: contextvars.ContextVar[int] = contextvars.ContextVar("request_id")


def python_scope() -> int:
    """A scope function written in Python, like most applications' own."""
    return threading.get_ident()


def _greenlet() -> Callable[[], Any] | None:
    try:
        import greenlet
    except ImportError:  # the greenlet extra is not installed
        return None
    return greenlet.getcurrent


SCOPEFUNCS: dict[str, Callable[[], Callable[[], Any] | None]] = {
    "partial(get_ident)": lambda: functools.partial(threading.get_ident),
    "ContextVar.get": lambda: REQUEST_ID.get,
    "greenlet.getcurrent": _greenlet,
    "def scope()": lambda: python_scope,
}


@dataclass
class Measured:
    """One scope function's row per member, in nanoseconds."""

    scope: str
    lookup: str  # how scoped's proxies find the current session
    scopefunc: float  # one call of the scope function on its own
    member: str
    direct: float
    sa: float
    ours: float


def measure_one(
    name: str, rounds: int, sample_s: float, seed: int
) -> list[Measured] | None:
    """Time *name*'s rows in this process; ``None`` if it is not available."""
    scopefunc = SCOPEFUNCS[name]()
    if scopefunc is None:
        return None
    REQUEST_ID.set(1)  # the context every timer runs in: this thread's
    rows = [Row(member, stmt, name, gated=False) for member, stmt in MEMBERS[:2]]
    run = measure(rounds, sample_s, seed, rows, {name: scopefunc})
    # The timing loop's own time (a few ns) is taken out of the call's.
    alone = best_times(
        {
            "call": timeit.Timer("f()", globals={"f": scopefunc}),
            "loop": timeit.Timer("pass"),
        },
        rounds,
        sample_s,
        seed,
    )
    # Only read, never called: the timed proxies' code stays as they left it.
    registry = scoped_session(lambda: None, scopefunc, log=False).registry
    lookup = registry.lookup.expression.format(storage="storage", scopefunc="f")
    return [
        Measured(
            name,
            lookup,
            alone["call"] - alone["loop"],
            r.row.label.split()[0],
            r.direct,
            r.sa,
            r.ours,
        )
        for r in run.results
        if r.direct is not None
    ]


def _in_child(name: str, args: argparse.Namespace) -> list[Measured]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        f"--rounds={args.rounds}",
        f"--sample-ms={args.sample_ms}",
        f"--seed={args.seed}",
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    return [Measured(**item) for item in json.loads(output.stdout)]


HEADERS = (
    "row",
    "our lookup",
    "scopefunc ns",
    "SA overhead",
    "our overhead",
    "ratio",
    "without scopefunc",
)


def _cells(m: Measured) -> tuple[str, ...]:
    sa, ours = m.sa - m.direct, m.ours - m.direct
    return (
        f"{m.member:<11} {m.scope}",
        m.lookup,
        f"{m.scopefunc:.1f}",
        f"{sa:.1f}",
        f"{ours:.1f}",
        f"{ours / sa:.2f}",
        f"{(ours - m.scopefunc) / (sa - m.scopefunc):.2f}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scope function in a child interpreter and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_arguments(parser, rounds=41, sample_ms=10.0)
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table"
    )
    parser.add_argument("--child", choices=SCOPEFUNCS, help=argparse.SUPPRESS)
    args = parse_timing(parser, argv)
    if args.child:
        measured = measure_one(
            args.child, args.rounds, args.sample_ms / 1000, args.seed
        )
        print(json.dumps([asdict(m) for m in measured or []]))
        return 0

    results: list[Measured] = []
    skipped = []
    for name in SCOPEFUNCS:
        found = _in_child(name, args)
        results += found
        if not found:
            skipped.append(name)
    for line in describe_machine():
        print(line)
    print(
        f"best of {args.rounds} interleaved samples of ~{args.sample_ms:g} ms per "
        "timer, one interpreter per scope function; ns over the direct call"
    )
    if skipped:
        print(f"not installed: {', '.join(skipped)}")
    print()
    results.sort(key=lambda m: m.member)
    table = format_markdown if args.markdown else format_table
    print(table(HEADERS, [_cells(m) for m in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
