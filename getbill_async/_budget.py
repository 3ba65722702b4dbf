"""The rate budget: never more requests in any sliding window than the server allows.

GetBill counts requests per OAuth client in a sliding window (1,000 reads and 500 writes an
hour). A token bucket such as ``AsyncLimiter(1000, 3600)`` lets up to 2,000 requests into one
window; this ledger mirrors the server's rule instead: it keeps when each of the last ``limit``
slots frees and admits a request only while fewer than ``limit`` are taken.

A request reaches the server at some moment between its send and its answer, so a slot is
counted from the *answer* (or the give-up): however latency varies, no window the server can
draw holds ``limit + 1`` of our arrivals. Requests still in flight hold a slot too.

    budget = LocalBudget(RateLimit(reads=1000, writes=500))
    slot = await budget.acquire("read")
    ...send...
    await budget.release(slot, Outcome(status=200, headers=answer.headers))
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from aiolimiter import AsyncLimiter

from ._constants import DEFAULT_READS, DEFAULT_WINDOW, DEFAULT_WRITES, LOGGER_NAME
from .errors import BudgetExhaustedError

__all__ = [
    "Budget",
    "BudgetStatus",
    "ClassStatus",
    "Clock",
    "Kind",
    "LANES",
    "Lane",
    "LocalBudget",
    "MonotonicClock",
    "Outcome",
    "RateLimit",
    "Slot",
]

Kind = Literal["read", "write"]
#: Who is asking: a person waiting on an answer, or a bulk job (walks, exports, create_many).
#: Waiting interactive requests go ahead of waiting bulk ones, and ``RateLimit.reserve`` keeps a
#: share of every window that bulk work may not take.
Lane = Literal["interactive", "bulk"]
LANES: tuple[Lane, ...] = ("interactive", "bulk")
#: How long freed slots are remembered for comparing with the server's count: longer than any
#: one request takes from its slot to its answer (timeouts are far shorter). Forgetting one
#: sooner would only make the ledger count a slot twice for a window: safe, never over.
_FREED_HORIZON = 900.0
log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class RateLimit:
    """The budget a client keeps: ``reads`` and ``writes`` per sliding ``window`` seconds.

    ``max_wait``: a request that would wait longer than this for a slot raises
    ``BudgetExhaustedError`` at once (``None``: wait as long as it takes, for batch work).
    ``pace``: spread requests evenly (one per ``window / limit`` seconds) instead of letting a
    burst through; off by default, see the README for the measurements behind that choice.
    """

    reads: int = DEFAULT_READS
    writes: int = DEFAULT_WRITES
    window: float = DEFAULT_WINDOW
    max_wait: float | None = None
    pace: bool = False

    def __post_init__(self) -> None:
        for name in ("reads", "writes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RateLimit.{name} must be an integer >= 1, got {value!r}")
        if not self.window > 0:
            raise ValueError(f"RateLimit.window must be > 0 seconds, got {self.window!r}")
        if self.max_wait is not None and self.max_wait < 0:
            raise ValueError(f"RateLimit.max_wait must be >= 0 or None, got {self.max_wait!r}")

    def limit(self, kind: Kind) -> int:
        return self.reads if kind == "read" else self.writes


class Clock(Protocol):
    """Time as the budget sees it; tests inject a fake one instead of sleeping."""

    def now(self) -> float: ...
    def wall(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Slot:
    """A taken slot: hand it back with ``release`` when the answer came (or the try gave up)."""

    kind: Kind
    waited: float = 0.0
    token: str = ""  # a budget's own handle (the Redis one uses it)
    taken_at: float = 0.0  # on the budget's clock: the request reached the server after it


@dataclass(frozen=True)
class Outcome:
    """What came back: the status (None: no answer), the headers, a 429's wait.

    ``sent=False``: the request never left (no connection, no token), so it holds no slot.
    """

    status: int | None = None
    headers: Mapping[str, str] | None = None
    retry_after: float | None = None
    sent: bool = True


@dataclass(frozen=True)
class ClassStatus:
    limit: int
    window: float
    used: int
    in_flight: int
    remaining: int
    next_slot_in: float  # seconds until a request could be admitted (0: now)
    blocked_for: float  # seconds left of a server-imposed pause (429)


@dataclass(frozen=True)
class BudgetStatus:
    reads: ClassStatus
    writes: ClassStatus


@runtime_checkable
class Budget(Protocol):
    """What the request pipeline needs from a budget.

    ``acquire``'s ``lane`` says who asks (see ``Lane``); ``max_wait``, when given, replaces the
    budget's own ``RateLimit.max_wait`` for this one request (``math.inf``: no cap).
    """

    async def acquire(
        self, kind: Kind, *, lane: Lane = "interactive", max_wait: float | None = None
    ) -> Slot: ...
    async def release(self, slot: Slot, outcome: Outcome) -> None: ...
    async def status(self) -> BudgetStatus: ...


def parse_headers(headers: Mapping[str, str] | None) -> tuple[int | None, int | None, float | None]:
    """``(limit, remaining, window)`` from the ``X-RateLimit-*`` headers, where present."""
    if not headers:
        return None, None, None
    limit, remaining, window = (
        _header_number(headers, "X-RateLimit-Limit"),
        _header_number(headers, "X-RateLimit-Remaining"),
        _header_number(headers, "X-RateLimit-Window"),
    )
    return (
        int(limit) if limit is not None else None,
        int(remaining) if remaining is not None else None,
        window,
    )


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


class _Ledger:
    """One class's sliding window: when each counted slot frees, plus those in flight."""

    __slots__ = (
        "kind",
        "limit",
        "window",
        "max_wait",
        "_clock",
        "_frees",
        "_freed",
        "_in_flight",
        "_blocked_until",
        "_lock",
        "_changed",
        "_pacer",
        "_queued",
    )

    def __init__(self, kind: Kind, rate: RateLimit, clock: Clock) -> None:
        self.kind = kind
        self.limit = rate.limit(kind)
        self.window = float(rate.window)
        self.max_wait = rate.max_wait
        self._clock = clock
        self._frees: deque[float] = deque()  # ascending: answers arrive in time order
        self._freed: deque[float] = deque()  # recently freed, for comparing with the server
        self._in_flight = 0
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()  # FIFO: waiters are admitted in arrival order
        self._changed = asyncio.Event()
        self._pacer = AsyncLimiter(1, self.window / self.limit) if rate.pace else None
        self._queued = 0  # tasks in the slow path: waiting for the lock or holding it

    def _expire(self, now: float) -> None:
        frees = self._frees
        if frees and frees[0] <= now:
            freed = self._freed
            while frees and frees[0] <= now:
                freed.append(frees.popleft())
            horizon = now - _FREED_HORIZON
            while freed and freed[0] <= horizon:
                freed.popleft()

    def wait_time(self, now: float) -> float | None:
        """Seconds until a slot is free (0: now). ``None``: only an answer can free one,
        and then a whole window later, so the window is a lower bound of the wait."""
        self._expire(now)
        blocked = max(0.0, self._blocked_until - now)
        excess = len(self._frees) + self._in_flight - self.limit
        if excess < 0:
            return blocked
        if excess < len(self._frees):
            return max(blocked, self._frees[excess] - now)
        return None

    async def acquire(self, max_wait: float | None = None) -> float:
        clock = self._clock
        if not self._queued and self._pacer is None and self.wait_time(clock.now()) == 0.0:
            # Nobody ahead and a slot free: take it now. Nothing is awaited between the check
            # and the count, so no other task can come in between.
            self._in_flight += 1
            return 0.0
        self._queued += 1
        try:
            return await self._acquire_in_turn(
                clock, self.max_wait if max_wait is None else max_wait
            )
        finally:
            self._queued -= 1

    async def _acquire_in_turn(self, clock: Clock, max_wait: float | None) -> float:
        start = clock.now()
        async with self._lock:
            while True:
                now = clock.now()
                wait = self.wait_time(now)
                if wait == 0.0:
                    break
                self._check_max_wait(wait, now - start, max_wait)
                if log.isEnabledFor(logging.DEBUG):
                    shown = f"{wait:.3f}s" if wait is not None else "an answer in flight"
                    log.debug("%s budget full: waiting %s for a slot", self.kind, shown)
                await self._wait_for_change(wait)
            self._in_flight += 1
            if self._pacer is not None:
                await self._pacer.acquire()
        return clock.now() - start

    def _check_max_wait(self, wait: float | None, waited: float, max_wait: float | None) -> None:
        if max_wait is None or math.isinf(max_wait):
            return
        estimate = self.window if wait is None else wait
        if waited + estimate > max_wait:
            raise BudgetExhaustedError(self.kind, estimate, max_wait)

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
        if self._queued:  # only a task in the slow path ever waits for a change
            self._changed.set()
            self._changed = asyncio.Event()

    def complete(self, outcome: Outcome, taken_at: float) -> None:
        now = self._clock.now()
        self._in_flight -= 1
        self._take(now, 1)
        if outcome.status == 429:
            self._on_429(now, outcome)
        else:
            self._believe_server(now, outcome.headers, taken_at)
        self._notify()

    def _take(self, now: float, count: int) -> None:
        free_at = now + self.window
        if self._frees and free_at < self._frees[-1]:
            free_at = self._frees[-1]  # a grown window: keep the order, err on the safe side
        self._frees.extend([free_at] * count)

    def _believe_server(
        self, now: float, headers: Mapping[str, str] | None, taken_at: float
    ) -> None:
        limit, remaining, window = parse_headers(headers)
        if limit is not None and 0 < limit < self.limit:
            self.limit = limit  # the plan is smaller than configured
        if window is not None and window > self.window:
            self.window = window
        if remaining is None:
            return
        self._expire(now)
        # The server counted at this request's arrival, after ``taken_at``: our slots that
        # freed here since then may still have been in its window, so they count as seen.
        seen = len(self._frees) + self._in_flight
        for free_at in reversed(self._freed):
            if free_at <= taken_at:
                break
            seen += 1
        # Slots the server counts and we do not are another program's (or a lost answer's);
        # they may be brand new, so they free a whole window from now, not at X-RateLimit-Reset.
        unseen = (self.limit - remaining) - seen
        if unseen > 0:
            log.debug("%s budget: server counts %d more requests than seen here", self.kind, unseen)
            self._take(now, unseen)

    def _on_429(self, now: float, outcome: Outcome) -> None:
        limit, _, window = parse_headers(outcome.headers)
        if limit is not None and 0 < limit < self.limit:
            self.limit = limit
        if window is not None and window > self.window:
            self.window = window
        wait = outcome.retry_after
        if wait is None:
            wait = self.window / self.limit
        self._blocked_until = max(self._blocked_until, now + wait)
        log.debug("%s budget: server asked for a %.3fs pause (429)", self.kind, wait)

    def cancel(self) -> None:
        """A slot given back unused (never sent): it did not reach the server."""
        self._in_flight -= 1
        self._notify()

    def status(self, now: float) -> ClassStatus:
        wait = self.wait_time(now)
        used = len(self._frees)
        return ClassStatus(
            limit=self.limit,
            window=self.window,
            used=used,
            in_flight=self._in_flight,
            remaining=max(0, self.limit - used - self._in_flight),
            next_slot_in=self.window if wait is None else wait,
            blocked_for=max(0.0, self._blocked_until - now),
        )


class LocalBudget:
    """The default budget: an exact sliding-window ledger per class, in this process.

    Shared by every task of one client, first come first served. Pass the same instance to
    several clients in one process to make them share it.
    """

    __slots__ = ("rate_limit", "_clock", "_ledgers")

    def __init__(self, rate_limit: RateLimit | None = None, *, clock: Clock | None = None) -> None:
        self.rate_limit = rate_limit or RateLimit()
        self._clock: Clock = clock or MonotonicClock()
        self._ledgers = {
            "read": _Ledger("read", self.rate_limit, self._clock),
            "write": _Ledger("write", self.rate_limit, self._clock),
        }

    async def acquire(
        self, kind: Kind, *, lane: Lane = "interactive", max_wait: float | None = None
    ) -> Slot:
        # ``lane`` is accepted now and honoured by the reserve/priority rules (issue: lanes).
        waited = await self._ledgers[kind].acquire(max_wait)
        return Slot(kind, waited, taken_at=self._clock.now())

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        ledger = self._ledgers[slot.kind]
        if outcome.sent:
            ledger.complete(outcome, slot.taken_at)
        else:
            ledger.cancel()

    def snapshot(self) -> BudgetStatus:
        now = self._clock.now()
        return BudgetStatus(self._ledgers["read"].status(now), self._ledgers["write"].status(now))

    async def status(self) -> BudgetStatus:
        return self.snapshot()

    def __repr__(self) -> str:
        r = self.rate_limit
        return f"LocalBudget(reads={r.reads}, writes={r.writes}, window={r.window:g})"
