"""``python -m scoped report``: summarise a JSON-lines lifecycle log.

The log is what ``scoped`` writes through structlog's ``JSONRenderer``: one
object per line, possibly mixed with the application's own events, possibly
cut off mid-line or holding garbage. Lines that cannot be used are counted
and named by line number; nothing in the input makes the report fail.

The report is built in one streaming pass that keeps a few slots per session
rather than anything per event, so a log of a million lines costs little more
than decoding its JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import json.scanner
import math
import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import IO, Any, Final

from scoped._cli import not_negative, positive

__all__ = ["add_arguments", "read_log", "render_text", "run"]

#: Event names in code order. Codes below ``_REGISTRY_EVENTS`` are about one
#: session; codes 1 to ``_AGED_END - 1`` carry ``age_ms``; ``_REMOVED`` and
#: ``_SCOPE_ENDED`` end a session's lifetime (a close alone does not: a closed
#: session can be used again).
_EVENTS: Final = (
    "session.created",
    "session.closed",
    "session.reset",
    "session.removed",
    "session.scope_ended",
    "session.leak_suspected",
    "session.close_failed",
    "session.begin",
    "session.commit",
    "session.rollback",
    "registry.configured",
    "registry.forked",
)
_CODES: Final = {name: code for code, name in enumerate(_EVENTS)}
_CREATED, _CLOSED, _REMOVED, _SCOPE_ENDED, _LEAK, _CLOSE_FAILED = 0, 1, 3, 4, 5, 6
_AGED_END: Final = 6
_REGISTRY_EVENTS: Final = 10
#: The names of the per-registry totals: the event names without namespace.
_TOTALS: Final = tuple(name.partition(".")[2] for name in _EVENTS)

# Session flags.
_WAS_CLOSED, _WARNED, _FAILED = 1, 2, 4

_CHUNK: Final = 1 << 20
#: A longer line is skipped (and named): no lifecycle event comes near it, and
#: holding an endless line in memory is how garbage input would hurt.
MAX_LINE: Final = 4 << 20
#: How often (in lines) the progress line on a terminal is refreshed.
PROGRESS_EVERY = 100_000
#: How many characters of a free-form value (scope, exception) are shown.
_CLIP: Final = 200

#: What a line that is not JSON decodes to.
_UNUSABLE: Final = object()

_UTC: Final = timezone.utc
_NEVER_EARLY: Final = datetime.max.replace(tzinfo=_UTC)
_NEVER_LATE: Final = datetime.min.replace(tzinfo=_UTC)

if sys.version_info >= (3, 11):
    _parse_timestamp: Callable[[str], datetime] = datetime.fromisoformat
else:  # pragma: no cover - Python 3.10 rejects the "Z" suffix

    def _parse_timestamp(stamp: str) -> datetime:
        # Non-strings reach fromisoformat, whose TypeError the caller expects.
        if isinstance(stamp, str) and stamp.endswith(("Z", "z")):
            stamp = stamp[:-1] + "+00:00"
        return datetime.fromisoformat(stamp)


def _json_type(value: object) -> str:
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


def _clip(value: object) -> Any:
    """Bound a free-form value for display; JSON scalars other than strings stay."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _CLIP else text[: _CLIP - 1] + "\u2026"


def _hashable(value: object) -> object:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _since(start: str | None, end: datetime | None) -> float | None:
    """Milliseconds from the timestamp *start* to *end*, when both are known."""
    if start is None or end is None:
        return None
    try:
        began = _parse_timestamp(start)
        if began.tzinfo is None:
            began = began.replace(tzinfo=_UTC)
        return round((end - began).total_seconds() * 1000.0, 3)
    except (TypeError, ValueError, OverflowError):
        return None


class _Session:
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
        self.ended_by: int | None = None
        #: Lifetime once ended, else the latest age an event reported.
        self.age_ms: float | None = None
        self.flags = 0
        #: ``(thread_id, thread, task)`` triples, once a second one appears.
        self.seen: list[tuple[object, object, object]] | None = None

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
            "session_class": _clip(self.session_class),
            "scope_kind": _clip(self.scope_kind),
            "scope": _clip(self.scope),
            "thread": _clip(self.thread),
            "thread_id": _clip(self.thread_id),
            "task": _clip(self.task),
            "created": _clip(self.created),
            "line": self.line,
        }


class _Registry:
    __slots__ = ("counts", "sessions", "superseded")

    def __init__(self) -> None:
        self.counts = [0] * len(_EVENTS)
        self.sessions: dict[str, _Session] = {}
        #: Sessions whose id a later ``session.created`` reused.
        self.superseded: list[_Session] = []

    def all_sessions(self) -> Iterable[_Session]:
        yield from self.superseded
        yield from self.sessions.values()


class _Problems:
    """Lines counted by category; the first *limit* named (0: all)."""

    __slots__ = ("by_problem", "count", "limit", "lines")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.by_problem: dict[str, int] = {}
        self.lines: list[dict[str, Any]] = []

    def add(self, line: int, problem: str, detail: str) -> None:
        self.count += 1
        self.by_problem[problem] = self.by_problem.get(problem, 0) + 1
        if not self.limit or len(self.lines) < self.limit:
            self.lines.append({"line": line, "problem": problem, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "by_problem": self.by_problem,
            "lines": self.lines,
        }


class _Scanner:
    """Consumes decoded lines and keeps the running state of the report."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines = 0
        self.bytes = 0
        self.blank = 0
        self.scoped = 0
        self.other = 0
        self.malformed = _Problems(limit)
        self.invalid = _Problems(limit)
        self.registries: dict[str, _Registry] = {}
        self.failures: list[dict[str, Any]] = []
        self.failure_count = 0
        self.first: tuple[datetime, str] = (_NEVER_EARLY, "")
        self.last: tuple[datetime, str] = (_NEVER_LATE, "")
        # Reasons decided before JSON decoding (bad UTF-8), by line number.
        self._early: dict[int, tuple[str, str]] = {}
        self._unterminated = 0
        decoder = json.JSONDecoder()
        self._decode = decoder.decode
        # The decoder's own scanner, called directly, skips two regular
        # expression matches per line: a quarter of the cost of decoding.
        # (typeshed wants a scanner as its argument: a decoder, duck-typed.)
        self._scan = json.scanner.make_scanner(decoder)  # type: ignore[arg-type]

    # -- input ------------------------------------------------------------

    def feed_bytes(self, data: bytes, *, terminated: bool = True) -> None:
        """Consume whole lines (*data* ends with a newline unless not *terminated*)."""
        self.bytes += len(data)
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            lines = self._decode_lines(data)
        if terminated:
            lines.pop()  # the empty string after the final newline
        else:
            self._unterminated = self.lines + len(lines)
        self.feed(lines)

    def _decode_lines(self, data: bytes) -> list[str]:
        lines: list[str] = []
        for number, raw in enumerate(data.split(b"\n"), self.lines + 1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                byte = raw[exc.start]
                detail = f"byte 0x{byte:02x} at column {exc.start + 1}"
                self._early[number] = ("invalid UTF-8", detail)
                lines.append("\x00")  # fails decoding, which looks up the reason
        return lines

    def too_long(self, size: int) -> None:
        """Count a line skipped for its length."""
        self.lines += 1
        self.bytes += size
        self.malformed.add(
            self.lines, "line too long", f"more than {MAX_LINE:,} bytes, skipped"
        )

    def feed(self, lines: list[str]) -> None:  # noqa: PLR0912, PLR0915 - one hot loop
        """Consume decoded lines, in order, without their newlines."""
        scan = self._scan
        codes = _CODES
        registries = self.registries
        parse = _parse_timestamp
        lineno = self.lines
        scoped = self.scoped
        other = self.other
        first, first_stamp = self.first
        last, last_stamp = self.last
        obj: Any
        registry: Any
        session_id: Any
        stamp: Any
        for line in lines:
            lineno += 1
            try:
                obj, end = scan(line, 0)
            except (ValueError, RecursionError, StopIteration):
                end = -1
            if end != len(line) and (end < 0 or line[end:].strip(" \t\r\n")):
                # Not one JSON value, trailing whitespace aside (a CRLF line
                # end): the full decoder judges and says what is wrong.
                obj = self._decode_slowly(lineno, line)
                if obj is _UNUSABLE:
                    continue
            if obj.__class__ is not dict:
                self.malformed.add(lineno, "not a JSON object", f"{_json_type(obj)}")
                continue
            event = obj.get("event")
            code = codes.get(event) if event.__class__ is str else None
            if code is None:
                other += 1
                continue
            registry = obj.get("registry")
            if registry.__class__ is not str:
                if registry is None:
                    other += 1
                else:
                    self._wrong_type(lineno, "registry", registry)
                continue
            session_id = obj.get("session_id")
            if code < _REGISTRY_EVENTS and session_id.__class__ is not str:
                if session_id is None:
                    other += 1
                else:
                    self._wrong_type(lineno, "session_id", session_id)
                continue
            scoped += 1
            stats = registries.get(registry)
            if stats is None:
                stats = registries[registry] = _Registry()
            stats.counts[code] += 1

            stamp = obj.get("timestamp")
            moment: datetime | None
            try:
                moment = parse(stamp)
                # A naive time cannot be ordered against the others: TypeError.
                if moment < first:
                    first, first_stamp = moment, stamp
                if moment > last:
                    last, last_stamp = moment, stamp
            except (TypeError, ValueError, OverflowError):
                moment = self._odd_timestamp(lineno, stamp)
                if moment is not None:
                    if moment < first:
                        first, first_stamp = moment, stamp
                    if moment > last:
                        last, last_stamp = moment, stamp
            if code >= _REGISTRY_EVENTS:
                continue

            sessions = stats.sessions
            session = sessions.get(session_id)
            if code == _CREATED:
                if session is not None:
                    stats.superseded.append(session)
                session = sessions[session_id] = _Session(
                    registry, session_id, lineno, stamp, obj
                )
                self._check_fields(lineno, session)
                continue
            if session is None:
                # Created before the log began (or its line was lost).
                session = sessions[session_id] = _Session(
                    registry, session_id, lineno, None, obj
                )
                self._check_fields(lineno, session)
            elif (
                obj.get("thread_id") != session.thread_id
                or obj.get("task") != session.task
            ):
                self._touch(session, obj)

            if code < _AGED_END:
                age = obj.get("age_ms")
                if not (
                    (age.__class__ is float or age.__class__ is int)
                    and 0.0 <= age < math.inf
                ):
                    age = self._odd_age(lineno, age, session, moment, code)
                if session.ended_by is None:
                    session.age_ms = age
                    if code in (_REMOVED, _SCOPE_ENDED):
                        session.ended_by = code
                if code == _CLOSED:
                    session.flags |= _WAS_CLOSED
                elif code == _LEAK:
                    session.flags |= _WARNED
            elif code == _CLOSE_FAILED:
                session.flags |= _FAILED
                self._close_failed(lineno, session, obj)

        self.lines = lineno
        self.scoped = scoped
        self.other = other
        self.first = (first, first_stamp)
        self.last = (last, last_stamp)

    # -- the rare paths, kept out of the loop -------------------------------

    def _decode_slowly(self, lineno: int, line: str) -> Any:
        try:
            return self._decode(line)
        except (ValueError, RecursionError) as exc:
            self._undecodable(lineno, line, exc)
            return _UNUSABLE

    def _undecodable(self, lineno: int, line: str, exc: Exception) -> None:
        early = self._early.pop(lineno, None)
        if early is not None:
            problem, detail = early
        elif not line.strip():
            self.blank += 1
            return
        elif isinstance(exc, json.JSONDecodeError):
            problem = "invalid JSON"
            detail = f"{exc.msg} (column {exc.colno})"
        elif isinstance(exc, RecursionError):
            problem, detail = "invalid JSON", "nested too deeply"
        else:
            problem, detail = "invalid JSON", str(exc)
        if lineno == self._unterminated:
            problem, detail = "truncated last line", f"no final newline; {detail}"
        self.malformed.add(lineno, problem, detail)

    def _wrong_type(self, lineno: int, field: str, value: object) -> None:
        self.malformed.add(
            lineno, "wrong field type", f"{field} is {_json_type(value)}, not a string"
        )

    def _odd_timestamp(self, lineno: int, stamp: object) -> datetime | None:
        """Accept a timestamp without time zone as UTC; name any other misfit."""
        if stamp is None:
            self.invalid.add(lineno, "timestamp", "missing")
            return None
        if not isinstance(stamp, str):
            self.invalid.add(lineno, "timestamp", f"{_json_type(stamp)}, not a string")
            return None
        try:
            moment = _parse_timestamp(stamp)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=_UTC)
            # Normalised, it compares with any other without overflowing.
            return moment.astimezone(_UTC)
        except (ValueError, OverflowError):
            self.invalid.add(lineno, "timestamp", f"unparsable: {_clip(stamp)!r}")
            return None

    def _odd_age(
        self,
        lineno: int,
        age: object,
        session: _Session,
        moment: datetime | None,
        code: int,
    ) -> float | None:
        """Name a bad ``age_ms``; an end's lifetime then comes from timestamps."""
        if age is None:
            detail = "missing"
        elif isinstance(age, (int, float)) and not isinstance(age, bool):
            detail = f"{age!r} is not a finite age"
        else:
            detail = f"{_json_type(age)}, not a number"
        self.invalid.add(lineno, "age_ms", detail)
        if code in (_REMOVED, _SCOPE_ENDED):
            return _since(session.created, moment)
        return None

    def _check_fields(self, lineno: int, session: _Session) -> None:
        for field in ("scope_kind", "scope", "thread", "task", "session_class"):
            value = getattr(session, field)
            if value is not None and not isinstance(value, str):
                self.invalid.add(lineno, field, f"{_json_type(value)}, not a string")
        thread_id = session.thread_id
        if thread_id is not None and (
            not isinstance(thread_id, int) or isinstance(thread_id, bool)
        ):
            detail = f"{_json_type(thread_id)}, not an integer"
            self.invalid.add(lineno, "thread_id", detail)

    def _touch(self, session: _Session, obj: Any) -> None:
        """Remember another thread or task using *session*."""
        seen = session.seen
        if seen is None:
            seen = session.seen = [
                (
                    _hashable(session.thread_id),
                    _hashable(session.thread),
                    _hashable(session.task),
                )
            ]
        triple = (
            _hashable(obj.get("thread_id")),
            _hashable(obj.get("thread")),
            _hashable(obj.get("task")),
        )
        if triple not in seen:
            seen.append(triple)

    def _close_failed(self, lineno: int, session: _Session, obj: Any) -> None:
        self.failure_count += 1
        if not self.limit or len(self.failures) < self.limit:
            self.failures.append(
                {
                    "registry": session.registry,
                    "session_id": session.session_id,
                    "line": lineno,
                    "timestamp": _clip(obj.get("timestamp")),
                    "exception": _clip(obj.get("exception")),
                }
            )

    # -- the result ---------------------------------------------------------

    def result(self, source: str, top: int) -> dict[str, Any]:
        """The report as plain JSON-able data."""
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
        leaks: list[_Session] = []
        spread: list[tuple[_Session, list[tuple[object, object]], list[object]]] = []
        ended: list[_Session] = []
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
                "totals": dict(zip(_TOTALS, stats.counts, strict=True)),
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
                        "closed": bool(s.flags & _WAS_CLOSED),
                        "leak_warned": bool(s.flags & _WARNED),
                        "close_failed": bool(s.flags & _FAILED),
                        "last_age_ms": s.age_ms,
                        "open_ms": _since(s.created, end),
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
                            {"thread_id": _clip(i), "thread": _clip(n)}
                            for i, n in threads
                        ],
                        "tasks": [_clip(t) for t in tasks],
                    }
                    for s, threads, tasks in self._limited(spread)
                ],
            },
            "longest_lived": [
                {
                    **s.describe(),
                    "lifetime_ms": s.age_ms,
                    "ended_by": _EVENTS[s.ended_by or 0],
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


class _Progress:
    """A progress line on stderr, refreshed every ``PROGRESS_EVERY`` lines."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream
        self.next = PROGRESS_EVERY

    def update(self, lines: int, size: int) -> None:
        if self.stream is not None and lines >= self.next:
            self.next = (lines // PROGRESS_EVERY + 1) * PROGRESS_EVERY
            mib = size / (1 << 20)
            self.stream.write(f"\rscoped report: {lines:,} lines, {mib:,.0f} MiB")
            self.stream.flush()

    def done(self) -> None:
        if self.stream is not None and self.next > PROGRESS_EVERY:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _blocks(stream: IO[bytes] | IO[str]) -> Iterable[bytes]:
    """Read *stream* in large blocks of bytes (text streams are encoded back)."""
    while True:
        block = stream.read(_CHUNK)
        if not block:
            return
        if isinstance(block, str):
            block = block.encode("utf-8", "surrogatepass")
        yield block


def read_log(
    stream: IO[bytes] | IO[str],
    *,
    source: str = "<stream>",
    top: int = 10,
    limit: int = 50,
    progress: IO[str] | None = None,
) -> dict[str, Any]:
    """Read a JSON-lines lifecycle log and return its report as plain data.

    Args:
        stream: A binary (preferred) or text stream of the log.
        source: How the report names the input.
        top: How many of the longest-lived sessions to list.
        limit: How many entries each other list holds at most (0: all);
            counts always cover everything.
        progress: Where to write a progress line, if anywhere.
    """
    scanner = _Scanner(limit)
    meter = _Progress(progress)
    carry = b""
    skipping = False  # inside a too-long line, dropping bytes up to its end
    first = True
    for chunk in _blocks(stream):
        block = chunk
        if first:
            first = False
            if block.startswith(b"\xef\xbb\xbf"):
                scanner.bytes += 3
                block = block[3:]
        if skipping:
            newline = block.find(b"\n")
            if newline < 0:
                scanner.bytes += len(block)
                continue
            scanner.bytes += newline + 1
            block = block[newline + 1 :]
            skipping = False
        elif carry and len(carry) + len(block) > MAX_LINE:
            # Only a line pending from earlier blocks can grow this long.
            newline = block.find(b"\n")
            length = len(carry) + (len(block) if newline < 0 else newline)
            if length > MAX_LINE:
                scanner.too_long(length if newline < 0 else length + 1)
                carry = b""
                if newline < 0:
                    skipping = True
                    continue
                block = block[newline + 1 :]
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        if cut:
            scanner.feed_bytes(data[:cut] if cut < len(data) else data)
            carry = data[cut:]
        else:
            carry = data
        meter.update(scanner.lines, scanner.bytes)
    if carry:
        scanner.feed_bytes(carry, terminated=False)
    meter.done()
    return scanner.result(source, top)


# -- text rendering -------------------------------------------------------------


def _n(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def _table(headers: list[str], rows: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def _ident(value: object) -> str:
    return "-" if value is None else str(value)


def _thread(entry: dict[str, Any]) -> str:
    text = f"{_n(entry['thread'])} ({_ident(entry['thread_id'])})"
    return text if entry.get("task") is None else f"{text} task {entry['task']}"


def _more(shown: int, count: int) -> list[str]:
    return [f"  ... and {count - shown:,} more (--limit)"] if count > shown else []


def _problem_lines(title: str, problems: dict[str, Any]) -> list[str]:
    out = [f"{title:<16}{problems['count']:>12,}"]
    if problems["count"]:
        kinds = ", ".join(f"{k}: {v:,}" for k, v in problems["by_problem"].items())
        out.append(f"  ({kinds})")
        out += [
            f"  line {p['line']:,}: {p['problem']}: {p['detail']}"
            for p in problems["lines"]
        ]
        out += _more(len(problems["lines"]), problems["count"])
    return out


def _input_lines(report: dict[str, Any]) -> list[str]:
    inp, time = report["input"], report["time"]
    out = [f"scoped report: {report['source']}", ""]
    out.append(f"{'lines read':<16}{inp['lines']:>12,}  ({inp['bytes']:,} bytes)")
    out.append(f"{'scoped events':<16}{inp['scoped_events']:>12,}")
    out.append(f"{'other events':<16}{inp['other_events']:>12,}")
    out.append(f"{'blank lines':<16}{inp['blank_lines']:>12,}")
    out += _problem_lines("malformed lines", inp["malformed"])
    out += _problem_lines("invalid fields", inp["invalid_fields"])
    if time["first"] is None:
        out.append("time span        unknown (no usable timestamps)")
    else:
        out.append(f"time span        {time['first']} .. {time['last']}")
        out.append(
            f"                 {_n(time['span_s'])} s, "
            f"{_n(time['events_per_s'])} scoped events/s"
        )
    return out


def _registry_lines(registries: dict[str, Any]) -> list[str]:
    out = ["", "Totals per registry"]
    names = list(registries)
    if not names:
        return [*out, "  (no scoped events)"]
    rows = [["sessions", *(_n(registries[n]["sessions"]) for n in names)]]
    rows += [
        [key, *(_n(registries[n]["totals"][key]) for n in names)] for key in _TOTALS
    ]
    rows += [
        [key.replace("_", " "), *(_n(registries[n][key]) for n in names)]
        for key in ("suspected_leaks", "multi_thread_or_task")
    ]
    out += _table(["", *names], rows, set(range(1, len(names) + 1)))

    out += ["", "Session lifetime, ms (sessions removed or scope-ended)"]
    keys = ["count", "p50", "p90", "p99", "max"]
    rows = [
        [name, *(_n(registries[name]["lifetime_ms"][key]) for key in keys)]
        for name in names
    ]
    return out + _table(["registry", *keys], rows, {1, 2, 3, 4, 5})


def _leak_lines(leaks: dict[str, Any]) -> list[str]:
    out = ["", f"Suspected leaks (never removed or scope-ended): {leaks['count']:,}"]
    rows = []
    for s in leaks["sessions"]:
        flags = ("closed", "leak_warned", "close_failed")
        notes = [flag.replace("_", " ") for flag in flags if s[flag]]
        created = "(before the log)" if s["created"] is None else _n(s["created"])
        scope = f"{_n(s['scope_kind'])} {_n(s['scope'])}"
        rows.append(
            [
                s["registry"],
                s["session_id"],
                created,
                _n(s["line"]),
                _thread(s),
                scope,
                ", ".join(notes),
            ]
        )
    if rows:
        headers = ["registry", "session", "created", "line", "thread", "scope", "notes"]
        out += _table(headers, rows, {3})
    return out + _more(len(rows), leaks["count"])


def _spread_lines(spread: dict[str, Any]) -> list[str]:
    out = ["", f"Touched from more than one thread or task: {spread['count']:,}"]
    for s in spread["sessions"]:
        threads = ", ".join(_thread(t) for t in s["threads"])
        tasks = ", ".join(_n(t) for t in s["tasks"])
        out.append(
            f"  {s['registry']} {s['session_id']} (line {s['line']:,}, "
            f"{_n(s['scope_kind'])} {_n(s['scope'])})"
        )
        out.append(f"    threads: {threads or '-'}; tasks: {tasks or '-'}")
    return out + _more(len(spread["sessions"]), spread["count"])


def _longest_lines(longest: list[dict[str, Any]]) -> list[str]:
    out = ["", f"Longest-lived sessions (top {len(longest)})"]
    rows = [
        [
            _n(s["lifetime_ms"]),
            s["registry"],
            s["session_id"],
            _n(s["created"]),
            _thread(s),
            _n(s["ended_by"]),
        ]
        for s in longest
    ]
    if rows:
        headers = ["ms", "registry", "session", "created", "thread", "ended by"]
        out += _table(headers, rows, {0})
    return out


def _failure_lines(failures: dict[str, Any]) -> list[str]:
    if not failures["count"]:
        return []
    out = ["", f"Close failures: {failures['count']:,}"]
    out += [
        f"  line {f['line']:,}: {f['registry']} {f['session_id']}: {f['exception']}"
        for f in failures["events"]
    ]
    return out + _more(len(failures["events"]), failures["count"])


def render_text(report: dict[str, Any]) -> str:
    """Render the data of :func:`read_log` for people."""
    out = [
        *_input_lines(report),
        *_registry_lines(report["registries"]),
        *_leak_lines(report["suspected_leaks"]),
        *_spread_lines(report["multi_thread_or_task"]),
        *_longest_lines(report["longest_lived"]),
        *_failure_lines(report["close_failures"]),
    ]
    return "\n".join(out) + "\n"


# -- command line ---------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``report`` subcommand's options on *parser*."""
    parser.description = (
        "Summarise a JSON-lines log of scoped's lifecycle events: totals, "
        "lifetimes, suspected leaks, sessions shared across threads or tasks."
    )
    parser.add_argument(
        "path",
        nargs="?",
        default=None,
        metavar="EVENTS.jsonl",
        help="the log to read; '-' or nothing reads standard input",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON document instead of text",
    )
    parser.add_argument(
        "--top",
        type=positive,
        default=10,
        metavar="N",
        help="how many of the longest-lived sessions to list (default: 10)",
    )
    parser.add_argument(
        "--limit",
        type=not_negative,
        default=50,
        metavar="N",
        help=(
            "list at most N leaks, shared sessions, failures and bad lines; "
            "counts still cover all (0: no limit; default: 50)"
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Print the report of the log named by *args*; return the exit status."""
    path: str | None = args.path
    progress = sys.stderr if _isatty(sys.stderr) else None
    options: dict[str, Any] = {
        "top": args.top,
        "limit": args.limit,
        "progress": progress,
    }
    if path is None or path == "-":
        if path is None and _isatty(sys.stdin):
            print(
                "scoped report: no log given: name a file or pipe one in "
                "('-' reads the terminal)",
                file=sys.stderr,
            )
            return 2
        stdin: IO[bytes] | IO[str] = getattr(sys.stdin, "buffer", sys.stdin)
        report = read_log(stdin, source="<stdin>", **options)
    else:
        try:
            with open(path, "rb") as stream:
                report = read_log(stream, source=path, **options)
        except OSError as exc:
            reason = exc.strerror or exc
            print(f"scoped report: cannot read {path!r}: {reason}", file=sys.stderr)
            return 1
    text = json.dumps(report, indent=2) + "\n" if args.json else render_text(report)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): not a failure, and the final
        # flush at exit must not complain about it either.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False
