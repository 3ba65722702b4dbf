"""How ``RedisBudget`` talks to Redis: one bounded call, and releases that wait for Redis.

``Caller.call`` bounds one round trip by the budget's ``timeout``. A lost connection (a
restart, a failover) is tried again within that time. A timeout that fired far later than it
was due measured this process's own pause (SIGSTOP, a frozen VM, a blocked event loop), not
Redis: the call is tried again with a fresh deadline, a bounded number of times. Whatever else
the client raises, of any type (redis-py's cluster client can raise a bare ``AttributeError``
while a node restarts), becomes ``BudgetUnavailableError``; only cancellation passes through.

``PendingReleases`` keeps the releases that failed (Redis paused, out of connections, gone for
a moment) and tries them again in order, with a growing pause, until Redis answers: a slot then
comes back when Redis does, not a lease and a window later. The queue is bounded, and a release
older than the lease is dropped (by then the ledger has let its slot lapse anyway).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..._constants import LOGGER_NAME
from ...errors import BudgetUnavailableError

__all__ = ["Caller", "PendingReleases"]

T = TypeVar("T")
log = logging.getLogger(LOGGER_NAME)

#: A timeout that fired this much later than due (seconds, at least) measured our own pause.
PAUSE_LATENESS = 0.25
#: How often one call is tried again after such a pause.
PAUSE_RETRIES = 3


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is a timeout (ours or redis-py's): the call may have run."""
    return isinstance(exc, (asyncio.TimeoutError, RedisTimeoutError))


class Caller:
    """Bounded Redis calls for one budget; ``where`` names it in messages (no secrets)."""

    __slots__ = ("timeout", "_where")

    def __init__(self, timeout: float, where: Callable[[], str]) -> None:
        self.timeout = timeout
        self._where = where

    async def call(self, doing: str, call: Callable[[], Awaitable[T]]) -> T:
        """One Redis round trip, bounded by ``timeout``.

        Args:
            doing: What the call does, for the error message ("acquiring a read slot").
            call: Makes the call; it may be made more than once.

        Returns:
            What the call returned.

        Raises:
            BudgetUnavailableError: Redis did not answer within ``timeout``, or the client
                failed in any way; the original error is its ``__cause__``.
        """
        pauses = 0
        while True:
            deadline = time.monotonic() + self.timeout
            try:
                return await self._within(deadline, call)
            except Exception as exc:  # every failure of the client, whatever its type
                late = time.monotonic() - deadline
                if timed_out(exc) and late > max(PAUSE_LATENESS, self.timeout / 2):
                    if pauses < PAUSE_RETRIES:
                        pauses += 1
                        log.debug("a Redis call timed out %.2fs late: this process paused", late)
                        continue
                reason = str(exc) or type(exc).__name__
                raise BudgetUnavailableError(
                    f"shared rate budget unavailable: {self._where()} failed while {doing}: "
                    f"{reason}"
                ) from exc

    async def _within(self, deadline: float, call: Callable[[], Awaitable[T]]) -> T:
        pause = 0.02
        while True:
            try:
                return await asyncio.wait_for(call(), max(0.001, deadline - time.monotonic()))
            except RedisConnectionError as exc:
                if time.monotonic() + pause >= deadline or isinstance(exc, RedisTimeoutError):
                    raise
                await asyncio.sleep(pause)
                pause = min(0.2, pause * 2)


class PendingReleases:
    """Releases that failed, tried again in order until Redis answers (bounded)."""

    __slots__ = ("_keep_for", "_queue", "_task", "dropped")

    def __init__(self, keep_for: float, size: int = 10_000) -> None:
        self._keep_for = keep_for
        self._queue: collections.deque[tuple[float, str, Callable[[], Awaitable[object]]]]
        self._queue = collections.deque(maxlen=size)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # given up: older than the lease, or beyond the bound

    def __len__(self) -> int:
        return len(self._queue)

    async def send(self, doing: str, call: Callable[[], Awaitable[object]]) -> None:
        """Make one release now; queue it when Redis fails (a WARNING the first time in a row).

        Args:
            doing: What the release does, for messages.
            call: Makes the release; raises ``BudgetUnavailableError`` when Redis fails.
        """
        try:
            await call()
        except BudgetUnavailableError as exc:
            if not self._queue:
                log.warning("%s; sent again once Redis answers", exc)
            self.add(doing, call)

    def add(self, doing: str, call: Callable[[], Awaitable[object]]) -> None:
        """Queue one release and make sure a task tries it again.

        Args:
            doing: What the release does, for messages.
            call: Makes the release; raises ``BudgetUnavailableError`` when Redis fails.
        """
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append((time.monotonic() + self._keep_for, doing, call))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    async def flush(self) -> bool:
        """Try every queued release once, in order, until one fails.

        Returns:
            Whether the queue is empty now.
        """
        while self._queue:
            until, doing, call = self._queue[0]
            if time.monotonic() > until:
                self._queue.popleft()
                self.dropped += 1
                continue
            try:
                await call()
            except BudgetUnavailableError:
                return False
            self._queue.popleft()
        return True

    async def _drain(self) -> None:
        pause = 0.05
        while not await self.flush():
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def aclose(self, timeout: float) -> None:
        """One last try, within ``timeout``; what is left is dropped, with a WARNING.

        Args:
            timeout: Seconds for the last try.
        """
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except asyncio.TimeoutError:
            pass
        if self._queue:
            log.warning(
                "%d budget releases could not reach Redis: their slots lapse with their lease",
                len(self._queue),
            )
            self._queue.clear()
