"""An ASGI app served over real HTTP inside the current event loop, for as long as a block runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from services.sandbox import free_port


@asynccontextmanager
async def serving(app: Any, *, port: int | None = None, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve `app` (lifespan included) until the block ends; yields its base URL once it accepts connections."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None))
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
