"""The registry kind of the docs' "extending" section works as written."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from scoped import scoped_session

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "process_registry.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("process_registry", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Client:
    created = 0

    def __init__(self) -> None:
        Client.created += 1
        self.closed = 0

    def get(self, path: str) -> str:
        if path == "/missing":
            raise KeyError(path)
        return f"GET {path}"

    def close(self) -> None:
        self.closed += 1


def test_the_example_is_under_fifty_lines() -> None:
    """The docs promise a new registry kind in under 50 lines."""
    assert len(EXAMPLE.read_text().splitlines()) < 50


def test_a_registry_of_its_own_kind_behind_proxies() -> None:
    """Threads share one object through generated proxies; remove() closes it
    once; the session's own KeyError is not taken for a miss; stats add up."""
    registry: Any = _example().ProcessRegistry(Client, close=Client.close)
    proxy_cls = scoped_session._proxy_class(scoped_session, Client, registry)
    db: Any = object.__new__(proxy_cls)
    db._scoped_attach(registry)

    seen: list[Client] = []
    barrier = threading.Barrier(8, timeout=10)

    def worker() -> None:
        barrier.wait()
        assert "GET /a" == db.get("/a")
        seen.append(registry())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 == len({id(client) for client in seen})
    with pytest.raises(KeyError, match="missing"):
        db.get("/missing")
    client = seen[0]
    registry.remove()
    assert 1 == client.closed
    assert not registry.has()
    assert {"created": 1, "removed": 1, "cleaned_up": 0, "live": 0} == registry.stats()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_forked_child_gets_its_own_object() -> None:
    """The base class's fork reset applies to the new kind unchanged."""
    registry: Any = _example().ProcessRegistry(Client, close=Client.close)
    parent = registry()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its exit status
        ok = registry() is not parent and registry.stats()["created"] == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    assert registry() is parent
