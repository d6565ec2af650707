"""The one vocabulary of lifecycle events: what emits it, and what documents it."""

from __future__ import annotations

import ast
import gc
import logging
import re
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

import files
import pytest
import sqlalchemy as sa
from docutils.core import publish_doctree
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from scoped import events, scoped_session

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scoped"

#: An event name as the vocabulary spells them: ``<subject>.<what>``.
NAME = re.compile(r"(?:session|registry)\.[a-z_]+")


def literal_names(source: str) -> Iterator[tuple[int, str]]:
    """(line, name) of every string literal in *source* spelled like an event."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and NAME.fullmatch(node.value)
        ):
            yield node.lineno, node.value


def literal_sites(source: str) -> Iterator[tuple[int, str, str]]:
    """(line, level, name) of ``x.emit(logging.LEVEL, "name", ...)``-shaped calls."""
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"emit", "ended"}
            and len(node.args) >= 2
        ):
            continue
        level, name = node.args[:2]
        if (
            isinstance(level, ast.Attribute)
            and isinstance(level.value, ast.Name)
            and level.value.id == "logging"
            and isinstance(name, ast.Constant)
            and isinstance(name.value, str)
        ):
            yield node.lineno, level.attr, name.value


def sources() -> Iterator[tuple[str, str]]:
    """(path relative to the checkout, text) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


class TestVocabulary:
    """The definitions themselves."""

    def test_names_are_unique_and_say_what_they_are_about(self) -> None:
        """Names are distinct; only ``session.*`` ones carry session fields."""
        names = [event.name for event in events.EVENTS]
        assert len(names) == len(set(names))
        for event in events.EVENTS:
            assert NAME.fullmatch(event.name), event.name
            assert event.about_session == event.name.startswith("session."), event
            assert str(event) == event.name

    def test_every_constant_is_listed(self) -> None:
        """Each module-level Event is in EVENTS, so reports and docs see it."""
        constants = [
            value for value in vars(events).values() if isinstance(value, events.Event)
        ]
        assert set(constants) == set(events.EVENTS)
        assert len(events.EVENTS) == len(constants)

    def test_session_events_come_first(self) -> None:
        """EVENTS lists the events about one session before the registry's."""
        flags = [event.about_session for event in events.EVENTS]
        assert flags == sorted(flags, reverse=True)

    def test_by_name(self) -> None:
        """by_name() finds each definition and names the known ones otherwise."""
        for event in events.EVENTS:
            assert event is events.by_name(event.name)
        with pytest.raises(KeyError, match=r"'session\.opened'; known: session\."):
            events.by_name("session.opened")

    def test_field_names(self) -> None:
        """field_names holds the common fields, the session ones where they apply."""
        assert {"registry", "session_id", "age_ms"} <= (
            events.SESSION_REMOVED.field_names
        )
        assert "session_id" not in events.REGISTRY_FORKED.field_names
        assert "dropped" in events.REGISTRY_FORKED.field_names


class TestEmitSites:
    """Every name the package emits is defined, with its level."""

    def test_scans_find_literal_names_and_sites(self) -> None:
        """The scans below see the literal shapes the package uses."""
        source = (
            "import logging\n"
            'events.emit(logging.WARNING, "session.leak_suspected", entry)\n'
            'HOOKS = (("after_begin", "session.begin"),)\n'
        )
        assert [(2, "session.leak_suspected"), (3, "session.begin")] == sorted(
            literal_names(source)
        )
        assert [(2, "WARNING", "session.leak_suspected")] == list(literal_sites(source))

    def test_every_literal_event_name_is_defined(self) -> None:
        """No string spelled like an event names one the vocabulary lacks."""
        unknown = [
            f"{path}:{line}: {name}"
            for path, text in sources()
            for line, name in literal_names(text)
            if name not in {event.name for event in events.EVENTS}
        ]
        assert [] == unknown

    def test_literal_sites_use_the_defined_level(self) -> None:
        """A call naming an event by its string logs it at the defined level."""
        wrong = [
            f"{path}:{line}: {name} at {level}"
            for path, text in sources()
            for line, level, name in literal_sites(text)
            if getattr(logging, level) != events.by_name(name).level
        ]
        assert [] == wrong


class Fragile(Session):
    """A session whose close() always fails."""

    def close(self) -> None:
        raise RuntimeError("disk on fire")


def everything(engine: sa.Engine) -> list[MutableMapping[str, Any]]:
    """Capture every event but ``registry.forked`` from real registries."""
    with capture_logs() as logs:
        db = scoped_session(sessionmaker(), name="all", max_scopes=1)
        db.configure(bind=engine)
        db.execute(sa.text("select 1"))
        db.commit()
        db.execute(sa.text("select 1"))
        db.rollback()
        db.close()
        db.reset()
        # A second scope while the first holds a session: max_scopes=1 warns.
        worker = threading.Thread(target=db)
        worker.start()
        worker.join()
        gc.collect()
        db.registry.leak_after = 1e-9
        db.registry.check_leaks()
        db.remove()

        fragile = scoped_session(sessionmaker(engine, class_=Fragile), name="fragile")
        fragile()
        with pytest.raises(RuntimeError, match="disk on fire"):
            fragile.remove()
    return logs


def test_emitted_events_carry_the_defined_level_and_fields(engine: sa.Engine) -> None:
    """Real events are named, levelled and shaped as their definitions say."""
    logs = everything(engine)

    seen = {entry["event"] for entry in logs}
    assert {e.name for e in events.EVENTS} - {events.REGISTRY_FORKED.name} == seen
    reasons = {e.get("reason") for e in logs if e["event"] == "session.leak_suspected"}
    assert {"age", "max_scopes"} == reasons
    for entry in logs:
        event = events.by_name(entry["event"])
        assert logging.getLevelName(event.level).lower() == entry["log_level"]
        fields = set(entry) - {"event", "log_level"}
        assert fields <= event.field_names, entry
        required = {"registry", "scope_kind", "thread", "thread_id", "timestamp"}
        if event.about_session:
            required |= {"session_id", "scope"}
        assert required <= fields, entry


def test_typed_and_named_events_log_alike() -> None:
    """emit() takes a definition or its name; the log line carries the name."""
    from scoped.lifecycle import Events

    sender = Events("typed")
    with capture_logs() as logs:
        sender.emit(logging.DEBUG, events.REGISTRY_FORKED, dropped=1)
        sender.emit(logging.DEBUG, "registry.forked", dropped=1)
    assert ["registry.forked"] * 2 == [entry["event"] for entry in logs]
    assert {str} == {type(entry["event"]) for entry in logs}


# -- the documentation ------------------------------------------------------


def docs_extension() -> ModuleType:
    """docs/_ext/scoped_events.py, the directive that renders the vocabulary."""
    return files.load(ROOT / "docs" / "_ext" / "scoped_events.py")


def test_docs_generate_the_event_table() -> None:
    """logging.rst places every generated part; the table lists EVENTS in order."""
    page = (ROOT / "docs" / "logging.rst").read_text(encoding="utf-8")
    extension = docs_extension()
    for kind in extension.KINDS:
        assert f".. scoped-events:: {kind}\n" in page

    rendered = "\n".join(extension.render("table"))
    doctree = publish_doctree(rendered, settings_overrides={"report_level": 2})
    rows = doctree.findall(
        lambda node: node.tagname == "row"  # type: ignore[attr-defined]
    )
    first_cells = [row.children[0].astext() for row in rows]
    assert ["Event", *(e.name for e in events.EVENTS)] == first_cells


def test_docs_directive_rejects_unknown_parts() -> None:
    """An unknown part is an error naming the known ones."""
    with pytest.raises(ValueError, match="one of common, session, table, not 'x'"):
        docs_extension().render("x")


def test_docs_mention_only_defined_events() -> None:
    """Every event name in the prose of the docs and README is defined."""
    known = {event.name for event in events.EVENTS}
    # A name followed by "(" is a method (``registry.set()``), not an event.
    # File names (session.py) are not events.
    mention = re.compile(r"(?<![/\w])(?:session|registry)\.(?!py\b)[a-z_]+\b(?![(.])")
    unknown = [
        f"{path.name}: {name}"
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.*"))]
        if path.suffix in {".rst", ".md"}
        for name in mention.findall(path.read_text(encoding="utf-8"))
        if name not in known
    ]
    assert [] == unknown
