"""One class's sliding-window ledger in this process: the engine behind ``LocalBudget``.

It keeps when each of the last ``limit`` counted slots frees, plus the requests in flight, and
admits a request only while fewer than its lane's cap are taken (the whole limit for
interactive requests, ``limit x (1 - reserve)`` for bulk ones). Two rules guard the edges:

- cold start: until an answer has told what the server counts, one request at a time, so a
  process started mid-window, after another program spent most of it, learns that from its
  first answer instead of from a burst of 429s;
- order: waiting interactive requests go ahead of waiting bulk ones; within a lane, first come
  first served (an ``asyncio.Lock`` per lane is FIFO).

Those locks and the change event belong to the event loop that first waits on them. Used from
another loop (once the first is closed: ``asyncio.run`` per task) or in a child after
``fork()``, the ledger makes them again; in a child, the parent's requests in flight count as
answered at the fork (their slots free a window later). Waiters on a loop that is still open
elsewhere make that an ``EventLoopError``: one ledger serves one loop at a time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping

from aiolimiter import AsyncLimiter

from .._constants import LOGGER_NAME
from ..errors import BudgetExhaustedError, EventLoopError
from ..support import Home, forks, home
from ._others import Readings
from ._types import (
    LANES,
    ClassStatus,
    Clock,
    Kind,
    Lane,
    Outcome,
    RateLimit,
    bulk_cap,
    ends_cold_start,
    parse_headers,
)

__all__ = ["Ledger"]

#: Who holds the slots that the server's counts revealed: other programs (see ``_others``).
_OTHER = "other"
log = logging.getLogger(LOGGER_NAME)


class Ledger:
    """One class's sliding window: when each counted slot frees, plus those in flight."""

    __slots__ = (
        "kind",
        "limit",
        "window",
        "max_wait",
        "reserve",
        "_clock",
        "_frees",
        "_takers",
        "_readings",
        "_flying",
        "_blocked_until",
        "_locks",
        "_changed",
        "_pacer",
        "_queued",
        "_cold",
        "_warned",
        "_home",
    )

    def __init__(self, kind: Kind, rate: RateLimit, clock: Clock) -> None:
        self.kind = kind
        self.limit = rate.limit(kind)
        self.window = float(rate.window)
        self.max_wait = rate.max_wait
        self.reserve = float(rate.reserve)
        self._clock = clock
        self._frees: deque[float] = deque()  # ascending: answers arrive in time order
        self._takers: deque[str] = deque()  # the lane of each counted slot
        self._readings = Readings()  # what the server's counts say of other programs
        self._flying: dict[Lane, int] = dict.fromkeys(LANES, 0)
        self._blocked_until = 0.0
        self._locks = {lane: asyncio.Lock() for lane in LANES}
        self._changed = asyncio.Event()
        self._pacer = AsyncLimiter(1, self.window / self.limit) if rate.pace else None
        self._queued: dict[str, int] = dict.fromkeys(LANES, 0)  # tasks in the slow path
        self._cold = True
        self._warned: set[str] = set()  # headers already warned about as out of range
        self._home: Home = (forks(), None)  # where the locks, event and pacer belong

    def in_flight(self) -> int:
        return self._flying["interactive"] + self._flying["bulk"]

    def cap(self, lane: Lane) -> int:
        return self.limit if lane == "interactive" else bulk_cap(self.limit, self.reserve)

    def _expire(self, now: float) -> None:
        frees = self._frees
        if frees and frees[0] <= now:
            takers = self._takers
            while frees and frees[0] <= now:
                frees.popleft()
                takers.popleft()
            self._readings.forget(now - 2 * self.window)

    def wait_time(self, now: float, lane: Lane = "interactive") -> float | None:
        """Seconds until ``lane`` may take a slot (0: now). ``None``: only an answer can free
        one: in the cold start the first answer; otherwise a window after some answer."""
        self._expire(now)
        flying = self._flying["interactive"] + self._flying["bulk"]
        if self._cold and flying:
            return None
        blocked = max(0.0, self._blocked_until - now)
        cap = self.limit if lane == "interactive" else bulk_cap(self.limit, self.reserve)
        steps = self._readings.steps(now) if self._readings else []
        others = max((n for _, n in steps), default=0)
        excess = len(self._frees) + flying + others - cap
        if excess < 0:
            return blocked
        if not others and excess < len(self._frees):
            return max(blocked, self._frees[excess] - now)
        if flying >= cap:
            return None
        return max(blocked, self._first_room(steps, cap - flying) - now)

    def _first_room(self, steps: list[tuple[float, int]], room: int) -> float:
        """When our counted slots plus the other programs' bound first drop under ``room``
        (both only fall as time passes; answers may make it sooner)."""
        frees = list(self._frees)
        for at in sorted({*frees, *(frees_at for frees_at, _ in steps)}):
            others = max((n for frees_at, n in steps if frees_at > at), default=0)
            if len(frees) - bisect_right(frees, at) + others < room:
                return at
        raise AssertionError("nothing is counted after the last time")  # pragma: no cover

    async def acquire(self, lane: Lane, max_wait: float | None) -> float:
        queued = self._queued
        ahead = queued["interactive"] + (queued["bulk"] if lane == "bulk" else 0)
        if not ahead and self._pacer is None and self.wait_time(self._clock.now(), lane) == 0.0:
            # Nobody ahead and a slot free: take it now. Nothing is awaited between the check
            # and the count, so no other task can come in between.
            self._flying[lane] += 1
            return 0.0
        here = home()
        if here != self._home:
            self._move(here)
            queued = self._queued
        queued[lane] += 1
        try:
            if max_wait is None:
                max_wait = self.max_wait
            return await self._acquire_in_turn(lane, max_wait)
        finally:
            queued[lane] -= 1
            if lane == "interactive" and not queued[lane]:
                self._notify()  # waiting bulk requests let interactive ones pass: look again

    def _move(self, here: Home) -> None:
        """Make the loop-bound parts again for ``here`` (another loop, or a child process)."""
        born, loop = self._home
        waiting = self._queued["interactive"] + self._queued["bulk"]
        if here[0] == born and loop is not None and not loop.is_closed() and waiting:
            raise EventLoopError(
                f"the {self.kind} budget has requests waiting on another event loop, which is "
                "still open: one budget serves one loop at a time. Give each loop its own "
                "client and budget, or share one getbill_async.sync.GetBillClient between threads"
            )
        if here[0] != born:
            # The parent's requests in flight: their answers come to the parent, so count
            # them as answered now (the server may count them for a window from now).
            now = self._clock.now()
            for lane in LANES:
                for _ in range(self._flying[lane]):
                    self._take(now, lane)
                self._flying[lane] = 0
        self._queued = dict.fromkeys(LANES, 0)
        self._locks = {lane: asyncio.Lock() for lane in LANES}
        self._changed = asyncio.Event()
        if self._pacer is not None:
            self._pacer = AsyncLimiter(1, self.window / self.limit)
        self._home = here

    async def _acquire_in_turn(self, lane: Lane, max_wait: float | None) -> float:
        clock = self._clock
        start = clock.now()
        async with self._locks[lane]:
            while True:
                now = clock.now()
                wait = self.wait_time(now, lane)
                behind = lane == "bulk" and self._queued["interactive"] > 0
                if wait == 0.0 and not behind:
                    break
                timeout = self._sleep_bound(wait, now - start, max_wait)
                if log.isEnabledFor(logging.DEBUG):
                    shown = f"{wait:.3f}s" if wait is not None else "an answer in flight"
                    log.debug("%s budget (%s): waiting %s for a slot", self.kind, lane, shown)
                await self._wait_for_change(None if behind and wait == 0.0 else timeout)
            self._flying[lane] += 1
            if self._pacer is not None:
                try:
                    await self._pacer.acquire()
                except BaseException:
                    # Cancelled while paced: nothing was sent, so the slot is not kept.
                    self._flying[lane] -= 1
                    self._notify()
                    raise
        return clock.now() - start

    def _sleep_bound(
        self, wait: float | None, waited: float, max_wait: float | None
    ) -> float | None:
        """How long to sleep before looking again; raises when ``max_wait`` cannot be met."""
        capped = max_wait is not None and not math.isinf(max_wait)
        if wait is None and self._cold:
            # The first answer is a round trip away, not a window: wait for it, within max_wait.
            if not capped:
                return None
            assert max_wait is not None
            if waited >= max_wait:
                raise BudgetExhaustedError(self.kind, 0.0, max_wait, cold=True)
            return max_wait - waited
        if capped:
            assert max_wait is not None
            estimate = self.window if wait is None else wait
            if waited + estimate > max_wait:
                raise BudgetExhaustedError(self.kind, estimate, max_wait)
        return wait

    async def _wait_for_change(self, timeout: float | None) -> None:
        """Sleep until ``timeout`` passes or a slot is handed back, whichever is first."""
        changed = self._changed
        if timeout is None:
            await changed.wait()
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(timeout))
        waker = asyncio.ensure_future(changed.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _notify(self) -> None:
        if self._queued["interactive"] or self._queued["bulk"]:  # only they wait for a change
            self._changed.set()
            self._changed = asyncio.Event()

    def complete(self, outcome: Outcome, taken_at: float, lane: Lane) -> None:
        now = self._clock.now()
        self._flying[lane] -= 1
        self._take(now, lane)
        if outcome.status is not None:
            self._readings.answered(taken_at)  # an answer: the server counted it at arrival
        if self._cold and ends_cold_start(outcome):
            self._cold = False
        if outcome.status == 429:
            self._on_429(now, outcome)
        # A 429's headers count too: its Remaining (0) says the window is full of requests
        # that may be brand new, not only that the oldest frees after ``retry_after``.
        self._believe_server(now, outcome.headers, taken_at, refused=outcome.status == 429)
        self._notify()

    def _take(self, now: float, taker: str) -> None:
        frees = self._frees
        free_at = now + self.window
        if frees and free_at < frees[-1]:
            free_at = frees[-1]  # a grown window: keep the order, err on the safe side
        frees.append(free_at)
        self._takers.append(taker)

    def _learn_rules(self, now: float, limit: int | None, window: float | None) -> None:
        if limit is not None and 0 < limit < self.limit:
            self.limit = limit  # the plan is smaller than configured
        if window is None or window == self.window:
            return
        if window < self.window:
            # The server's latest word, not its largest: a window once misread (2000 meant as
            # milliseconds) must not hold slots for hours once the server says 2. Every slot
            # counted so far was taken by now, so it frees by ``now + window`` at the latest
            # (a bound that keeps the order, and never frees one before the server does).
            latest = now + window
            self._frees = deque(min(free_at, latest) for free_at in self._frees)
            self._readings.shorten(latest)
        self.window = window  # a longer one holds the slots counted from now on

    def _parse(
        self, headers: Mapping[str, str] | None
    ) -> tuple[int | None, int | None, float | None]:
        return parse_headers(headers, warned=self._warned, wall=self._clock.wall())

    def _believe_server(
        self, now: float, headers: Mapping[str, str] | None, taken_at: float, *, refused: bool
    ) -> None:
        limit, remaining, window = self._parse(headers)
        self._learn_rules(now, limit, window)
        if remaining is None:
            return
        # The server's count at this request's arrival; what of it may be other programs'
        # requests (which may be brand new) is bounded in ``_others``, not guessed here.
        counted = self.limit - remaining
        if refused and remaining == 0:
            # A refusal for a full window: the limit at least, and this one on top. How many
            # more, the headers cannot say (Remaining stops at 0).
            counted = max(counted, self.limit + 1)
        self._readings.read(now, taken_at, counted, self.window)
        if log.isEnabledFor(logging.DEBUG):
            others = self._readings.bound(now)
            if others:
                log.debug("%s budget: up to %d requests of other programs", self.kind, others)

    def _on_429(self, now: float, outcome: Outcome) -> None:
        limit, _, window = self._parse(outcome.headers)
        self._learn_rules(now, limit, window)
        wait = outcome.retry_after
        if wait is None:
            wait = self.window / self.limit
        self._blocked_until = max(self._blocked_until, now + wait)
        log.debug("%s budget: server asked for a %.3fs pause (429)", self.kind, wait)

    def cancel(self, lane: Lane) -> None:
        """A slot given back unused (never sent): it did not reach the server."""
        self._flying[lane] -= 1
        self._notify()

    def status(self, now: float) -> ClassStatus:
        wait = self.wait_time(now)
        others = self._readings.bound(now)
        used = len(self._frees) + others
        flying = self.in_flight()
        lanes: dict[str, int] = {lane: self._flying[lane] for lane in LANES}
        lanes[_OTHER] = others
        for taker in self._takers:
            lanes[taker] += 1
        return ClassStatus(
            limit=self.limit,
            window=self.window,
            used=used,
            in_flight=flying,
            remaining=max(0, self.limit - used - flying),
            next_slot_in=(0.0 if self._cold else self.window) if wait is None else wait,
            blocked_for=max(0.0, self._blocked_until - now),
            cold=self._cold,
            reserved=self.limit - self.cap("bulk"),
            lanes=lanes,
        )
