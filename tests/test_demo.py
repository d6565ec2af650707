"""``python -m scoped demo``: the JSON API under HTTP load, run in-process."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from scoped.__main__ import main

LABELS = (
    "requests served",
    "only planned failures",
    "streams complete",
    "sessions created",
    "sessions removed",
    "sessions still live",
    "connections checked out",
    "order rows",
    "amount ordered",
    "account balances",
)


def summary(out: str) -> dict[str, tuple[list[int], str]]:
    """Map each summary label to (the numbers in its value, its ok/FAIL mark)."""
    rows = {}
    for label in LABELS:
        match = re.search(rf"^  {label} +(.+?) +(ok|FAIL)$", out, re.MULTILINE)
        assert match is not None, f"no {label!r} line in:\n{out}"
        rows[label] = ([int(n) for n in re.findall(r"\d+", match[1])], match[2])
    return rows


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo writes its lifecycle log to the working directory by default.
    monkeypatch.chdir(tmp_path)


def demo(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the demo with *argv*; return its exit status and printed output."""
    status = main(["demo", *argv])
    return status, capsys.readouterr().out


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'demo.db'}"


#: 4 clients x 50 requests on 4 server threads.
SMALL = ("--clients", "4", "--requests", "50", "--threads", "4")


def test_serves_every_request_and_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """4 clients x 50 HTTP requests: every session removed, no connection held."""
    status, out = demo(capsys, *SMALL, "--db", sqlite_url(tmp_path))

    assert 0 == status, out
    assert re.search(r"^serving on http://127\.0\.0\.1:\d+ with 4 threads", out, re.M)
    rows = summary(out)
    # 200 served: 180 ok, every 10th sent to the raising endpoint.
    assert ([200, 180, 20, 0], "ok") == rows["requests served"]
    assert ([20, 20, 0], "ok") == rows["only planned failures"]
    # Every fifth request streams; the planned failures replace no stream.
    assert ([40, 40], "ok") == rows["streams complete"]
    # The middleware removes each request's session: one per request.
    assert ([200], "ok") == rows["sessions created"]
    assert ([200], "ok") == rows["sessions removed"]
    assert ([0], "ok") == rows["sessions still live"]
    assert ([0], "ok") == rows["connections checked out"]
    # Writes are 2 of every 5 requests; the failed ones left no row.
    assert ([80, 80], "ok") == rows["order rows"]
    assert ([20, 20], "ok") == rows["account balances"]
    assert "200/200 requests (180 ok, 20 failed on purpose)" in out
    assert out.rstrip().endswith("all checks passed")

    # The file itself, read without SQLAlchemy, agrees with the summary.
    with closing(sqlite3.connect(tmp_path / "demo.db")) as conn:
        orders, ordered = conn.execute(
            "SELECT count(*), sum(amount) FROM scoped_demo_orders"
        ).fetchone()
        (balances,) = conn.execute(
            "SELECT sum(balance) FROM scoped_demo_accounts"
        ).fetchone()
    assert 80 == orders
    assert rows["amount ordered"][0] == [ordered, ordered]
    assert ordered == balances


def test_skipping_the_middleware_fails_the_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the middleware, server threads keep their sessions and connections."""
    status, out = demo(capsys, *SMALL, "--db", sqlite_url(tmp_path), "--no-remove")

    assert 1 == status, out
    rows = summary(out)
    # One session per server thread, reused by all its requests, never freed.
    [created], mark = rows["sessions created"]
    assert "ok" == mark
    assert 1 <= created <= 4
    assert ([0], "FAIL") == rows["sessions removed"]
    assert ([created], "FAIL") == rows["sessions still live"]
    # Each request left a transaction open, which only close() would end.
    assert ([created], "FAIL") == rows["connections checked out"]
    failed = out.rstrip().splitlines()[-1]
    assert failed.startswith("FAILED: ")
    for label in ("sessions removed", "sessions still live", "connections checked out"):
        assert label in failed


@pytest.mark.servers
@pytest.mark.parametrize("server", ["pg_url", "mariadb_url"])
def test_runs_on_the_database_servers(
    server: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same workload passes every check on PostgreSQL and MariaDB."""
    url = request.getfixturevalue(server)

    status, out = demo(
        capsys, "--clients", "4", "--requests", "25", "--threads", "4", "--db", url
    )

    assert 0 == status, out
    rows = summary(out)
    assert ([100, 90, 10, 0], "ok") == rows["requests served"]
    assert ([100], "ok") == rows["sessions removed"]
    assert ([0], "ok") == rows["sessions still live"]
    assert ([0], "ok") == rows["connections checked out"]


def test_rejects_in_memory_sqlite(capsys: pytest.CaptureFixture[str]) -> None:
    """An in-memory database cannot be shared by pooled connections: exit 2."""
    status, out = demo(capsys, "--db", "sqlite://")

    assert 2 == status
    assert "--db 'sqlite://' is an in-memory SQLite database" in out


def test_rejects_zero_threads(capsys: pytest.CaptureFixture[str]) -> None:
    """``--threads 0`` is a usage error naming the option and the value."""
    with pytest.raises(SystemExit) as exc_info:
        main(["demo", "--threads", "0"])

    assert 2 == exc_info.value.code
    assert "--threads: expected a whole number >= 1, got '0'" in (
        capsys.readouterr().err
    )


def test_importing_the_demo_does_not_import_sqlalchemy() -> None:
    """SQLAlchemy is imported when the demo runs, not when the module loads."""
    code = "import sys, scoped.demo; print('sqlalchemy' in sys.modules)"

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert "False" == result.stdout.strip()


def test_writes_and_reports_the_lifecycle_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo logs every session's life as JSON lines and prints the report."""
    log = tmp_path / "events.jsonl"
    status, out = demo(
        capsys,
        "--clients",
        "2",
        "--requests",
        "20",
        "--log",
        str(log),
        "--db",
        sqlite_url(tmp_path),
    )
    assert 0 == status
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert 40 == events.count("session.created") == events.count("session.removed")
    assert f"lifecycle log written to {log}" in out
    assert "Suspected leaks (never removed or scope-ended): 0" in out


def test_plan_mixes_requests_and_places_the_failures() -> None:
    """Every tenth request (the fifth of each ten) is planned to fail."""
    from scoped.demo.load import plan

    assert [
        "read",
        "write",
        "read",
        "write",
        "stream",
        "fail",
        "write",
        "read",
        "write",
        "stream",
    ] == [plan(n, 10) for n in range(10)]
    assert "fail" not in [plan(n, 0) for n in range(10)]


def test_checks_judge_an_outcome_without_a_server() -> None:
    """One session never freed fails exactly the two session checks."""
    from scoped.demo.checks import Outcome, run_checks
    from scoped.demo.load import Tally

    outcome = Outcome(
        tallies=[Tally(ok=10, kinds={"read": 10})],
        planned=0,
        elapsed=1.0,
        made=10,
        freed=9,
        live=1,
        checked_out=0,
        server_errors=[],
    )

    checks = run_checks(outcome, total=10)

    assert list(LABELS) == [check.label for check in checks]
    assert ["sessions removed", "sessions still live"] == [
        check.label for check in checks if not check.passed
    ]
