"""Lifecycle events, introspection, automatic cleanup and fork safety."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

import scoped.logging
from scoped import scoped_session
from scoped.lifecycle import mask_url, set_default_logger


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    set_default_logger(None)
    structlog.reset_defaults()


def events(logs: list[MutableMapping[str, Any]]) -> list[str]:
    """The event names of captured log entries, in order."""
    return [entry["event"] for entry in logs]


def work(db: scoped_session[Any]) -> None:
    """Use the current session once."""
    db.execute(sa.text("select 1"))


class TestEventSequences:
    """Each lifecycle path emits exactly its events, in order."""

    def test_create_commit_close_remove(self, engine: sa.Engine) -> None:
        """Creation, a transaction, close and removal are each reported once."""
        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine), name="app")
            work(db)
            db.commit()
            db.close()
            db.remove()
        assert [
            "session.created",
            "session.begin",
            "session.commit",
            "session.closed",
            "session.removed",
        ] == events(logs)
        assert {"app"} == {entry["registry"] for entry in logs}
        assert len({entry["session_id"] for entry in logs}) == 1

    def test_remove_closes_without_reporting_a_rollback(
        self, engine: sa.Engine
    ) -> None:
        """remove() of a session in a transaction is one removal, not close+rollback."""
        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine))
            work(db)
            db.remove()
        assert ["session.created", "session.begin", "session.removed"] == events(logs)
        assert logs[-1]["age_ms"] >= 0

    def test_reset(self, engine: sa.Engine) -> None:
        """reset() through the proxy is reported with the session's age."""
        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine))
            db.reset()
        assert ["session.created", "session.reset"] == events(logs)
        assert "age_ms" in logs[-1]

    def test_kwargs_creation(self, engine: sa.Engine) -> None:
        """db(**kw) creates through the same path and is reported as a creation."""
        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine))
            session = db(autoflush=False)
            db.remove()
        assert session.autoflush is False
        assert ["session.created", "session.removed"] == events(logs)

    def test_thread_exit_cleans_up(self, engine: sa.Engine) -> None:
        """A thread that exits without remove() has its session closed and reported."""
        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine))
            worker = threading.Thread(target=work, args=(db,), name="worker-7")
            worker.start()
            worker.join()
            gc.collect()
        assert ["session.created", "session.begin", "session.scope_ended"] == events(
            logs
        )
        assert "worker-7" == logs[-1]["thread"]
        assert 0 == engine.pool.checkedout()  # type: ignore[attr-defined]
        assert {"created": 1, "removed": 0, "cleaned_up": 1, "live": 0} == (
            db.registry.stats()
        )
        assert not [t for t in threading.enumerate() if t.name.startswith("Dummy")]

    def test_failing_close_during_cleanup(self, engine: sa.Engine) -> None:
        """A close() raising at thread exit is logged as an error, never raised."""

        class Fragile(Session):
            def close(self) -> None:
                raise RuntimeError("disk on fire")

        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine, class_=Fragile))
            worker = threading.Thread(target=db)
            worker.start()
            worker.join()
            gc.collect()
        assert ["session.created", "session.close_failed", "session.scope_ended"] == (
            events(logs)
        )
        assert "error" == logs[1]["log_level"]
        assert "RuntimeError: disk on fire" == logs[1]["exception"]
        assert 0 == db.registry.stats()["live"]

    def test_failing_close_in_remove(self, engine: sa.Engine) -> None:
        """remove() logs a failing close, discards the session, then raises."""

        class Fragile(Session):
            def close(self) -> None:
                raise RuntimeError("nope")

        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine, class_=Fragile))
            db()
            with pytest.raises(RuntimeError, match="nope"):
                db.remove()
        assert ["session.created", "session.close_failed", "session.removed"] == (
            events(logs)
        )
        assert not db.registry.has()

    def test_configure(self, engine: sa.Engine) -> None:
        """configure() is reported with credentials masked."""
        url = sa.make_url("postgresql://user:secret@db.example/app")
        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine))
            db.configure(info={"url": url}, bind=engine)
        assert ["registry.configured"] == events(logs)
        assert "secret" not in json.dumps(logs[0], default=str)


class TestLogging:
    """Where events go, and when they cost nothing."""

    def test_silent_by_default(
        self, engine: sa.Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An application that configured nothing sees no output at all."""
        db = scoped_session(sessionmaker(engine))
        work(db)
        db.remove()
        assert ("", "") == tuple(capsys.readouterr())

    def test_stdlib_logging_receives_debug_events(
        self, engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With stdlib logging enabled for "scoped", events arrive there."""
        caplog.set_level(logging.DEBUG, logger="scoped")
        db = scoped_session(sessionmaker(engine))
        db()
        db.remove()
        assert ["session.created", "session.removed"] == [
            record.getMessage() for record in caplog.records
        ]
        assert threading.current_thread().name == caplog.records[0].scoped_thread  # type: ignore[attr-defined]

    def test_log_false_turns_events_off(self, engine: sa.Engine) -> None:
        """log=False emits nothing and instruments nothing."""
        with capture_logs() as logs:
            db = scoped_session(sessionmaker(engine), log=False)
            session = db()
            db.remove()
        assert [] == logs
        assert "close" not in vars(session)

    def test_given_logger(self, engine: sa.Engine) -> None:
        """A logger passed to scoped_session receives the events."""
        out = io.StringIO()
        logger = structlog.wrap_logger(
            structlog.PrintLogger(out), processors=[structlog.processors.JSONRenderer()]
        )
        db = scoped_session(sessionmaker(engine), logger=logger, name="given")
        db()
        db.remove()
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert ["session.created", "session.removed"] == [d["event"] for d in lines]
        assert {"given"} == {d["registry"] for d in lines}

    def test_to_json(self, engine: sa.Engine, tmp_path: Any) -> None:
        """to_json(path) writes one JSON object per line with the common fields."""
        path = tmp_path / "events.jsonl"
        scoped.logging.to_json(path)
        db = scoped_session(sessionmaker(engine), name="json")
        work(db)
        db.remove()
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert ["session.created", "session.begin", "session.removed"] == [
            d["event"] for d in lines
        ]
        for field in (
            "registry",
            "scope_kind",
            "scope",
            "session_id",
            "thread",
            "thread_id",
            "timestamp",
            "level",
        ):
            assert all(field in d for d in lines), field

    def test_mask_url(self) -> None:
        """Database URLs are rendered without their password."""
        assert "***" in mask_url(sa.make_url("mysql://u:pw@h/d"))
        assert "pw" not in mask_url(sa.make_url("mysql://u:pw@h/d"))


class TestIntrospection:
    """The registry can list and count its sessions."""

    def test_entries_and_stats(self, engine: sa.Engine) -> None:
        """entries() lists live sessions with scope, thread and age; stats() counts."""
        db = scoped_session(sessionmaker(engine), scopefunc=lambda: "req-1")
        session = db()
        [entry] = db.registry.entries()
        assert session is entry["session"]
        assert "req-1" == entry["scope"]
        assert threading.current_thread().name == entry["thread"]
        assert entry["age"] >= 0
        db.remove()
        assert {"created": 1, "removed": 1, "cleaned_up": 0, "live": 0} == (
            db.registry.stats()
        )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_fork_child_starts_empty_and_leaves_parent_alone(pg_url: str) -> None:
    """After fork the child starts empty and the parent's transaction survives."""
    engine = sa.create_engine(pg_url)
    db = scoped_session(sessionmaker(engine))
    db.execute(sa.text("create temporary table fork_probe (n int)"))
    db.execute(sa.text("insert into fork_probe values (1)"))
    parent_pid = db.execute(sa.text("select pg_backend_pid()")).scalar()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status: dict[str, Any] = {}
        try:
            status["had_session"] = db.registry.has()
            status["live"] = db.registry.stats()["live"]
            engine.dispose(close=False)
            status["child_pid"] = db.execute(
                sa.text("select pg_backend_pid()")
            ).scalar()
            db.remove()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            status["error"] = repr(exc)
        os.write(write, json.dumps(status).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        status = json.loads(pipe.read())
    assert "error" not in status
    assert status["had_session"] is False
    assert 0 == status["live"]
    assert parent_pid != status["child_pid"]
    # The parent's connection and transaction were not touched by the child.
    assert 1 == db.execute(sa.text("select count(*) from fork_probe")).scalar()
    db.remove()
    engine.dispose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_fork_is_reported_in_the_child(engine: sa.Engine) -> None:
    """The child reports registry.forked with the number of sessions it dropped."""
    with capture_logs() as logs:
        db = scoped_session(sessionmaker(engine), name="forky")
        db()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            forked = [
                {"event": e["event"], "dropped": e.get("dropped")}
                for e in logs
                if e["event"] == "registry.forked" and e.get("registry") == "forky"
            ]
            os.write(write, json.dumps(forked).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as pipe:
            child = json.loads(pipe.read())
        db.remove()
    assert [{"event": "registry.forked", "dropped": 1}] == child
    assert "registry.forked" not in events(logs)


def test_async_session_events(tmp_path: Any) -> None:
    """An AsyncSession reports its transaction, a finished close() and its removal."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from scoped.asyncio import async_scoped_session

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")

    async def main() -> None:
        db = async_scoped_session(async_sessionmaker(engine))
        await db.execute(sa.text("select 1"))
        await db.commit()
        await db.close()
        await db.remove()
        await engine.dispose()

    with capture_logs() as logs:
        asyncio.run(main())
    assert [
        "session.created",
        "session.begin",
        "session.commit",
        "session.closed",
        "session.removed",
    ] == events(logs)


def test_stats_count_every_thread_including_finished_ones(engine: sa.Engine) -> None:
    """Counts made by threads (and kept after they exit) add up exactly."""
    db = scoped_session(sessionmaker(engine))

    def work(removals: int, leave_one: bool) -> None:
        for _ in range(removals):
            db()
            db.remove()
        if leave_one:
            db()

    threads = [
        threading.Thread(target=work, args=(5, index % 2 == 0)) for index in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db()
    gc.collect()
    assert {"created": 45, "removed": 40, "cleaned_up": 4, "live": 1} == (
        db.registry.stats()
    )
    with db.scope():
        db()
    assert {"created": 46, "removed": 41, "cleaned_up": 4, "live": 1} == (
        db.registry.stats()
    )
