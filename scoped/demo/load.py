"""The demo's load: concurrent HTTP clients sending a planned mix of requests."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

from scoped.demo.app import ACCOUNTS, WAIT_SECONDS

__all__ = ["MIX", "Tally", "drive", "plan"]

#: The request mix, by request number, apart from the planned failures.
MIX = ("read", "write", "read", "write", "stream")


def plan(number: int, fail_every: int) -> str:
    """What request *number* does: read, write, stream or fail."""
    if fail_every and number % fail_every == fail_every // 2:
        return "fail"
    return MIX[number % len(MIX)]


@dataclass
class Tally:
    """What one client sent and received."""

    ok: int = 0
    failed: int = 0
    errors: int = 0
    first_error: str = ""
    amount: int = 0
    written: int = 0
    streams: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class _Progress:
    """Prints a short line each time another fifth of the requests is done."""

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self.total = total
        self.step = max(1, total // 5)
        self.quiet = quiet
        self.done = self.ok = self.failed = self.errors = 0
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def record(self, *, ok: bool = False, failed: bool = False) -> None:
        """Count one request: ok, failed on purpose, or else an error."""
        with self._lock:
            self.done += 1
            self.ok += ok
            self.failed += failed
            self.errors += not (ok or failed)
            if self.quiet or (self.done % self.step and self.done != self.total):
                return
            errors = f", {self.errors} errors" if self.errors else ""
            rate = self.done / (time.perf_counter() - self.started)
            print(
                f"  {self.done:>6}/{self.total} requests ({self.ok} ok, "
                f"{self.failed} failed on purpose{errors}), {rate:.0f}/s",
                flush=True,
            )


def _check_response(kind: str, status: int, body: bytes, amount: int) -> str:
    """Why the response to a *kind* request is wrong, or ``""``."""
    expected = {"read": 200, "write": 201, "stream": 200, "fail": 500}[kind]
    if status != expected:
        return f"{kind}: status {status}, expected {expected}: {body[:200]!r}"
    if kind == "write" and json.loads(body)["amount"] != amount:
        return f"write: {body[:200]!r} does not charge {amount}"
    if kind == "stream":
        last = json.loads(body.rsplit(b"\n", 1)[-1])
        if not last.get("end"):
            return f"stream: incomplete, ends with {body[-200:]!r}"
    return ""


@dataclass
class _Load:
    """The clients' requests: who sends which, and how long they wait."""

    port: int
    requests: int
    fail_every: int
    timeout: float
    progress: _Progress

    def send(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """One request on a new connection; return the status and the body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            if body is None:
                conn.request(method, path)
            else:
                data = json.dumps(body).encode()
                conn.request(method, path, data, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def request(self, kind: str, number: int) -> str:
        """Send request *number*, a *kind* one; return what was wrong, or ``""``."""
        account_id = 1 + number % ACCOUNTS
        try:
            if kind in {"write", "fail"}:
                path = "/orders" if kind == "write" else "/orders/fail"
                order = {"account": account_id, "amount": _amount(number)}
                status, body = self.send("POST", path, order)
            elif kind == "stream":
                status, body = self.send("GET", f"/accounts/{account_id}/orders")
            else:
                status, body = self.send("GET", f"/accounts/{account_id}")
            return _check_response(kind, status, body, _amount(number))
        except (OSError, ValueError, KeyError) as exc:
            return f"{kind}: {type(exc).__name__}: {exc}"

    def client(self, index: int, tally: Tally) -> None:
        """Send client *index*'s requests and tally the responses."""
        for n in range(self.requests):
            number = index * self.requests + n
            kind = plan(number, self.fail_every)
            tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
            problem = self.request(kind, number)
            if problem:
                tally.errors += 1
                tally.first_error = tally.first_error or problem
                self.progress.record()
            elif kind == "fail":
                tally.failed += 1
                self.progress.record(failed=True)
            else:
                tally.ok += 1
                if kind == "write":
                    tally.written += 1
                    tally.amount += _amount(number)
                tally.streams += kind == "stream"
                self.progress.record(ok=True)


def _amount(number: int) -> int:
    return 1 + number % 9


def drive(
    port: int,
    *,
    clients: int,
    requests: int,
    fail_every: int,
    timeout: float = WAIT_SECONDS,
    quiet: bool = False,
) -> list[Tally]:
    """Send *clients* x *requests* requests concurrently; return each client's tally."""
    progress = _Progress(clients * requests, quiet=quiet)
    load = _Load(port, requests, fail_every, timeout, progress)
    tallies = [Tally() for _ in range(clients)]
    threads = [
        threading.Thread(
            target=load.client, args=(i, tallies[i]), name=f"scoped-client-{i}"
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tallies
