"""The webhook receiver's bookkeeping: the duplicate filter and the callback slots.

Public through ``getbill_async.webhooks``; kept apart so the receiver's module stays short.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["DuplicateFilter"]


class DuplicateFilter:
    """Remembers the SHA-256 of webhook bodies already handled, for ``ttl`` seconds.

    A body seen again within ``ttl`` is answered 204 without running the callback. GetBill's
    events carry no event id and no timestamp, so the raw body is all there is: two deliveries
    of one event are caught, but nothing stops a replay of a signed body after ``ttl`` (keep
    the secret secret, and make the callback idempotent where it matters). Memory is bounded:
    past ``max_entries`` (about 150 bytes each) the oldest digests are forgotten early.

    Args:
        ttl: seconds a body is remembered (> 0).
        max_entries: the most digests kept (>= 1).
        clock: the monotonic clock (tests pass a fake one).

    Raises:
        ValueError: ``ttl`` or ``max_entries`` out of range.
    """

    __slots__ = ("_clock", "_seen", "max_entries", "ttl")

    def __init__(
        self,
        *,
        ttl: float = 86_400.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        # Insertion order is expiry order (one ttl for all), so expired digests sit in front.
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def digest(body: bytes) -> bytes:
        """The key a body is remembered by."""
        return hashlib.sha256(body).digest()

    def __contains__(self, digest: object) -> bool:
        self._expire()
        return digest in self._seen

    def __len__(self) -> int:
        self._expire()
        return len(self._seen)

    def add(self, digest: bytes) -> None:
        """Remember ``digest`` for ``ttl`` seconds from now.

        Args:
            digest: the SHA-256 of a body handled.
        """
        self._expire()
        self._seen[digest] = self._clock() + self.ttl
        self._seen.move_to_end(digest)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        while self._seen:
            digest, expires = next(iter(self._seen.items()))
            if expires > now:
                return
            del self._seen[digest]


class _Slots:
    """At most ``size`` holders; ``take`` waits up to a timeout, first come, first served."""

    __slots__ = ("_waiters", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[bool]] = deque()

    async def take(self, timeout: float) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(max(timeout, 0.0), _settle, waiter, False)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a slot in the same tick as the cancel: give it on, or it is lost.
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.free += 1


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
