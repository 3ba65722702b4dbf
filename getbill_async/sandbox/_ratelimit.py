"""Per-client sliding windows, the way the docs describe GetBill's rate limits.

A request is admitted when fewer than `limit` admitted requests arrived in the last `window`
seconds. Only admitted requests take a slot: a request answered 429 does not, so a client that
keeps retrying while limited does not push its own recovery further away. Times are floats from
an injected monotonic clock, so tests can use tiny windows or a fake clock.

    limiter = RateLimiter(reads=1000, writes=500, window=3600.0)
    slot = limiter.window("client-id", "read")
    if slot.admit():
        ...
    headers = slot.headers()
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["RateLimiter", "SlidingWindow"]

Clock = Callable[[], float]


class SlidingWindow:
    """The admitted arrivals of one client and one class (read or write)."""

    __slots__ = ("limit", "window", "_clock", "_wall", "_live", "_history")

    def __init__(self, limit: int, window: float, *, clock: Clock, wall: Clock = time.time) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._wall = wall
        self._live: deque[float] = deque()  # admitted arrivals still inside the window
        self._history = array("d")  # every admitted arrival, for tests and reports

    def _expire(self, now: float) -> None:
        # An arrival at `t` holds its slot while now - t < window, and frees it at t + window.
        live, edge = self._live, now - self.window
        while live and live[0] <= edge:
            live.popleft()

    def admit(self) -> bool:
        """Take a slot now if one is free; a refused request takes nothing."""
        now = self._clock()
        self._expire(now)
        if len(self._live) >= self.limit:
            return False
        self._live.append(now)
        self._history.append(now)
        return True

    def remaining(self) -> int:
        self._expire(self._clock())
        return max(0, self.limit - len(self._live))

    def seconds_until_free(self) -> float:
        """Seconds until the oldest held slot frees (0.0 when none is held)."""
        now = self._clock()
        self._expire(now)
        if not self._live:
            return 0.0
        return max(0.0, self._live[0] + self.window - now)

    def retry_after(self) -> float:
        """What a 429 tells to wait: rounded up to 1 ms for short windows, else to whole
        seconds (then an int, so the JSON reads `"retry_after": 57`)."""
        wait = self.seconds_until_free()
        if self.window < 60:
            return math.ceil(wait * 1000) / 1000
        return math.ceil(wait)

    def headers(self) -> dict[str, str]:
        wait = self.seconds_until_free()
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining()),
            # Rounded up: a client that waits until this Unix second finds the slot free.
            "X-RateLimit-Reset": str(math.ceil(self._wall() + wait)),
            "X-RateLimit-Window": str(math.ceil(self.window)),
        }

    def reset_time(self, wait: float) -> str:
        """ISO 8601 UTC of `wait` seconds from now."""
        moment = datetime.fromtimestamp(self._wall() + wait, timezone.utc)
        return moment.isoformat(timespec="milliseconds")

    def arrivals(self) -> list[float]:
        return self._history.tolist()


class RateLimiter:
    """One read window and one write window per OAuth client, created on first use."""

    __slots__ = ("reads", "writes", "window_seconds", "_clock", "_windows")

    def __init__(
        self, *, reads: int, writes: int, window: float, clock: Clock = time.monotonic
    ) -> None:
        if reads < 1 or writes < 1 or window <= 0:
            raise ValueError("reads and writes must be >= 1 and window > 0")
        self.reads = reads
        self.writes = writes
        self.window_seconds = window
        self._clock = clock
        self._windows: dict[tuple[str, str], SlidingWindow] = {}

    def window(self, client: str, cls: str) -> SlidingWindow:
        key = (client, cls)
        found = self._windows.get(key)
        if found is None:
            limit = self.reads if cls == "read" else self.writes
            found = SlidingWindow(limit, self.window_seconds, clock=self._clock)
            self._windows[key] = found
        return found
