"""An ASGI app served over real HTTP inside the current event loop, for as long as a block runs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serving(app: Any, *, port: int | None = None, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve `app` (lifespan included) until the block ends; yields its base URL once it accepts connections."""
    port = port or free_port()
    # Idle connections kept well past clients' own expiry (httpx: 5 s, uvicorn's default too), so a client never
    # reuses one the server is closing at that instant (a ReadError on a request that was never read).
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None,
                                           timeout_keep_alive=30))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why the server could not start
                raise RuntimeError(f"the server on {host}:{port} stopped before it started")
            await asyncio.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def free_port() -> int:
    """A loopback port nobody listens on right now, for a server this process is about to start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
