"""A session's entry: the same fields and behaviour, in C and in Python.

``scoped.lifecycle.Entry`` builds on ``scoped._speedups.EntryFields`` when
the extension is in use, and on the pure-Python ``EntryFields`` otherwise.
Every test here runs on a subclass of each, as ``Entry`` itself is built.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import weakref
from typing import Any

import pytest
from extension import both

from scoped._extension import compiled
from scoped.lifecycle import Entry
from scoped.lifecycle._entry import EntryFields

COMPILED_FIELDS = compiled("EntryFields")


def _entry_class(base: type[Any]) -> type[Any]:
    # As Entry is built: its properties over the fields of *base*.
    namespace = {
        name: value
        for name, value in vars(Entry).items()
        if isinstance(value, property) or name == "describe"
    }
    return type("Entry", (base,), {"__slots__": (), **namespace})


IMPLEMENTATIONS = both(EntryFields, COMPILED_FIELDS, in_use=COMPILED_FIELDS is not None)


@pytest.fixture(params=IMPLEMENTATIONS)
def make(request: pytest.FixtureRequest) -> type[Any]:
    return _entry_class(request.param)


def test_entry_is_built_on_the_extension_when_it_is_in_use() -> None:
    expected = COMPILED_FIELDS or EntryFields
    assert Entry.__mro__[1] is expected


def test_fields_start_as_documented(make: type[Any]) -> None:
    obj = object()
    before = time.monotonic()
    entry = make(obj, "key")
    after = time.monotonic()

    assert entry.obj is obj
    assert entry.scope == "key"
    assert before <= entry.created <= after
    assert entry._thread is threading.current_thread()
    assert entry._pid == os.getpid()
    assert (entry.attached, entry.slot, entry.watcher) == (None, None, None)
    assert (entry.logged, entry.warned) == (False, False)


def test_numbers_are_unique_and_increasing(make: type[Any]) -> None:
    first, second = make(object(), None), make(object(), None)

    assert second._number > first._number
    assert first.session_id != second.session_id
    assert first.session_id == f"{os.getpid():x}-{first._number:x}"


def test_the_creating_thread_can_be_given(make: type[Any]) -> None:
    other = threading.Thread(name="given")
    entry = make(object(), None, other)

    assert entry._thread is other
    assert entry.thread == "given"
    assert entry.scope_repr == "given"


def test_arguments_by_keyword_and_bad_arity(make: type[Any]) -> None:
    obj = object()
    entry = make(obj=obj, scope="k", thread=None)
    assert (entry.obj, entry.scope) == (obj, "k")

    with pytest.raises(TypeError):
        make(obj)
    with pytest.raises(TypeError):
        make(obj, "k", None, "extra")


def test_mutable_fields_can_be_set(make: type[Any]) -> None:
    entry = make(object(), None)
    attached: tuple[list[str], list[Any]] = ([], [])

    entry.attached = attached
    entry.slot = "where"
    entry.watcher = watcher = object()
    entry.logged = True
    entry.warned = True
    entry.created -= 100.0

    assert entry.attached is attached
    assert (entry.slot, entry.watcher) == ("where", watcher)
    assert (entry.logged, entry.warned) == (True, True)
    assert entry.age >= 100.0
    with pytest.raises(AttributeError):
        entry.unknown = 1
    del entry.watcher
    with pytest.raises(AttributeError):
        _ = entry.watcher  # deleted fields are unset, as slots are


def test_describe_names_the_session(make: type[Any]) -> None:
    obj = object()
    described = make(obj, None).describe()

    assert described["session"] is obj
    assert described["thread"] == threading.current_thread().name
    assert described["thread_id"] == threading.get_ident()
    assert described["scope"] == described["thread"]


def test_an_entry_releases_its_session(make: type[Any]) -> None:
    class Session:
        pass

    session = Session()
    ref = weakref.ref(session)
    entry = make(session, None)
    del session
    assert ref() is not None

    del entry
    assert ref() is None


def test_a_cycle_through_an_entry_is_collected(make: type[Any]) -> None:
    class Session:
        entry: Any = None

    session = Session()
    session.entry = make(session, None)
    session.entry.watcher = session
    ref = weakref.ref(session)
    del session

    gc.collect()
    assert ref() is None


def test_the_class_outlives_no_instance(make: type[Any]) -> None:
    # Instances of a subclass hold and release their class, once.
    refs = sys.getrefcount(make)
    entries = [make(object(), None) for _ in range(100)]
    del entries
    gc.collect()

    assert sys.getrefcount(make) == refs


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_forked_child_numbers_its_entries_with_its_own_process_id(
    make: type[Any],
) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, make(object(), None).session_id.encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child_id = pipe.read()

    assert os.waitstatus_to_exitcode(status) == 0
    assert child_id.split("-")[0] == f"{pid:x}"
    assert make(object(), None)._pid == os.getpid()


def test_a_subclass_with_its_own_initialiser_is_initialised(make: type[Any]) -> None:
    """Plain subclasses are called without an argument tuple; one that
    initialises its instances its own way still has its ``__init__`` run."""

    class Named(make):  # type: ignore[misc]
        __slots__ = ("name",)

        def __init__(self, obj: object, scope: object, thread: Any = None) -> None:
            self.name = f"named {scope}"

    assert Named(object(), "k").name == "named k"
    assert make(object(), "k").scope == "k"
