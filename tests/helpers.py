"""Test helpers: a fake clock for the budget, and window counting."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Sequence


class FakeClock:
    """A clock the test moves by hand; ``sleep`` returns when the clock has passed its end."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._ids), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on, waking every sleeper whose end has come, and let tasks run."""
        self.t += seconds
        while self._sleepers and self._sleepers[0][0] <= self.t:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until things are quiet."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most of ``times`` that fall in any half-open window of ``window`` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
