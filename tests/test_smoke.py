"""The package imports and forwards to a per-thread session."""

from __future__ import annotations

import threading

from scoped import scoped_session


class Client:
    """A session-like class unrelated to SQLAlchemy."""

    def __init__(self) -> None:
        self.closed = False

    def get(self, path: str, *, timeout: float = 1.0) -> tuple[str, float]:
        """Fetch *path*."""
        return path, timeout

    def close(self) -> None:
        """Release resources."""
        self.closed = True


def test_forwards_to_the_current_threads_object() -> None:
    """Each thread gets its own client, and calls reach it."""
    db = scoped_session(Client)
    seen: list[Client] = []
    t = threading.Thread(target=lambda: seen.append(db()))
    t.start()
    t.join()
    assert ("/x", 1.0) == db.get("/x")
    assert [db()] != seen
