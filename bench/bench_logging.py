"""What lifecycle logging costs when the application filters it out.

One process times the create + remove cycle (``db(); db.remove()``) of
``scoped_session(sessionmaker(engine))`` on a SQLite file, in these set-ups:

* **off**: ``log=False``;
* **structlog INFO**: the application configured structlog with
  ``make_filtering_bound_logger(logging.INFO)``, so DEBUG events are dropped;
* **stdlib INFO**: structlog is not configured and the standard library
  logger ``"scoped"`` is at INFO (what an application that only uses
  :mod:`logging` gets);
* **JSON to devnull** (information): DEBUG enabled, every event rendered by
  ``scoped.logging.to_json`` to ``os.devnull``;
* **sqlalchemy** (reference): the same cycle with
  :class:`sqlalchemy.orm.scoped_session`.

Every set-up is sampled on every round in a shuffled order (interleaved) and
keeps its best sample (best of N), with the sampler of ``bench/run.py``. The
two filtered set-ups pass when they take at most 1.05 times the cycle with
logging off.

Usage: ``python bench/bench_logging.py [--rounds N] [--sample-ms MS] [--strict]``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from run import (
    best_times,
    describe_machine,
    format_table,
    parse_timing,
    timing_arguments,
)
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session as sa_scoped_session
from sqlalchemy.orm import sessionmaker

import scoped.logging
from scoped import scoped_session
from scoped.lifecycle import LOGGER_NAME, set_default_logger

#: A filtered set-up may take at most this many times the cycle without logs.
LIMIT = 1.05


@dataclass(frozen=True)
class Setup:
    """One way of running the cycle."""

    key: str
    label: str
    proxy: Any
    gated: bool = False


def _setups(factory: sessionmaker[Any], devnull: Any) -> list[Setup]:
    """Build every set-up, each resolving its logger under its own conditions.

    Registries resolve their logger at their first event and keep it, so the
    order matters: the stdlib one resolves before structlog is configured,
    and ``to_json``'s process-wide default is withdrawn before either.
    """
    json_logger = scoped.logging.to_json(devnull)
    set_default_logger(None)

    structlog.reset_defaults()
    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)
    stdlib = scoped_session(factory, name="stdlib")
    stdlib()
    stdlib.remove()
    assert "stdlib" in type(stdlib.registry.events.logger()).__module__

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO)
    )
    filtered = scoped_session(factory, name="structlog")
    filtered()
    filtered.remove()

    return [
        Setup("off", "(a) log=False", scoped_session(factory, log=False)),
        Setup("structlog", "(b) structlog, INFO", filtered, gated=True),
        Setup("stdlib", "(c) stdlib 'scoped', INFO", stdlib, gated=True),
        Setup(
            "json",
            "(d) DEBUG, JSON to devnull",
            scoped_session(factory, name="json", logger=json_logger),
        ),
        Setup("sqlalchemy", "sqlalchemy scoped_session", sa_scoped_session(factory)),
    ]


def measure(
    rounds: int, sample_s: float, seed: int
) -> tuple[list[Setup], dict[str, float]]:
    """Time every set-up; return them and the best ns per cycle of each."""
    with (
        tempfile.TemporaryDirectory(prefix="scoped-bench-") as tmp,
        open(os.devnull, "w", encoding="utf-8") as devnull,
    ):
        engine = create_engine(f"sqlite:///{tmp}/bench.db")
        try:
            setups = _setups(sessionmaker(engine), devnull)
            timers = {
                s.key: timeit.Timer("db(); db.remove()", globals={"db": s.proxy})
                for s in setups
            }
            return setups, best_times(timers, rounds, sample_s, seed)
        finally:
            structlog.reset_defaults()
            engine.dispose()


def render(setups: list[Setup], best: dict[str, float]) -> tuple[str, list[str]]:
    """The table, and the labels of the set-ups that failed."""
    base = best["off"]
    rows = []
    failed = []
    for setup in setups:
        ratio = best[setup.key] / base
        verdict = "info"
        if setup.gated:
            verdict = "PASS" if ratio <= LIMIT else "FAIL"
            if verdict == "FAIL":
                failed.append(setup.label)
        rows.append((setup.label, f"{best[setup.key]:,.0f}", f"{ratio:.3f}", verdict))
    header = ("set-up", "ns/cycle", "vs (a)", f"<= {LIMIT}")
    return format_table(header, rows), failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_arguments(parser, rounds=61, sample_ms=50.0)
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a filtered set-up fails"
    )
    args = parse_timing(parser, argv)

    started = time.perf_counter()
    setups, best = measure(args.rounds, args.sample_ms / 1000, args.seed)
    elapsed = time.perf_counter() - started
    for line in describe_machine():
        print(line)
    print(
        f"create + remove cycle of scoped_session(sessionmaker(sqlite file)): "
        f"best of {args.rounds} interleaved samples of ~{args.sample_ms:g} ms, "
        f"{elapsed:.0f} s in all"
    )
    print()
    table, failed = render(setups, best)
    print(table)
    if failed:
        print(f"\nabove {LIMIT}x of log=False: {'; '.join(failed)}")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
