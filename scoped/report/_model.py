"""What a lifecycle log says, as the parser finds it and as a report shows it.

:class:`Log` is filled line by line by the parser and keeps a few slots per
session rather than anything per event. :meth:`Log.summary` turns it into
the report's plain data, which every renderer reads; a renderer that needs
more (every session, not the report's selection) reads the :class:`Log`.
"""

from __future__ import annotations

import heapq
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from scoped import events

__all__ = ["Log", "Problems", "RegistryRecord", "Report", "SessionRecord"]

# -- event codes ---------------------------------------------------------------
#
# The parser counts events by their index in the vocabulary, which is also
# the order of each registry's totals.

NAMES: Final = tuple(event.name for event in events.EVENTS)
CODES: Final = {name: code for code, name in enumerate(NAMES)}
CREATED: Final = CODES[events.SESSION_CREATED.name]
CLOSED: Final = CODES[events.SESSION_CLOSED.name]
LEAK: Final = CODES[events.SESSION_LEAK_SUSPECTED.name]
CLOSE_FAILED: Final = CODES[events.SESSION_CLOSE_FAILED.name]
#: Per code: whether the event is about one session (carries ``session_id``).
ABOUT_SESSION: Final = tuple(event.about_session for event in events.EVENTS)
#: Per code: whether the event ends the session's lifetime.
ENDS: Final = tuple(event.ends_session for event in events.EVENTS)
#: Per code: whether the report reads the session's age from the event. A
#: close failure is left out: the removal or scope end that follows it
#: reports the same age.
AGED: Final = tuple(
    event
    in (
        events.SESSION_CLOSED,
        events.SESSION_RESET,
        events.SESSION_REMOVED,
        events.SESSION_SCOPE_ENDED,
        events.SESSION_LEAK_SUSPECTED,
    )
    for event in events.EVENTS
)
#: The names of the per-registry totals: the event names without namespace.
TOTALS: Final = tuple(name.partition(".")[2] for name in NAMES)

# Session flags.
WAS_CLOSED, WARNED, FAILED = 1, 2, 4

#: How many characters of a free-form value (scope, exception) are shown.
_CLIP: Final = 200

UTC: Final = timezone.utc
_NEVER_EARLY: Final = datetime.max.replace(tzinfo=UTC)
_NEVER_LATE: Final = datetime.min.replace(tzinfo=UTC)

if sys.version_info >= (3, 11):
    parse_timestamp: Callable[[str], datetime] = datetime.fromisoformat
else:  # pragma: no cover - Python 3.10 rejects the "Z" suffix

    def parse_timestamp(stamp: str) -> datetime:
        """:meth:`datetime.fromisoformat`, also for a ``Z`` suffix."""
        # Non-strings reach fromisoformat, whose TypeError the caller expects.
        if isinstance(stamp, str) and stamp.endswith(("Z", "z")):
            stamp = stamp[:-1] + "+00:00"
        return datetime.fromisoformat(stamp)


def json_type(value: object) -> str:
    """Name *value*'s type the way JSON does."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def clip(value: object) -> Any:
    """Bound a free-form value for display; JSON scalars other than strings stay."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _CLIP else text[: _CLIP - 1] + "\u2026"


def _hashable(value: object) -> object:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def since(start: str | None, end: datetime | None) -> float | None:
    """Milliseconds from the timestamp *start* to *end*, when both are known."""
    if start is None or end is None:
        return None
    try:
        began = parse_timestamp(start)
        if began.tzinfo is None:
            began = began.replace(tzinfo=UTC)
        return round((end - began).total_seconds() * 1000.0, 3)
    except (TypeError, ValueError, OverflowError):
        return None


class SessionRecord:
    """What the log says about one session, in a few slots."""

    __slots__ = (
        "age_ms",
        "created",
        "ended_by",
        "flags",
        "line",
        "registry",
        "scope",
        "scope_kind",
        "seen",
        "session_class",
        "session_id",
        "task",
        "thread",
        "thread_id",
    )

    def __init__(
        self, registry: str, session_id: str, line: int, created: str | None, obj: Any
    ) -> None:
        self.registry = registry
        self.session_id = session_id
        self.line = line
        self.created = created
        self.scope_kind = obj.get("scope_kind")
        self.scope = obj.get("scope")
        self.thread = obj.get("thread")
        self.thread_id = obj.get("thread_id")
        self.task = obj.get("task")
        self.session_class = obj.get("session_class")
        #: The code of the event that ended its lifetime, if one did.
        self.ended_by: int | None = None
        #: Lifetime once ended, else the latest age an event reported.
        self.age_ms: float | None = None
        self.flags = 0
        #: ``(thread_id, thread, task)`` triples, once a second one appears.
        self.seen: list[tuple[object, object, object]] | None = None

    def touch(self, obj: Any) -> None:
        """Remember the thread and task of *obj*, an event about this session."""
        seen = self.seen
        if seen is None:
            seen = self.seen = [
                (
                    _hashable(self.thread_id),
                    _hashable(self.thread),
                    _hashable(self.task),
                )
            ]
        triple = (
            _hashable(obj.get("thread_id")),
            _hashable(obj.get("thread")),
            _hashable(obj.get("task")),
        )
        if triple not in seen:
            seen.append(triple)

    def spread(self) -> tuple[list[tuple[object, object]], list[object]] | None:
        """The threads and tasks that touched it, if more than one of either."""
        if self.seen is None:
            return None
        threads: list[tuple[object, object]] = []
        tasks: list[object] = []
        for thread_id, thread, task in self.seen:
            if thread_id is not None and all(thread_id != t for t, _ in threads):
                threads.append((thread_id, thread))
            if task is not None and task not in tasks:
                tasks.append(task)
        return (threads, tasks) if len(threads) > 1 or len(tasks) > 1 else None

    def describe(self) -> dict[str, Any]:
        """The fields every list in the report shows about a session."""
        return {
            "registry": self.registry,
            "session_id": self.session_id,
            "session_class": clip(self.session_class),
            "scope_kind": clip(self.scope_kind),
            "scope": clip(self.scope),
            "thread": clip(self.thread),
            "thread_id": clip(self.thread_id),
            "task": clip(self.task),
            "created": clip(self.created),
            "line": self.line,
        }


class RegistryRecord:
    """One registry's event counts and sessions."""

    __slots__ = ("counts", "sessions", "superseded")

    def __init__(self) -> None:
        self.counts = [0] * len(NAMES)
        self.sessions: dict[str, SessionRecord] = {}
        #: Sessions whose id a later ``session.created`` reused.
        self.superseded: list[SessionRecord] = []

    def all_sessions(self) -> Iterable[SessionRecord]:
        """Every session of the registry, superseded ones first."""
        yield from self.superseded
        yield from self.sessions.values()


class Problems:
    """Lines counted by category; the first *limit* named (0: all)."""

    __slots__ = ("by_problem", "count", "limit", "lines")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.by_problem: dict[str, int] = {}
        self.lines: list[dict[str, Any]] = []

    def add(self, line: int, problem: str, detail: str) -> None:
        """Count a *problem* on *line*, naming it while under the limit."""
        self.count += 1
        self.by_problem[problem] = self.by_problem.get(problem, 0) + 1
        if not self.limit or len(self.lines) < self.limit:
            self.lines.append({"line": line, "problem": problem, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        """The counts and named lines as plain data."""
        return {
            "count": self.count,
            "by_problem": self.by_problem,
            "lines": self.lines,
        }


class Log:
    """Everything a report is made of, as the parser found it.

    Args:
        limit: How many entries each list of the summary holds (0: all).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines = 0
        self.bytes = 0
        self.blank = 0
        self.scoped = 0
        self.other = 0
        self.malformed = Problems(limit)
        self.invalid = Problems(limit)
        self.registries: dict[str, RegistryRecord] = {}
        self.failures: list[dict[str, Any]] = []
        self.failure_count = 0
        #: The earliest and latest timestamps, parsed and as written.
        self.first: tuple[datetime, str] = (_NEVER_EARLY, "")
        self.last: tuple[datetime, str] = (_NEVER_LATE, "")

    def sessions(self) -> Iterator[SessionRecord]:
        """Every session in the log, by registry name."""
        for _, registry in sorted(self.registries.items()):
            yield from registry.all_sessions()

    def close_failed(self, lineno: int, session: SessionRecord, obj: Any) -> None:
        """Record the close failure *obj*, found on line *lineno*."""
        self.failure_count += 1
        if not self.limit or len(self.failures) < self.limit:
            self.failures.append(
                {
                    "registry": session.registry,
                    "session_id": session.session_id,
                    "line": lineno,
                    "timestamp": clip(obj.get("timestamp")),
                    "exception": clip(obj.get("exception")),
                }
            )

    def summary(self, source: str, top: int) -> dict[str, Any]:
        """The report as plain JSON-able data, with the *top* longest-lived."""
        first, first_stamp = self.first
        last, last_stamp = self.last
        span: float | None = None
        rate: float | None = None
        end: datetime | None = None
        if first_stamp:
            end = last
            span = (last - first).total_seconds()
            rate = round(self.scoped / span, 3) if span > 0 else None

        registries: dict[str, Any] = {}
        leaks: list[SessionRecord] = []
        spread: list[
            tuple[SessionRecord, list[tuple[object, object]], list[object]]
        ] = []
        ended: list[SessionRecord] = []
        for name, stats in sorted(self.registries.items()):
            lifetimes: list[float] = []
            leaked = crossed = count = 0
            for session in stats.all_sessions():
                count += 1
                if session.ended_by is None:
                    leaked += 1
                    leaks.append(session)
                else:
                    ended.append(session)
                    if session.age_ms is not None:
                        lifetimes.append(session.age_ms)
                touched = session.spread()
                if touched is not None:
                    crossed += 1
                    spread.append((session, *touched))
            registries[name] = {
                "sessions": count,
                "totals": dict(zip(TOTALS, stats.counts, strict=True)),
                "lifetime_ms": _percentiles(lifetimes),
                "suspected_leaks": leaked,
                "multi_thread_or_task": crossed,
            }

        leaks.sort(key=lambda s: s.line)
        spread.sort(key=lambda item: item[0].line)
        longest = heapq.nlargest(
            top,
            (s for s in ended if s.age_ms is not None),
            key=lambda s: s.age_ms or 0.0,
        )
        return {
            "source": source,
            "input": {
                "lines": self.lines,
                "bytes": self.bytes,
                "blank_lines": self.blank,
                "scoped_events": self.scoped,
                "other_events": self.other,
                "malformed": self.malformed.as_dict(),
                "invalid_fields": self.invalid.as_dict(),
            },
            "time": {
                "first": first_stamp or None,
                "last": last_stamp or None,
                "span_s": span,
                "events_per_s": rate,
            },
            "registries": registries,
            "suspected_leaks": {
                "count": len(leaks),
                "sessions": [
                    {
                        **s.describe(),
                        "closed": bool(s.flags & WAS_CLOSED),
                        "leak_warned": bool(s.flags & WARNED),
                        "close_failed": bool(s.flags & FAILED),
                        "last_age_ms": s.age_ms,
                        "open_ms": since(s.created, end),
                    }
                    for s in self._limited(leaks)
                ],
            },
            "multi_thread_or_task": {
                "count": len(spread),
                "sessions": [
                    {
                        **s.describe(),
                        "threads": [
                            {"thread_id": clip(i), "thread": clip(n)}
                            for i, n in threads
                        ],
                        "tasks": [clip(t) for t in tasks],
                    }
                    for s, threads, tasks in self._limited(spread)
                ],
            },
            "longest_lived": [
                {
                    **s.describe(),
                    "lifetime_ms": s.age_ms,
                    "ended_by": NAMES[s.ended_by or 0],
                }
                for s in longest
            ],
            "close_failures": {"count": self.failure_count, "events": self.failures},
        }

    def _limited(self, items: list[Any]) -> list[Any]:
        return items[: self.limit] if self.limit else items


def _percentiles(values: list[float]) -> dict[str, Any]:
    """Nearest-rank p50/p90/p99 and the maximum of *values*."""
    values.sort()
    count = len(values)
    result: dict[str, Any] = {"count": count}
    for name, share in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        result[name] = values[max(0, math.ceil(share * count) - 1)] if count else None
    result["max"] = values[-1] if count else None
    return result


@dataclass(frozen=True)
class Report:
    """A read log: its summary and, for renderers that need more, the log.

    Attributes:
        data: The summary, plain JSON-able data (what :func:`read_log` returns).
        log: The parsed log behind it, every session included.
    """

    data: dict[str, Any]
    log: Log
