"""An ASGI application served by a real uvicorn server on loopback for the length of a test."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn


@asynccontextmanager
async def serve_asgi(
    app: Any, *, lifespan: Literal["on", "off"] = "on", shutdown_timeout: float = 10.0
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port); yields its root URL.

    Leaving the block shuts the server down the way a signal would: the app's lifespan
    shutdown runs, and the block ends only when the server has stopped.
    """
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        http="h11",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # a failed startup raises here
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, shutdown_timeout)
        sock.close()
