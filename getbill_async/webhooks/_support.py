"""The webhook receiver's bookkeeping: the duplicate filter and the callback slots.

The filter keeps its marks in memory (``_MemoryMarks``, per process) or in Redis
(``_redis.RedisMarks``, shared by workers); the receiver's core talks to either through
the same five calls: ``claim``, ``outcome``, ``finish``, ``release``, ``seen``.

Public through ``getbill_async.webhooks``; kept apart so the receiver's module stays short.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from ..support import require
from ._marks import Marks

__all__ = ["DEFAULT_PREFIX", "DuplicateFilter"]

DEFAULT_PREFIX = "getbill:webhooks:"


class DuplicateFilter:
    """Remembers the webhook bodies already handled (by SHA-256), for ``ttl`` seconds.

    A body seen again within ``ttl`` is answered 204 without running the callback; a copy
    that arrives while the first is still being handled waits for that one's outcome (see
    ``WebhookReceiver``). GetBill's events carry no event id and no timestamp, so the raw
    body is all there is: two deliveries of one event are caught, but nothing stops a replay
    of a signed body after ``ttl`` (keep the secret secret, and make the callback idempotent
    where it matters).

    Without ``redis``, the filter lives in this process's memory: **per process**. Under
    several workers (``uvicorn --workers 2``, gunicorn) each has its own, and a restart
    forgets everything. Memory is bounded: past ``max_entries`` (about 150 bytes each) the
    oldest digests are forgotten early.

    With ``redis="redis://host:6379/0"`` (the ``redis`` extra), the filter lives in Redis
    under ``prefix``, shared by every worker and kept across restarts: one event runs once.
    A worker's claim on an event it is handling expires (the delivery's deadline and a few
    seconds), so a worker that dies mid-callback does not block the event for ``ttl``::

        duplicates = DuplicateFilter(redis="redis://127.0.0.1:6379/0", ttl=86_400)

    Args:
        ttl: seconds a body is remembered (> 0).
        max_entries: the most digests kept in memory (>= 1; 100,000); not with ``redis``.
        clock: the monotonic clock of the memory filter (tests pass a fake one).
        redis: a Redis URL: share the filter through Redis instead of memory.
        prefix: the Redis keys' prefix (one per endpoint, if several share a Redis).
        timeout: seconds each Redis call may take; past it the delivery is answered 503.

    Raises:
        ValueError: a setting out of range, or an option the chosen kind does not take.
        TypeError: ``redis`` is not a str.
        MissingExtraError: ``redis`` given without redis-py installed.
    """

    __slots__ = ("_marks", "max_entries", "prefix", "redis", "ttl")

    def __init__(
        self,
        *,
        ttl: float = 86_400.0,
        max_entries: int | None = None,
        clock: Callable[[], float] | None = None,
        redis: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        if not 0 < timeout <= 60:
            raise ValueError(f"timeout must be in (0, 60] seconds, got {timeout!r}")
        self.ttl = ttl
        self.redis = redis
        self.prefix = prefix
        self.max_entries = max_entries
        self._marks: Marks
        if redis is None:
            self.max_entries = 100_000 if max_entries is None else max_entries
            self._marks = _MemoryMarks(ttl, self.max_entries, clock or time.monotonic)
        else:
            self._marks = _redis_marks(redis, ttl, prefix, timeout, max_entries, clock)

    def __repr__(self) -> str:
        if isinstance(self._marks, _MemoryMarks):
            return f"<DuplicateFilter in memory ttl={self.ttl!r} max_entries={self.max_entries}>"
        from ._redis import where

        assert self.redis is not None
        return (
            f"<DuplicateFilter redis={where(self.redis)} prefix={self.prefix!r} ttl={self.ttl!r}>"
        )

    @staticmethod
    def digest(body: bytes) -> bytes:
        """The key a body is remembered by."""
        return hashlib.sha256(body).digest()

    def __contains__(self, digest: object) -> bool:
        return digest in self._memory()

    def __len__(self) -> int:
        return len(self._memory())

    def add(self, digest: bytes) -> None:
        """Remember ``digest`` for ``ttl`` seconds from now (the memory filter).

        Args:
            digest: the SHA-256 of a body handled.
        """
        self._memory().add(digest)

    async def seen(self, digest: bytes) -> bool:
        """Whether ``digest`` is remembered as handled (either kind of filter).

        Args:
            digest: the SHA-256 of a body.
        """
        return await self._marks.seen(digest)

    async def aclose(self) -> None:
        """Close the Redis connections, if any (a later delivery opens them again)."""
        await self._marks.aclose()

    def _memory(self) -> _MemoryMarks:
        if not isinstance(self._marks, _MemoryMarks):
            raise TypeError(
                "a DuplicateFilter in Redis is asked with `await duplicates.seen(digest)`"
            )
        return self._marks


def _redis_marks(
    url: str,
    ttl: float,
    prefix: str,
    timeout: float,
    max_entries: int | None,
    clock: Callable[[], float] | None,
) -> Marks:
    if max_entries is not None or clock is not None:
        given = "max_entries" if max_entries is not None else "clock"
        raise ValueError(
            f"{given} is an option of the in-memory DuplicateFilter; "
            "in Redis, digests expire after ttl, on Redis's clock"
        )
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
    require("redis", extra="redis", feature="DuplicateFilter(redis=...)")
    from ._redis import RedisMarks, check_url

    return RedisMarks(check_url(url), ttl=ttl, prefix=prefix, timeout=timeout)


class _MemoryMarks:
    """The marks in this process: handled digests with their expiry, and a future per event
    being handled, which its copies wait on."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        # Insertion order is expiry order (one ttl for all), so expired digests sit in front.
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._running: dict[bytes, asyncio.Future[bool]] = {}

    def __contains__(self, digest: object) -> bool:
        self._expire()
        return digest in self._seen

    def __len__(self) -> int:
        self._expire()
        return len(self._seen)

    def add(self, digest: bytes) -> None:
        self._expire()
        self._seen[digest] = self._clock() + self._ttl
        self._seen.move_to_end(digest)
        while len(self._seen) > self._max_entries:
            self._seen.popitem(last=False)

    async def claim(self, digest: bytes, lease: float) -> str:
        if digest in self:
            return "done"
        if digest in self._running:
            return "running"
        self._running[digest] = asyncio.get_running_loop().create_future()
        return "claimed"

    async def outcome(self, digest: bytes, timeout: float) -> bool:
        first = self._running.get(digest)
        if first is None:
            return digest in self
        try:
            return await asyncio.wait_for(asyncio.shield(first), max(timeout, 0.0))
        except asyncio.TimeoutError:
            return False

    async def finish(self, digest: bytes) -> None:
        self.add(digest)
        self._end(digest, True)

    async def release(self, digest: bytes) -> None:
        self._end(digest, False)

    def _end(self, digest: bytes, handled: bool) -> None:
        first = self._running.pop(digest, None)
        if first is not None:
            _settle(first, handled)

    async def seen(self, digest: bytes) -> bool:
        return digest in self

    async def aclose(self) -> None:
        return None

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
