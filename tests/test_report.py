"""``python -m scoped report``: what it finds in logs, and garbage it survives."""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog

from scoped import report, scoped_session

Report = Callable[..., dict[str, Any]]

_START = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


class Clock:
    """Hands out increasing ISO timestamps, one millisecond apart."""

    def __init__(self) -> None:
        self.now = _START

    def tick(self, ms: float = 1.0) -> str:
        """Advance by *ms* and return the new time as the log writes it."""
        self.now += timedelta(milliseconds=ms)
        return self.now.isoformat().replace("+00:00", "Z")


def line(
    event: str,
    sid: str,
    clock: Clock,
    *,
    thread: int = 1,
    task: object = None,
    age_ms: object = None,
    registry: str = "default",
    **extra: Any,
) -> str:
    """One lifecycle event as scoped logs it."""
    record: dict[str, Any] = {
        "registry": registry,
        "scope_kind": "thread",
        "thread": f"worker-{thread}",
        "thread_id": 1000 + thread,
        "timestamp": clock.tick(),
        "session_id": sid,
        "scope": f"<Thread(worker-{thread})>",
        "event": event,
        "level": "debug",
        "logger": "scoped",
    }
    if task is not None:
        record["task"] = task
    if age_ms is not None:
        record["age_ms"] = age_ms
    record.update(extra)
    return json.dumps(record)


def lifetime(
    sid: str,
    clock: Clock,
    *,
    thread: int = 1,
    end: str | None = "session.removed",
    age_ms: float = 5.0,
    **kw: Any,
) -> list[str]:
    """A session created, committed, closed and (unless *end* is None) ended."""
    lines = [
        line(
            "session.created", sid, clock, thread=thread, session_class="Session", **kw
        ),
        line("session.begin", sid, clock, thread=thread, **kw),
        line("session.commit", sid, clock, thread=thread, **kw),
        line("session.closed", sid, clock, thread=thread, age_ms=age_ms, **kw),
    ]
    if end is not None:
        lines.append(line(end, sid, clock, thread=thread, age_ms=age_ms, **kw))
    return lines


def write(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    """Write *lines* as a JSON-lines file."""
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_text(text, encoding="utf-8")
    return path


def parse(*argv: str) -> argparse.Namespace:
    """Parse *argv* with the report subcommand's own options."""
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(name="run_report")
def _run_report(capsys: pytest.CaptureFixture[str]) -> Report:
    def run(*argv: str) -> dict[str, Any]:
        assert 0 == report.run(parse(*argv, "--json"))
        out, err = capsys.readouterr()
        assert "" == err
        result: dict[str, Any] = json.loads(out)
        return result

    return run


def ids(entries: list[dict[str, Any]]) -> set[str]:
    """The session ids of report entries."""
    return {entry["session_id"] for entry in entries}


class TestFindings:
    """Leaks, sharing, totals and lifetimes in well-formed logs."""

    def test_finds_exactly_the_leaks_and_shared_sessions(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """Only sessions never removed or scope-ended are leaks, and only those used
        from a second thread or task are shared."""
        clock = Clock()
        lines: list[str] = []
        for i in range(20):
            lines += lifetime(f"ok{i}", clock, thread=i % 4)
        lines += lifetime("scoped-end", clock, end="session.scope_ended")
        lines += lifetime("closed-only", clock, thread=2, end=None)
        lines.append(line("session.created", "never-closed", clock, thread=3))
        lines.append(line("session.created", "warned", clock, thread=1))
        lines.append(line("session.leak_suspected", "warned", clock, age_ms=900.0))
        # Used from another thread, then removed: shared but not leaked.
        lines += lifetime("cross-thread", clock, thread=1)
        lines.insert(-1, line("session.commit", "cross-thread", clock, thread=2))
        # Two tasks on one thread.
        lines += lifetime("cross-task", clock, task="Task-1")
        lines.insert(-1, line("session.rollback", "cross-task", clock, task="Task-2"))
        # Created outside any task, then used inside one: one thread, one task.
        lines += lifetime("one-task", clock)
        lines.insert(-1, line("session.begin", "one-task", clock, task="Task-9"))
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        leaks = result["suspected_leaks"]
        assert 3 == leaks["count"]
        assert ["closed-only", "never-closed", "warned"] == [
            s["session_id"] for s in leaks["sessions"]
        ]
        closed_only = leaks["sessions"][0]
        assert ("worker-2", 1002, "<Thread(worker-2)>") == (
            closed_only["thread"],
            closed_only["thread_id"],
            closed_only["scope"],
        )
        assert closed_only["closed"]
        assert closed_only["created"].startswith("2026-11-21T12:00:00.")
        assert [False, True] == [s["leak_warned"] for s in leaks["sessions"][1:]]
        assert {"cross-thread", "cross-task"} == ids(
            result["multi_thread_or_task"]["sessions"]
        )
        by_id = {s["session_id"]: s for s in result["multi_thread_or_task"]["sessions"]}
        assert [1001, 1002] == [
            t["thread_id"] for t in by_id["cross-thread"]["threads"]
        ]
        assert ["Task-1", "Task-2"] == by_id["cross-task"]["tasks"]

    def test_totals_per_registry(self, tmp_path: Path, run_report: Report) -> None:
        """Every event kind is counted under its own registry."""
        clock = Clock()
        lines = [
            json.dumps(
                {
                    "event": "registry.configured",
                    "registry": "default",
                    "timestamp": clock.tick(),
                }
            ),
            *lifetime("a", clock),
            *lifetime("b", clock, end="session.scope_ended"),
            *lifetime("c", clock, registry="analytics"),
            line("session.reset", "c2", clock, registry="analytics", age_ms=1.0),
            line(
                "session.close_failed",
                "c2",
                clock,
                registry="analytics",
                exception="Boom('x')",
            ),
            json.dumps(
                {
                    "event": "registry.forked",
                    "registry": "analytics",
                    "timestamp": clock.tick(),
                }
            ),
        ]
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        default = result["registries"]["default"]["totals"]
        analytics = result["registries"]["analytics"]["totals"]
        assert (2, 2, 1, 1, 2, 2, 1, 0) == (
            default["created"],
            default["closed"],
            default["removed"],
            default["scope_ended"],
            default["begin"],
            default["commit"],
            default["configured"],
            default["forked"],
        )
        assert (1, 1, 1, 1, 1) == (
            analytics["created"],
            analytics["reset"],
            analytics["close_failed"],
            analytics["removed"],
            analytics["forked"],
        )
        assert 1 == result["close_failures"]["count"]
        assert "Boom('x')" == result["close_failures"]["events"][0]["exception"]
        assert 19 == result["input"]["scoped_events"]

    def test_lifetime_percentiles(self, tmp_path: Path, run_report: Report) -> None:
        """Percentiles are nearest-rank over the removed and scope-ended sessions."""
        clock = Clock()
        lines: list[str] = []
        for age in [*range(100, 0, -1)]:  # 1..100 ms, out of order
            lines += lifetime(f"s{age}", clock, age_ms=float(age))
        lines += lifetime("other-reg", clock, age_ms=7.5, registry="one")
        lines += lifetime("leak", clock, age_ms=10_000.0, end=None)
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        assert {"count": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0} == (
            result["registries"]["default"]["lifetime_ms"]
        )
        assert {"count": 1, "p50": 7.5, "p90": 7.5, "p99": 7.5, "max": 7.5} == (
            result["registries"]["one"]["lifetime_ms"]
        )

    def test_longest_lived_honours_top(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """--top N lists the N longest completed lifetimes, longest first."""
        clock = Clock()
        lines: list[str] = []
        for age in (3.0, 40.0, 1.0, 500.0, 20.0):
            lines += lifetime(f"s{int(age)}", clock, age_ms=age)
        result = run_report(str(write(tmp_path / "log.jsonl", lines)), "--top", "3")

        assert [500.0, 40.0, 20.0] == [
            s["lifetime_ms"] for s in result["longest_lived"]
        ]
        assert ["session.removed"] * 3 == [
            s["ended_by"] for s in result["longest_lived"]
        ]

    def test_limit_bounds_lists_not_counts(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """--limit shortens the lists while the counts still cover everything."""
        clock = Clock()
        lines = [line("session.created", f"leak{i}", clock) for i in range(30)]
        lines += ["oops"] * 10
        result = run_report(str(write(tmp_path / "log.jsonl", lines)), "--limit", "4")

        assert 30 == result["suspected_leaks"]["count"]
        assert 4 == len(result["suspected_leaks"]["sessions"])
        assert 10 == result["input"]["malformed"]["count"]
        assert [31, 32, 33, 34] == [
            p["line"] for p in result["input"]["malformed"]["lines"]
        ]

    def test_event_rate_over_the_time_span(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """The rate is scoped events per second from the first to the last stamp."""
        clock = Clock()
        lines = lifetime("a", clock)  # 1 ms apart: 6 events over 5 ms
        lines.append(line("session.created", "b", clock))
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        assert 0.005 == pytest.approx(result["time"]["span_s"])
        assert 1200.0 == pytest.approx(result["time"]["events_per_s"])
        assert "2026-11-21T12:00:00.001000Z" == result["time"]["first"]

    def test_reused_session_id_starts_a_new_lifetime(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """A session.created for a known id begins another session, not a leak."""
        clock = Clock()
        lines = lifetime("same", clock, age_ms=2.0) + lifetime(
            "same", clock, age_ms=4.0
        )
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        assert 2 == result["registries"]["default"]["sessions"]
        assert 0 == result["suspected_leaks"]["count"]
        assert 2 == result["registries"]["default"]["lifetime_ms"]["count"]

    def test_session_created_before_the_log(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """A session first seen mid-life counts its lifetime once removed, and is a
        leak with an unknown creation time otherwise."""
        clock = Clock()
        lines = [
            line("session.removed", "early", clock, age_ms=70.0),
            line("session.commit", "orphan", clock),
        ]
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        assert 70.0 == result["registries"]["default"]["lifetime_ms"]["max"]
        assert [("orphan", None)] == [
            (s["session_id"], s["created"])
            for s in result["suspected_leaks"]["sessions"]
        ]


class TestInput:
    """Where the log comes from and what shape it is in."""

    def test_other_application_events_are_counted_apart(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """Events of other namespaces, or scoped-looking ones without a registry or
        session id, are other events and change nothing else."""
        clock = Clock()
        lines = [
            json.dumps({"event": "request handled", "path": "/", "status": 200}),
            *lifetime("a", clock),
            json.dumps({"event": "session.created", "user": "web login"}),
            json.dumps({"event": "session.removed", "registry": "default"}),
            json.dumps(
                {"event": "session.flushed", "registry": "default", "session_id": "a"}
            ),
            json.dumps({"message": "no event key at all"}),
            json.dumps({"event": ["not", "a", "name"]}),
        ]
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        assert (11, 5, 6, 0) == (
            result["input"]["lines"],
            result["input"]["scoped_events"],
            result["input"]["other_events"],
            result["input"]["malformed"]["count"],
        )
        assert 1 == result["registries"]["default"]["totals"]["removed"]
        assert 0 == result["suspected_leaks"]["count"]

    def test_truncated_last_line(self, tmp_path: Path, run_report: Report) -> None:
        """A last line cut off mid-object is named as truncated; the rest is used."""
        clock = Clock()
        lines = [*lifetime("a", clock), line("session.created", "b", clock)[:37]]
        result = run_report(
            str(write(tmp_path / "log.jsonl", lines, final_newline=False))
        )

        malformed = result["input"]["malformed"]
        assert {"truncated last line": 1} == malformed["by_problem"]
        assert 6 == malformed["lines"][0]["line"]
        assert malformed["lines"][0]["detail"].startswith("no final newline; ")
        assert 5 == result["input"]["scoped_events"]

    def test_complete_last_line_without_newline(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """A whole last line needs no final newline."""
        clock = Clock()
        path = write(tmp_path / "log.jsonl", lifetime("a", clock), final_newline=False)
        result = run_report(str(path))

        assert (5, 0) == (
            result["input"]["scoped_events"],
            result["input"]["malformed"]["count"],
        )

    def test_malformed_lines_are_counted_and_named(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """Each unusable line is named with its number and what is wrong with it."""
        clock = Clock()
        lines = [
            line("session.created", "a", clock),
            '{"event": "session.closed", "registry": "default"',
            "[1, 2, 3]",
            '"just a string"',
            "",
            "   ",
            json.dumps({"event": "session.created", "registry": 7, "session_id": "x"}),
            json.dumps(
                {"event": "session.created", "registry": "r", "session_id": ["x"]}
            ),
            '{"a": 1} trailing',
            "[" * 100_000,
            line("session.removed", "a", clock, age_ms=3.0),
        ]
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        named = [
            (p["line"], p["problem"]) for p in result["input"]["malformed"]["lines"]
        ]
        assert [
            (2, "invalid JSON"),
            (3, "not a JSON object"),
            (4, "not a JSON object"),
            (7, "wrong field type"),
            (8, "wrong field type"),
            (9, "invalid JSON"),
            (10, "invalid JSON"),
        ] == named
        assert (
            "registry is a number, not a string"
            == (result["input"]["malformed"]["lines"][3]["detail"])
        )
        assert (11, 2, 2, 0) == (
            result["input"]["lines"],
            result["input"]["blank_lines"],
            result["input"]["scoped_events"],
            result["suspected_leaks"]["count"],
        )

    def test_wrong_field_types_are_named_not_fatal(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """Bad values in a usable event are named; the event still counts and a bad
        age falls back to the timestamps."""
        clock = Clock()
        lines = [
            line("session.created", "a", clock, thread_id=[1], scope={"k": 1}),
            line("session.commit", "a", clock, thread_id={"x": 2}, task=["t"]),
            line("session.closed", "a", clock, age_ms="12"),
            line("session.reset", "a", clock, age_ms=float("nan")),
            line("session.commit", "a", clock, timestamp="yesterday"),
            line("session.commit", "a", clock, timestamp=12),
            line("session.commit", "a", clock, timestamp=None),
            line("session.commit", "a", clock, timestamp="99999-01-01"),
            line("session.removed", "a", clock, age_ms=True),
        ]
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        invalid = result["input"]["invalid_fields"]
        assert [
            (1, "scope"),
            (1, "thread_id"),
            (3, "age_ms"),
            (4, "age_ms"),
            (5, "timestamp"),
            (6, "timestamp"),
            (7, "timestamp"),
            (8, "timestamp"),
            (9, "age_ms"),
        ] == [(p["line"], p["problem"]) for p in invalid["lines"]]
        assert 9 == result["input"]["scoped_events"]
        # Created at +1 ms, removed at +9 ms.
        assert 8.0 == result["registries"]["default"]["lifetime_ms"]["max"]
        assert 1 == result["multi_thread_or_task"]["count"]

    def test_naive_and_offset_timestamps(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """Timestamps without a zone count as UTC and other offsets are converted."""
        clock = Clock()
        lines = [
            line("session.created", "a", clock, timestamp="2026-11-21T12:00:00"),
            line("session.commit", "a", clock, timestamp="2026-11-21T14:00:01+02:00"),
            line(
                "session.removed",
                "a",
                clock,
                age_ms=1.0,
                timestamp="2026-11-21T12:00:02Z",
            ),
        ]
        result = run_report(str(write(tmp_path / "log.jsonl", lines)))

        assert (2.0, 0) == (
            result["time"]["span_s"],
            result["input"]["invalid_fields"]["count"],
        )

    def test_empty_input(self, tmp_path: Path, run_report: Report) -> None:
        """An empty log gives an empty report."""
        result = run_report(str(write(tmp_path / "log.jsonl", [], final_newline=False)))

        assert {
            "lines": 0,
            "bytes": 0,
            "blank_lines": 0,
            "scoped_events": 0,
            "other_events": 0,
            "malformed": {"count": 0, "by_problem": {}, "lines": []},
            "invalid_fields": {"count": 0, "by_problem": {}, "lines": []},
        } == result["input"]
        assert {} == result["registries"]
        assert None is result["time"]["events_per_s"]

    def test_empty_input_as_text(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The text report of an empty log says there was nothing."""
        path = write(tmp_path / "log.jsonl", [], final_newline=False)

        assert 0 == report.run(parse(str(path)))
        out = capsys.readouterr().out
        assert "(no scoped events)" in out
        assert "time span        unknown" in out

    @pytest.mark.parametrize("argv", [(), ("-",)])
    def test_reads_standard_input(
        self,
        argv: tuple[str, ...],
        monkeypatch: pytest.MonkeyPatch,
        run_report: Report,
    ) -> None:
        """Without a path, or with '-', the log is read from standard input."""
        clock = Clock()
        lines = [*lifetime("a", clock), line("session.created", "b", clock), "garbage"]
        monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
        result = run_report(*argv)

        assert "<stdin>" == result["source"]
        assert (7, 6, 1) == (
            result["input"]["lines"],
            result["input"]["scoped_events"],
            result["input"]["malformed"]["count"],
        )
        assert {"b"} == ids(result["suspected_leaks"]["sessions"])

    def test_non_utf8_bytes(self, tmp_path: Path, run_report: Report) -> None:
        """Lines that are not UTF-8 are named; the lines around them are used."""
        clock = Clock()
        good = [line.encode() for line in lifetime("a", clock)]
        junk = [b"\xff\xfe\x00\x81binary", bytes(range(256)).replace(b"\n", b"")]
        path = tmp_path / "log.jsonl"
        path.write_bytes(
            b"\n".join([good[0], junk[0], *good[1:3], junk[1], *good[3:]]) + b"\n"
        )
        result = run_report(str(path))

        assert [
            {"line": 2, "problem": "invalid UTF-8", "detail": "byte 0xff at column 1"},
            {
                "line": 5,
                "problem": "invalid UTF-8",
                "detail": "byte 0x80 at column 128",
            },
        ] == result["input"]["malformed"]["lines"]
        assert (7, 5, 0) == (
            result["input"]["lines"],
            result["input"]["scoped_events"],
            result["suspected_leaks"]["count"],
        )

    def test_huge_line_is_skipped_and_named(
        self, tmp_path: Path, run_report: Report
    ) -> None:
        """A line longer than MAX_LINE is skipped and named, and reading goes on."""
        clock = Clock()
        first, *rest = lifetime("a", clock)
        huge = '{"event": "x", "blob": "' + "y" * (report.MAX_LINE + 10) + '"}'
        path = write(tmp_path / "log.jsonl", [first, huge, *rest])
        result = run_report(str(path))

        assert [(2, "line too long")] == [
            (p["line"], p["problem"]) for p in result["input"]["malformed"]["lines"]
        ]
        assert (6, 5) == (result["input"]["lines"], result["input"]["scoped_events"])
        assert path.stat().st_size == result["input"]["bytes"]

    def test_crlf_line_endings(self, tmp_path: Path, run_report: Report) -> None:
        """Lines ending in CR LF read like any others."""
        clock = Clock()
        path = tmp_path / "log.jsonl"
        path.write_bytes(("\r\n".join(lifetime("a", clock)) + "\r\n").encode())
        result = run_report(str(path))

        assert (5, 0, 0) == (
            result["input"]["scoped_events"],
            result["input"]["malformed"]["count"],
            result["input"]["blank_lines"],
        )

    def test_missing_file_is_a_clear_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A log that cannot be opened is named in the error and exits 1."""
        path = tmp_path / "nope.jsonl"

        assert 1 == report.run(parse(str(path)))
        assert (
            f"scoped report: cannot read {str(path)!r}: No such file or directory\n"
            == (capsys.readouterr().err)
        )

    def test_bad_option_values_are_rejected(self) -> None:
        """--top must be at least 1 and --limit at least 0."""
        with pytest.raises(SystemExit):
            parse("--top", "0")
        with pytest.raises(SystemExit):
            parse("--limit", "-1")


class TestOutput:
    """The text rendering and the progress line."""

    def test_text_shows_the_same_findings(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The text report lists the leak, the shared session and the bad line."""
        clock = Clock()
        lines = [
            *lifetime("shared", clock, age_ms=12.5),
            line("session.commit", "shared", clock, thread=2),
            line("session.created", "leaky", clock, thread=3),
            "{oops",
        ]
        path = write(tmp_path / "log.jsonl", lines)

        assert 0 == report.run(parse(str(path)))
        out = capsys.readouterr().out
        assert "Suspected leaks (never removed or scope-ended): 1" in out
        assert "leaky" in out
        assert "worker-3 (1003)" in out
        assert "threads: worker-1 (1001), worker-2 (1002); tasks: -" in out
        assert "line 8: invalid JSON: " in out
        assert "12.5" in out

    def test_progress_only_when_asked(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A progress stream is updated every PROGRESS_EVERY lines; a pipe gets none."""
        monkeypatch.setattr(report, "PROGRESS_EVERY", 2)
        clock = Clock()
        data = ("\n".join(lifetime("a", clock)) + "\n").encode()
        progress = io.StringIO()
        report.read_log(io.BytesIO(data), progress=progress)

        assert progress.getvalue().startswith("\rscoped report: 5 lines, 0 MiB")
        assert progress.getvalue().endswith("\r\x1b[K")
        monkeypatch.setattr(sys, "stdin", io.StringIO(data.decode()))
        assert 0 == report.run(parse())
        assert "" == capsys.readouterr().err


def test_report_of_real_lifecycle_events(run_report: Report, tmp_path: Path) -> None:
    """The report reads the events scoped itself emits and finds the one leak."""

    class Client:
        """A session-like object."""

        def close(self) -> None:
            """Release nothing."""

    stream = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(),
        ],
    )
    db = scoped_session(Client, name="clients", logger=logger)

    def use() -> None:
        db()
        db.remove()

    worker = threading.Thread(target=use, name="worker-x")
    worker.start()
    worker.join()
    db()  # left in the main thread, which is still alive
    try:
        path = tmp_path / "events.jsonl"
        path.write_text(stream.getvalue(), encoding="utf-8")
        result = run_report(str(path))
    finally:
        db.remove()

    assert (0, 0) == (
        result["input"]["malformed"]["count"],
        result["input"]["invalid_fields"]["count"],
    )
    totals = result["registries"]["clients"]["totals"]
    assert (2, 1) == (totals["created"], totals["removed"])
    [leak] = result["suspected_leaks"]["sessions"]
    assert (threading.current_thread().name, "Client") == (
        leak["thread"],
        leak["session_class"].rsplit(".", 1)[-1],
    )
    assert 1 == result["registries"]["clients"]["lifetime_ms"]["count"]


def test_command_line_end_to_end(tmp_path: Path) -> None:
    """`python -m scoped report --json` works as a program and never imports
    SQLAlchemy."""
    clock = Clock()
    path = write(tmp_path / "log.jsonl", [*lifetime("a", clock), "junk"])
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "scoped",
            "report",
            str(path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert 0 == done.returncode, done.stderr
    imported = [row.rsplit("|", 1)[-1].strip() for row in done.stderr.splitlines()]
    assert "scoped.report" in imported
    assert [] == [name for name in imported if name.split(".")[0] == "sqlalchemy"]
    result = json.loads(done.stdout)
    assert (6, 5, 1) == (
        result["input"]["lines"],
        result["input"]["scoped_events"],
        result["input"]["malformed"]["count"],
    )


def leaky_log() -> bytes:
    """A log of three sessions (a, b, c) that were never removed."""
    clock = Clock()
    rows = [row for sid in "abc" for row in lifetime(sid, clock, end=None)]
    return ("\n".join(rows) + "\n").encode()


class TestRenderers:
    """Parsing, the summary and the output formats meet at one seam."""

    def test_text_and_json_are_the_formats(self) -> None:
        """The two formats render the summary as render_text and indented JSON do."""
        result = report.read_report(io.BytesIO(leaky_log()), source="leaky")

        assert ["text", "json"] == list(report.RENDERERS)
        assert report.render_text(result.data) == report.render(result)
        assert json.dumps(result.data, indent=2) + "\n" == report.render(result, "json")
        assert result.data == report.read_log(io.BytesIO(leaky_log()), source="leaky")

    def test_an_unknown_format_names_the_known_ones(self) -> None:
        """render() with a name no renderer has is a ValueError listing them."""
        result = report.read_report(io.BytesIO(leaky_log()))
        with pytest.raises(ValueError, match=r"'html'; known: text, json"):
            report.render(result, "html")

    def test_a_renderer_reads_every_session_from_the_log(self) -> None:
        """Beyond the summary's limited lists, a renderer sees every session."""

        def timeline(result: report.Report) -> str:
            return "".join(
                f"{s.session_id} {s.created} {s.ended_by}\n"
                for s in result.log.sessions()
            )

        renderer: report.Renderer = timeline
        result = report.read_report(io.BytesIO(leaky_log()), limit=1)

        assert 1 == len(result.data["suspected_leaks"]["sessions"])
        assert ["a", "b", "c"] == [
            row.split()[0] for row in renderer(result).splitlines()
        ]

    def test_totals_follow_the_event_vocabulary(self) -> None:
        """Each registry's totals name every defined event, in its order."""
        from scoped import events

        result = report.read_report(io.BytesIO(leaky_log()))
        totals = result.data["registries"]["default"]["totals"]

        assert [e.name.partition(".")[2] for e in events.EVENTS] == list(totals)
        assert (3, 3, 0) == (totals["created"], totals["closed"], totals["removed"])
