"""The frame every local fake of an HTTP service shares: a threaded server on a loopback port, a lock, and a
script of actions played one per request ("pass" once the script runs out)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class ScriptedServer:
    """Subclasses set their own state, then call `super().__init__()`, and define `_handler()`."""

    def __init__(self) -> None:
        self.script: deque[str] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def play(self, actions: Iterable[str]) -> None:
        with self._lock:
            self.script.extend(actions)

    def _next_action(self) -> str:
        with self._lock:
            return self.script.popleft() if self.script else "pass"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
