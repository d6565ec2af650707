"""``python -m scoped report``: summarise a JSON-lines lifecycle log.

The log is what ``scoped`` writes through structlog's ``JSONRenderer``: one
object per line, possibly mixed with the application's own events, possibly
cut off mid-line or holding garbage. Lines that cannot be used are counted
and named by line number; nothing in the input makes the report fail.

The report is built in one streaming pass that keeps a few slots per session
rather than anything per event, so a log of a million lines costs little more
than decoding its JSON. It is made in three steps, each in its own module:
the parser reads the log into a model of it, the model sums it up as plain
data, and a renderer (text or JSON, see :data:`RENDERERS`) writes that out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import IO, Any

from scoped._cli import not_negative, positive
from scoped.report._model import Log, Report, SessionRecord
from scoped.report._parse import MAX_LINE, scan
from scoped.report._render import RENDERERS, Renderer, render
from scoped.report._text import render_text

__all__ = [
    "MAX_LINE",
    "PROGRESS_EVERY",
    "RENDERERS",
    "Log",
    "Renderer",
    "Report",
    "SessionRecord",
    "add_arguments",
    "read_log",
    "read_report",
    "render",
    "render_text",
    "run",
]

#: How often (in lines) the progress line on a terminal is refreshed.
PROGRESS_EVERY = 100_000


def read_report(
    stream: IO[bytes] | IO[str],
    *,
    source: str = "<stream>",
    top: int = 10,
    limit: int = 50,
    progress: IO[str] | None = None,
) -> Report:
    """Read a JSON-lines lifecycle log into a :class:`Report`.

    Args:
        stream: A binary (preferred) or text stream of the log.
        source: How the report names the input.
        top: How many of the longest-lived sessions to list.
        limit: How many entries each other list holds at most (0: all);
            counts always cover everything.
        progress: Where to write a progress line, if anywhere.
    """
    log = scan(stream, limit=limit, progress=progress, progress_every=PROGRESS_EVERY)
    return Report(log.summary(source, top), log)


def read_log(
    stream: IO[bytes] | IO[str],
    *,
    source: str = "<stream>",
    top: int = 10,
    limit: int = 50,
    progress: IO[str] | None = None,
) -> dict[str, Any]:
    """Read a JSON-lines lifecycle log and return its report as plain data.

    The arguments are those of :func:`read_report`.
    """
    return read_report(
        stream, source=source, top=top, limit=limit, progress=progress
    ).data


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
        report = read_report(stdin, source="<stdin>", **options)
    else:
        try:
            with open(path, "rb") as stream:
                report = read_report(stream, source=path, **options)
        except OSError as exc:
            reason = exc.strerror or exc
            print(f"scoped report: cannot read {path!r}: {reason}", file=sys.stderr)
            return 1
    text = render(report, "json" if args.json else "text")
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
