"""A sandbox for sync code: served by its own event loop on a thread, so that a blocking
client (or a worker process) can reach it while the test's thread waits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from getbill_async.sandbox import Sandbox

T = TypeVar("T")
L = TypeVar("L", bound="LoopThread")


def wait_for(what: str, check: Callable[[], object], seconds: float = 5.0) -> None:
    """Poll ``check()`` until it is true, or fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class LoopThread:
    """A server on an event loop of its own, on a thread: ``start()`` and ``stop()`` (async)
    run there on ``with``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: L) -> L:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class ThreadedSandbox(LoopThread):
    """``with ThreadedSandbox(followups=100) as sb:`` ``sb.sandbox`` is served meanwhile."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.sandbox = Sandbox(**settings)

    async def start(self) -> None:
        await self.sandbox.start()

    async def stop(self) -> None:
        await self.sandbox.stop()

    def read(self, fn: Callable[[Sandbox], T]) -> T:
        """``fn(sandbox)`` on the sandbox's loop: its counters, read without a race."""

        async def call() -> T:
            return fn(self.sandbox)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    @property
    def token(self) -> str:
        return self.sandbox.token

    @property
    def base_url(self) -> str:
        return self.sandbox.base_url
