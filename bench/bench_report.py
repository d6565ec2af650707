"""The report of a large log costs at most twice decoding its JSON.

Writes a realistic lifecycle log (sessions made, used, committed or rolled
back, closed and removed across worker threads; some never removed, some
shared between threads; a few percent of the application's own events; a few
malformed lines and a truncated last line) to a temporary file, then times,
best of three and interleaved in one process:

* the baseline: ``for line in f: json.loads(line)``, nothing else;
* the full report: ``scoped.report.read_log`` plus rendering it as text.

Usage: ``python bench/bench_report.py [--lines N] [--keep PATH]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from scoped.report import read_log, render_text

#: The report may take at most this many times the baseline.
LIMIT = 2.0
REPEAT = 3


_AGED = {
    "session.closed",
    "session.removed",
    "session.scope_ended",
    "session.leak_suspected",
}


def _lifecycle(rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """The events of one session: (event, level, extra fields)."""
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("session.created", "debug", {"session_class": "Session"})
    ]
    for _ in range(rng.randint(1, 3)):
        steps.append(("session.begin", "debug", {}))
        outcome = "session.commit" if rng.random() < 0.9 else "session.rollback"
        steps.append((outcome, "debug", {}))
    fate = rng.random()
    if fate < 0.005:  # never removed
        steps.append(("session.leak_suspected", "warning", {}))
    elif fate < 0.01:
        failure = {"exception": "OperationalError('server closed the connection')"}
        steps.append(("session.close_failed", "error", failure))
        steps.append(("session.removed", "debug", {}))
    else:
        steps.append(("session.closed", "debug", {}))
        end = "session.removed" if fate < 0.95 else "session.scope_ended"
        steps.append((end, "debug", {}))
    return steps


def _events(seed: int = 7) -> Iterator[str]:
    """Yield log lines without end: 16 worker threads, interleaved."""
    rng = random.Random(seed)
    clock = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
    step = timedelta(microseconds=250)
    threads = [(f"worker-{i}", 139_800_000_000 + i * 4096) for i in range(16)]
    pending: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
    sessions: dict[int, tuple[dict[str, Any], datetime]] = {}
    counter = 0
    while True:
        clock += step * rng.randint(1, 4)
        index = rng.randrange(len(threads))
        name, ident = threads[index]
        if not pending.get(index):
            counter += 1
            pending[index] = _lifecycle(rng)
            base: dict[str, Any] = {
                "registry": "default" if counter % 10 else "analytics",
                "scope_kind": "thread",
                "thread": name,
                "thread_id": ident,
                "session_id": f"{4242:x}-{counter:x}",
                "scope": f"<Thread({name}, started {ident})>",
            }
            sessions[index] = (base, clock)
        event, level, extra = pending[index].pop(0)
        base, created = sessions[index]
        record: dict[str, Any] = dict(base)
        if event == "session.commit" and rng.random() < 0.01:  # another thread
            record["thread"], record["thread_id"] = rng.choice(threads)
        record["timestamp"] = clock.isoformat()
        record.update(extra)
        if event in _AGED:
            record["age_ms"] = round((clock - created).total_seconds() * 1000, 3)
        record.update(event=event, level=level, logger="scoped")
        yield json.dumps(record)
        if rng.random() < 0.04:  # the application's own events
            yield json.dumps(
                {
                    "event": "request handled",
                    "path": f"/orders/{rng.randint(1, 10_000)}",
                    "status": 200,
                    "duration_ms": round(rng.random() * 40, 3),
                    "timestamp": clock.isoformat(),
                    "level": "info",
                    "logger": "app",
                }
            )
        if rng.random() < 0.0002:  # garbage
            yield rng.choice(
                ['{"event": "session.commit", "regis', "[1, 2, 3]", "not json at all"]
            )


def write_log(path: str, lines: int) -> int:
    """Write a log of *lines* lines to *path*, the last one cut off; return its size."""
    with open(path, "w", encoding="utf-8") as out:
        for line in itertools.islice(_events(), lines - 1):
            out.write(line)
            out.write("\n")
        out.write('{"event": "session.closed", "registry": "default", "sess')
    return os.path.getsize(path)


def baseline(path: str) -> None:
    """Parse every line with the standard ``json`` module, nothing more."""
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            try:
                json.loads(line)
            except ValueError:  # the malformed lines; the report names them
                continue


def full_report(path: str) -> dict[str, Any]:
    """Build and render the report, as ``python -m scoped report`` does."""
    with open(path, "rb") as log:
        report = read_log(log, source=path)
    render_text(report)
    return report


def _timed(fn: Callable[[str], object], path: str) -> float:
    start = time.perf_counter()
    fn(path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 on PASS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="PATH", help="write the log here and keep it")
    args = parser.parse_args(argv)

    handle, path = (None, args.keep) if args.keep else tempfile.mkstemp(suffix=".jsonl")
    if handle is not None:
        os.close(handle)
    try:
        start = time.perf_counter()
        size = write_log(path, args.lines)
        took = time.perf_counter() - start
        mib = size / (1 << 20)
        print(f"log: {args.lines:,} lines, {mib:,.1f} MiB, written in {took:.1f} s")
        base: list[float] = []
        full: list[float] = []
        for _ in range(REPEAT):  # interleaved, so drift on a shared machine hits both
            base.append(_timed(baseline, path))
            full.append(_timed(full_report, path))
        report = full_report(path)
    finally:
        if not args.keep:
            os.unlink(path)
    inp = report["input"]
    print(
        f"report saw: {inp['lines']:,} lines, {inp['scoped_events']:,} scoped, "
        f"{inp['other_events']:,} other, {inp['malformed']['count']:,} malformed, "
        f"{report['suspected_leaks']['count']:,} suspected leaks, "
        f"{report['multi_thread_or_task']['count']:,} shared sessions"
    )
    ratio = min(full) / min(base)
    for label, runs in (("json.loads baseline", base), ("full report", full)):
        each = ", ".join(f"{t:.3f}" for t in runs)
        print(f"{label:<20}: {min(runs):.3f} s (best of {REPEAT}: {each})")
    verdict = "PASS" if ratio <= LIMIT else "FAIL"
    print(f"ratio               : {ratio:.2f}x (limit {LIMIT:.1f}x) {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
