"""Reading a JSON-lines log into a :class:`~scoped.report._model.Log`.

One streaming pass: the input is read in large blocks, split into lines,
decoded, and each line that is one of scoped's events updates the log.
Lines that cannot be used are counted and named by line number; nothing in
the input makes the parse fail.
"""

from __future__ import annotations

import json
import json.scanner
import math
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any, Final

from scoped.report._model import (
    ABOUT_SESSION,
    AGED,
    CLOSE_FAILED,
    CLOSED,
    CODES,
    CREATED,
    ENDS,
    FAILED,
    LEAK,
    UTC,
    WARNED,
    WAS_CLOSED,
    Log,
    RegistryRecord,
    SessionRecord,
    clip,
    json_type,
    parse_timestamp,
    since,
)

__all__ = ["MAX_LINE", "scan"]

_CHUNK: Final = 1 << 20
#: A longer line is skipped (and named): no lifecycle event comes near it, and
#: holding an endless line in memory is how garbage input would hurt.
MAX_LINE: Final = 4 << 20

#: What a line that is not JSON decodes to.
_UNUSABLE: Final = object()


class _Scanner:
    """Consumes decoded lines into a :class:`Log`."""

    def __init__(self, log: Log) -> None:
        self.log = log
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
        self.log.bytes += len(data)
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            lines = self._decode_lines(data)
        if terminated:
            lines.pop()  # the empty string after the final newline
        else:
            self._unterminated = self.log.lines + len(lines)
        self.feed(lines)

    def _decode_lines(self, data: bytes) -> list[str]:
        lines: list[str] = []
        for number, raw in enumerate(data.split(b"\n"), self.log.lines + 1):
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
        log = self.log
        log.lines += 1
        log.bytes += size
        log.malformed.add(
            log.lines, "line too long", f"more than {MAX_LINE:,} bytes, skipped"
        )

    def feed(self, lines: list[str]) -> None:  # noqa: PLR0912, PLR0915 - one hot loop
        """Consume decoded lines, in order, without their newlines."""
        log = self.log
        scan = self._scan
        codes = CODES
        about_session = ABOUT_SESSION
        aged = AGED
        ends = ENDS
        registries = log.registries
        parse = parse_timestamp
        lineno = log.lines
        scoped = log.scoped
        other = log.other
        first, first_stamp = log.first
        last, last_stamp = log.last
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
                log.malformed.add(lineno, "not a JSON object", f"{json_type(obj)}")
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
            if about_session[code] and session_id.__class__ is not str:
                if session_id is None:
                    other += 1
                else:
                    self._wrong_type(lineno, "session_id", session_id)
                continue
            scoped += 1
            stats = registries.get(registry)
            if stats is None:
                stats = registries[registry] = RegistryRecord()
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
            if not about_session[code]:
                continue

            sessions = stats.sessions
            session = sessions.get(session_id)
            if code == CREATED:
                if session is not None:
                    stats.superseded.append(session)
                session = sessions[session_id] = SessionRecord(
                    registry, session_id, lineno, stamp, obj
                )
                self._check_fields(lineno, session)
                continue
            if session is None:
                # Created before the log began (or its line was lost).
                session = sessions[session_id] = SessionRecord(
                    registry, session_id, lineno, None, obj
                )
                self._check_fields(lineno, session)
            elif (
                obj.get("thread_id") != session.thread_id
                or obj.get("task") != session.task
            ):
                session.touch(obj)

            if aged[code]:
                age = obj.get("age_ms")
                if not (
                    (age.__class__ is float or age.__class__ is int)
                    and 0.0 <= age < math.inf
                ):
                    age = self._odd_age(lineno, age, session, moment, code)
                if session.ended_by is None:
                    session.age_ms = age
                    if ends[code]:
                        session.ended_by = code
                if code == CLOSED:
                    session.flags |= WAS_CLOSED
                elif code == LEAK:
                    session.flags |= WARNED
            elif code == CLOSE_FAILED:
                session.flags |= FAILED
                log.close_failed(lineno, session, obj)

        log.lines = lineno
        log.scoped = scoped
        log.other = other
        log.first = (first, first_stamp)
        log.last = (last, last_stamp)

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
            self.log.blank += 1
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
        self.log.malformed.add(lineno, problem, detail)

    def _wrong_type(self, lineno: int, field: str, value: object) -> None:
        self.log.malformed.add(
            lineno, "wrong field type", f"{field} is {json_type(value)}, not a string"
        )

    def _odd_timestamp(self, lineno: int, stamp: object) -> datetime | None:
        """Accept a timestamp without time zone as UTC; name any other misfit."""
        invalid = self.log.invalid
        if stamp is None:
            invalid.add(lineno, "timestamp", "missing")
            return None
        if not isinstance(stamp, str):
            invalid.add(lineno, "timestamp", f"{json_type(stamp)}, not a string")
            return None
        try:
            moment = parse_timestamp(stamp)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            # Normalised, it compares with any other without overflowing.
            return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            invalid.add(lineno, "timestamp", f"unparsable: {clip(stamp)!r}")
            return None

    def _odd_age(
        self,
        lineno: int,
        age: object,
        session: SessionRecord,
        moment: datetime | None,
        code: int,
    ) -> float | None:
        """Name a bad ``age_ms``; an end's lifetime then comes from timestamps."""
        if age is None:
            detail = "missing"
        elif isinstance(age, (int, float)) and not isinstance(age, bool):
            detail = f"{age!r} is not a finite age"
        else:
            detail = f"{json_type(age)}, not a number"
        self.log.invalid.add(lineno, "age_ms", detail)
        if ENDS[code]:
            return since(session.created, moment)
        return None

    def _check_fields(self, lineno: int, session: SessionRecord) -> None:
        invalid = self.log.invalid
        for field in ("scope_kind", "scope", "thread", "task", "session_class"):
            value = getattr(session, field)
            if value is not None and not isinstance(value, str):
                invalid.add(lineno, field, f"{json_type(value)}, not a string")
        thread_id = session.thread_id
        if thread_id is not None and (
            not isinstance(thread_id, int) or isinstance(thread_id, bool)
        ):
            detail = f"{json_type(thread_id)}, not an integer"
            invalid.add(lineno, "thread_id", detail)


class _Progress:
    """A progress line on *stream*, refreshed every *every* lines."""

    def __init__(self, stream: IO[str] | None, every: int) -> None:
        self.stream = stream
        self.every = every
        self.next = every

    def update(self, lines: int, size: int) -> None:
        if self.stream is not None and lines >= self.next:
            self.next = (lines // self.every + 1) * self.every
            mib = size / (1 << 20)
            self.stream.write(f"\rscoped report: {lines:,} lines, {mib:,.0f} MiB")
            self.stream.flush()

    def done(self) -> None:
        if self.stream is not None and self.next > self.every:
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


def scan(
    stream: IO[bytes] | IO[str],
    *,
    limit: int,
    progress: IO[str] | None,
    progress_every: int,
) -> Log:
    """Read the JSON-lines log *stream* into a :class:`Log`.

    Args:
        stream: A binary (preferred) or text stream of the log.
        limit: How many entries each list holds at most (0: all).
        progress: Where to write a progress line, if anywhere.
        progress_every: How often (in lines) that line is refreshed.
    """
    log = Log(limit)
    scanner = _Scanner(log)
    meter = _Progress(progress, progress_every)
    carry = b""
    skipping = False  # inside a too-long line, dropping bytes up to its end
    first = True
    for chunk in _blocks(stream):
        block = chunk
        if first:
            first = False
            if block.startswith(b"\xef\xbb\xbf"):
                log.bytes += 3
                block = block[3:]
        if skipping:
            newline = block.find(b"\n")
            if newline < 0:
                log.bytes += len(block)
                continue
            log.bytes += newline + 1
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
        meter.update(log.lines, log.bytes)
    if carry:
        scanner.feed_bytes(carry, terminated=False)
    meter.done()
    return log
