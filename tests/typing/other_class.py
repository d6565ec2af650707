"""A user's module proxying a class other than a SQLAlchemy session.

``mypy --strict`` must accept it: the proxied members are generated at run
time from ``HttpClient``, so type checkers see them as ``Any``, never with
``Session``'s signatures. Each ``reveal_type`` is matched, in order, by
``tests/test_typing.py``; never imported at run time.
"""

from __future__ import annotations

from typing_extensions import reveal_type

from scoped import AnyScopedSession, scoped_session
from scoped.asyncio import async_scoped_session


class HttpClient:
    def get(self, path: str, *, timeout: float = 5.0) -> bytes:
        return path.encode()

    def close(self) -> None:
        pass


http = scoped_session(HttpClient)
reveal_type(http)
reveal_type(http())
reveal_type(http.get("/health"))
http.remove()

annotated: AnyScopedSession[HttpClient] = scoped_session(HttpClient)
annotated.get("/ready", timeout=1.0)
reveal_type(annotated.registry.stats())


class Client:
    async def fetch(self, path: str) -> bytes:
        return path.encode()

    async def aclose(self) -> None:
        pass


clients = async_scoped_session(Client, close_method="aclose")
reveal_type(clients)


async def fetch() -> None:
    reveal_type(await clients.fetch("/health"))
    await clients.remove()
