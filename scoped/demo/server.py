"""The demo's server: wsgiref with a fixed pool of long-lived request threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from scoped.demo.app import WAIT_SECONDS

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["PooledWSGIServer", "serve"]


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a log line per request or traceback per 500.

    The application records unexpected exceptions itself.
    """

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_stderr(self) -> Any:
        return _Discard()


class _Discard:
    """A text stream that drops what it is given."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class PooledWSGIServer(WSGIServer):
    """:mod:`wsgiref`'s server with a fixed pool of request threads.

    Each connection (one request: wsgiref speaks HTTP/1.0) is served by one
    of *threads* long-lived threads, as in production WSGI servers, so a
    thread serves many requests and what one leaves behind reaches the next.
    """

    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WSGIApplication, threads: int):
        super().__init__(address, _QuietHandler)
        self.set_app(app)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="scoped-server")
        self._busy = 0
        self._idle = threading.Condition()

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            self._busy += 1
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a client that left early
            # The client sees what went wrong; the application records its
            # own exceptions.
            pass
        finally:
            self.shutdown_request(request)
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until every accepted request was served; tell whether it was."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=True)


@contextmanager
def serve(app: WSGIApplication, threads: int) -> Iterator[PooledWSGIServer]:
    """Serve *app* on a free 127.0.0.1 port until the block ends."""
    server = PooledWSGIServer(("127.0.0.1", 0), app, threads)
    loop = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="scoped-server-accept",
    )
    loop.start()
    try:
        yield server
    finally:
        server.shutdown()
        loop.join()
        server.server_close()
