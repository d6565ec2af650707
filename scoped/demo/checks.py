"""What the demo checks once the load is done, and how it reports it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from scoped.demo.app import ACCOUNTS
from scoped.demo.load import Tally

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table

__all__ = [
    "Check",
    "Outcome",
    "SessionCounter",
    "count_rows",
    "run_checks",
    "summarize",
]

_S = TypeVar("_S")


class SessionCounter(Generic[_S]):
    """A session factory that counts the sessions it makes and that are freed.

    "Removed" is measured, not inferred from ``remove()`` calls: a session
    counts once it no longer exists, i.e. its registry slot let go of it and
    nothing else holds it.
    """

    def __init__(self, factory: Callable[..., _S]) -> None:
        self.factory = factory
        # Which class the scoped_session proxies, as for the wrapped factory.
        self.class_: type | None = getattr(factory, "class_", None)
        # list.append is atomic and takes no lock, so finalizers that the
        # garbage collector runs in any thread cannot deadlock on it.
        self._made: list[None] = []
        self._freed: list[None] = []

    def __call__(self, **kw: Any) -> _S:
        session = self.factory(**kw)
        self._made.append(None)
        weakref.finalize(session, self._freed.append, None)
        return session

    def made(self) -> int:
        """Return how many sessions were created."""
        return len(self._made)

    def freed(self) -> int:
        """Collect garbage, then return how many sessions no longer exist."""
        gc.collect()
        return len(self._freed)


@dataclass
class Outcome:
    """Everything the summary reports, measured after the load."""

    tallies: list[Tally]
    planned: int
    elapsed: float
    made: int
    freed: int
    live: int
    checked_out: int
    server_errors: list[str]
    orders: int = 0
    amount: int = 0
    mismatched: int = 0


@dataclass
class Check:
    label: str
    value: str
    passed: bool


def count_rows(
    engine: Engine, accounts: Table, orders: Table, outcome: Outcome
) -> None:
    """Record the orders, their total and the accounts whose balance is off."""
    from sqlalchemy import func, select

    totals = (
        select(orders.c.account_id, func.sum(orders.c.amount).label("total"))
        .group_by(orders.c.account_id)
        .subquery()
    )
    mismatched = (
        select(func.count())
        .select_from(accounts.outerjoin(totals, accounts.c.id == totals.c.account_id))
        .where(accounts.c.balance != func.coalesce(totals.c.total, 0))
    )
    with engine.connect() as conn:
        n_orders, amount = conn.execute(
            select(func.count(), func.coalesce(func.sum(orders.c.amount), 0))
        ).one()
        outcome.mismatched = conn.execute(mismatched).scalar_one()
    outcome.orders, outcome.amount = int(n_orders), int(amount)


def run_checks(outcome: Outcome, total: int) -> list[Check]:
    tallies = outcome.tallies
    ok = sum(t.ok for t in tallies)
    failed = sum(t.failed for t in tallies)
    errors = sum(t.errors for t in tallies)
    written = sum(t.written for t in tallies)
    streams = sum(t.kinds.get("stream", 0) for t in tallies)
    streamed = sum(t.streams for t in tallies)
    expected_amount = sum(t.amount for t in tallies)
    made, freed = outcome.made, outcome.freed
    planned = outcome.planned
    unexpected = len(outcome.server_errors)
    return [
        Check(
            "requests served",
            f"{ok + failed} ({ok} ok, {failed} failed on purpose, {errors} errors)",
            ok + failed == total and errors == 0,
        ),
        Check(
            "only planned failures",
            f"{failed} of {planned} planned, {unexpected} unplanned exceptions",
            failed == planned and errors == 0 and unexpected == 0,
        ),
        Check("streams complete", f"{streamed} of {streams}", streamed == streams),
        Check("sessions created", str(made), made > 0),
        Check("sessions removed", str(freed), freed == made),
        Check("sessions still live", str(outcome.live), outcome.live == 0),
        Check(
            "connections checked out",
            str(outcome.checked_out),
            outcome.checked_out == 0,
        ),
        Check(
            "order rows",
            f"{outcome.orders} (expected {written})",
            outcome.orders == written,
        ),
        Check(
            "amount ordered",
            f"{outcome.amount} (expected {expected_amount})",
            outcome.amount == expected_amount,
        ),
        Check(
            "account balances",
            f"{ACCOUNTS - outcome.mismatched} of {ACCOUNTS} match their orders",
            outcome.mismatched == 0,
        ),
    ]


def summarize(outcome: Outcome, total: int) -> int:
    """Print the summary; return the exit status."""
    checks = run_checks(outcome, total)
    print("summary")
    width = max(len(c.value) for c in checks)
    for check in checks:
        mark = "ok" if check.passed else "FAIL"
        print(f"  {check.label:<24} {check.value:<{width}}  {mark}")
    rate = total / outcome.elapsed if outcome.elapsed else 0.0
    print(f"  {'time':<24} {outcome.elapsed:.2f} s ({rate:.0f} requests/s)")
    first_error = next((t.first_error for t in outcome.tallies if t.first_error), "")
    if first_error:
        print(f"first unexpected response: {first_error}")
    if outcome.server_errors:
        first_line = outcome.server_errors[0].splitlines()[0]
        print(f"first unexpected exception in the server: {first_line}")
    failures = [c.label for c in checks if not c.passed]
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0
