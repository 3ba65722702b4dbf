"""A sandbox for sync code: served by its own event loop on a thread, so that a blocking
client (or a worker process) can reach it while the test's thread waits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from getbill_async.sandbox import Sandbox

T = TypeVar("T")


class ThreadedSandbox:
    """``with ThreadedSandbox(followups=100) as sb:`` ``sb.sandbox`` is served meanwhile."""

    def __init__(self, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.sandbox = Sandbox(**settings)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedSandbox:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sandbox.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

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
