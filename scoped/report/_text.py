"""The report as text, for people: aligned tables, counts with separators."""

from __future__ import annotations

from typing import Any

from scoped.report._model import TOTALS, Report

__all__ = ["render", "render_text"]


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
        [key, *(_n(registries[n]["totals"][key]) for n in names)] for key in TOTALS
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


def render(report: Report) -> str:
    """The text renderer: :func:`render_text` of the report's data."""
    return render_text(report.data)
