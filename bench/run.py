"""Per-call overhead of scoped's proxies against SQLAlchemy's scoped_session.

One process, one SQLAlchemy ``Session`` behind a pair of proxies per scope:
SQLAlchemy's ``scoped_session`` and ours, with the thread-local registry and
with custom scope functions that reach each of scoped's two registries. For
every row the same statement is timed on the session itself ("direct") and on
each proxy; the overhead is the proxy's time minus the direct time. Every
timer is sampled in a shuffled order on every round (interleaved), and each
keeps its best sample (best of N), which is the least disturbed by other work
on the machine.

A row passes when our overhead is at most 0.4 times SQLAlchemy's. The
``registry()`` and ``db()`` rows time the whole lookup (there is no direct
equivalent); they are shown for information. ``bench_scopefuncs.py`` times
other common scope functions the same way.

Usage: ``python bench/run.py [--rounds N] [--sample-ms MS] [--markdown] [--strict]``
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import random
import sys
import threading
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm import scoped_session as sa_scoped_session

import scoped
import scoped.proxies
from scoped import scoped_session

#: Our overhead may be at most this fraction of SQLAlchemy's.
TARGET = 0.4

_K = TypeVar("_K")


#: Scope functions, the same for both libraries. scoped serves
#: ``threading.get_ident`` itself with per-thread storage, so a ``partial`` of
#: it (the same keys, a few ns more per call for both) times the keyed
#: registry. (``get_native_id`` would be a system call per access.)
SCOPES: dict[str, Callable[[], Any] | None] = {
    "thread-local": None,
    "get_ident": threading.get_ident,
    "partial(get_ident)": functools.partial(threading.get_ident),
}


@dataclass(frozen=True)
class Row:
    """One line of the table: a statement on ``x``, timed per proxy.

    *whole* rows time the whole statement (it has no direct equivalent on the
    session); the others time the overhead over the direct statement.
    """

    member: str
    stmt: str
    scope: str
    gated: bool = True
    whole: bool = False

    @property
    def label(self) -> str:
        return f"{self.member:<11} {self.scope}"


MEMBERS = (
    ("rollback()", "x.rollback()"),
    ("autoflush", "x.autoflush"),
    ("get_bind()", "x.get_bind()"),
)

ROWS = [
    *(Row(member, stmt, scope) for member, stmt in MEMBERS for scope in SCOPES),
    *(
        Row(member, stmt, scope, gated=False, whole=True)
        for member, stmt in (("registry()", "x.registry()"), ("db()", "x()"))
        for scope in SCOPES
    ),
]


class Gated(Protocol):
    """What a result needs of its row (other benchmarks bring their own rows)."""

    @property
    def label(self) -> str: ...

    @property
    def gated(self) -> bool: ...


@dataclass
class Result:
    """The best time per call of one row, in nanoseconds."""

    row: Gated
    direct: float | None
    sa: float
    ours: float
    #: The largest passing ratio.
    target: float = TARGET

    @property
    def sa_overhead(self) -> float | None:
        return None if self.direct is None else self.sa - self.direct

    @property
    def our_overhead(self) -> float | None:
        return None if self.direct is None else self.ours - self.direct

    @property
    def ratio(self) -> float:
        # Rows compare overheads; whole rows, whole times.
        if self.direct is None:
            return self.ours / self.sa
        return (self.ours - self.direct) / (self.sa - self.direct)

    @property
    def verdict(self) -> str:
        if not self.row.gated:
            return "info"
        return "PASS" if self.ratio <= self.target else "FAIL"


def _proxies(
    factory: sessionmaker[Session],
    session: Session,
    scopes: dict[str, Callable[[], Any] | None],
) -> dict[tuple[str, str], Any]:
    """Both libraries' proxies per scope, each holding *session* right now."""
    proxies: dict[tuple[str, str], Any] = {}
    for scope, scopefunc in scopes.items():
        proxies["sa", scope] = sa_scoped_session(factory, scopefunc)
        # Lifecycle events fire on creation and removal only, never per call;
        # switched off so that setting the session prints nothing.
        proxies["ours", scope] = scoped_session(factory, scopefunc, log=False)
    for proxy in proxies.values():
        proxy.registry.set(session)
        assert proxy() is session
    return proxies


def _calibrate(timer: timeit.Timer, sample_s: float) -> int:
    """Loops per sample so that one sample takes about *sample_s* seconds."""
    loops = 1000
    while True:
        elapsed = timer.timeit(loops)
        if elapsed >= sample_s / 4:
            return max(1000, int(loops * sample_s / elapsed))
        loops *= 4


def best_times(
    timers: dict[_K, timeit.Timer], rounds: int, sample_s: float, seed: int
) -> dict[_K, float]:
    """Best nanoseconds per call of each timer, sampled interleaved."""
    loops = {key: _calibrate(timer, sample_s) for key, timer in timers.items()}
    best = dict.fromkeys(timers, float("inf"))
    order = list(timers)
    shuffle = random.Random(seed).shuffle
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            shuffle(order)
            for key in order:
                per_call = timers[key].timeit(loops[key]) / loops[key]
                best[key] = min(best[key], per_call * 1e9)
    finally:
        gc.enable()
    return best


@dataclass
class Run:
    """What one benchmark run found."""

    results: list[Result]
    seconds: float
    registries: str  # which registry class serves each scope in scoped


def measure(
    rounds: int,
    sample_s: float,
    seed: int,
    rows: Sequence[Row] = ROWS,
    scopes: dict[str, Callable[[], Any] | None] = SCOPES,
) -> Run:
    """Time every row of *rows*, whose scopes are named in *scopes*."""
    started = time.perf_counter()
    factory = sessionmaker(create_engine("sqlite://"))
    session = factory()
    proxies = _proxies(factory, session, scopes)

    timers: dict[tuple[str, str], timeit.Timer] = {}
    for row in rows:
        if not row.whole:
            timers["direct", row.stmt] = timeit.Timer(row.stmt, globals={"x": session})
        for lib in ("sa", "ours"):
            proxy = proxies[lib, row.scope]
            timers[lib, row.label] = timeit.Timer(row.stmt, globals={"x": proxy})
    try:
        best = best_times(timers, rounds, sample_s, seed)
    finally:
        session.close()
    registries = ", ".join(
        f"{scope}: {type(proxies['ours', scope].registry).__name__}" for scope in scopes
    )

    results = [
        Result(
            row,
            None if row.whole else best["direct", row.stmt],
            best["sa", row.label],
            best["ours", row.label],
        )
        for row in rows
    ]
    return Run(results, time.perf_counter() - started, registries)


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def describe_machine() -> list[str]:
    """Interpreter, libraries and hardware: what the numbers depend on."""
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"{' '.join(platform.python_build())})",
        f"SQLAlchemy {sqlalchemy.__version__}, scoped {scoped.__version__}",
        f"{platform.system()} {platform.release()}, {_cpu()}, "
        f"{_usable_cpus()} usable CPUs",
    ]


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _ns(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _headers(target: float) -> tuple[str, ...]:
    return (
        "row",
        "direct ns",
        "SA ns",
        "ours ns",
        "SA overhead",
        "our overhead",
        "ratio",
        f"vs {target:g}",
    )


def _cells(result: Result) -> tuple[str, ...]:
    return (
        result.row.label,
        _ns(result.direct),
        _ns(result.sa),
        _ns(result.ours),
        _ns(result.sa_overhead),
        _ns(result.our_overhead),
        f"{result.ratio:.2f}",
        result.verdict,
    )


def render_text(results: list[Result], target: float = TARGET) -> str:
    """The table as aligned plain text, judged against *target*."""
    return format_table(_headers(target), [_cells(r) for r in results])


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1
) -> str:
    """Plain-text columns: the first *left* left-aligned, the others right."""
    lines = [tuple(headers), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-" * len(fmt(lines[0]))
    return "\n".join([fmt(lines[0]), rule, *(fmt(c) for c in lines[1:])])


def render_markdown(results: list[Result]) -> str:
    """The table as Markdown, for docs/performance.md."""
    return format_markdown(_headers(TARGET), [_cells(r) for r in results])


def format_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table: the first column left-aligned, the others right."""
    align = ["---", *["---:"] * (len(headers) - 1)]
    lines = [tuple(headers), tuple(align), *(tuple(row) for row in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def timing_arguments(
    parser: argparse.ArgumentParser, *, rounds: int, sample_ms: float
) -> None:
    """Add the sampling options every benchmark here takes."""
    parser.add_argument("--rounds", type=int, default=rounds, help="samples per timer")
    parser.add_argument(
        "--sample-ms", type=float, default=sample_ms, help="length of one sample"
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed")


def parse_timing(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse *argv*, rejecting sampling options that cannot work."""
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.sample_ms <= 0:
        parser.error("--rounds must be at least 1 and --sample-ms positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_arguments(parser, rounds=41, sample_ms=10.0)
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a gated row fails"
    )
    args = parse_timing(parser, argv)

    run = measure(args.rounds, args.sample_ms / 1000, args.seed)
    for line in describe_machine():
        print(line)
    print(
        f"best of {args.rounds} interleaved samples of ~{args.sample_ms:g} ms "
        f"per timer, {run.seconds:.0f} s in all; overhead = proxy - direct "
        "on the same Session"
    )
    print(f"scoped's registries: {run.registries}")
    attributes = (
        "compiled (scoped._speedups)"
        if scoped.proxies.SPEEDUPS
        else "Python properties"
    )
    print(f"scoped's attribute proxies: {attributes}")
    print()
    print(render_markdown(run.results) if args.markdown else render_text(run.results))
    failed = [" ".join(r.row.label.split()) for r in run.results if r.verdict == "FAIL"]
    if failed:
        print(f"\nabove {TARGET}x of SQLAlchemy's overhead: {'; '.join(failed)}")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
