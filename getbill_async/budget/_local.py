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

from ._ledger import Ledger
from ._types import (
    BudgetStatus,
    Clock,
    Kind,
    Lane,
    MonotonicClock,
    Outcome,
    RateLimit,
    Slot,
    check_lane,
)

__all__ = ["LocalBudget"]


class LocalBudget:
    """The default budget: an exact sliding-window ledger per class, in this process.

    Shared by every task of one client: waiting interactive requests first, then bulk ones,
    each lane first come first served. Until an answer shows what the server counts (other
    programs may share the OAuth client), requests of a class go one at a time. Pass the same
    instance to several clients in one process to make them share it.

    Args:
        rate_limit: the limits (the API's own by default).
        clock: the clock (tests pass a fake one).
    """

    __slots__ = ("rate_limit", "_clock", "_ledgers")

    def __init__(self, rate_limit: RateLimit | None = None, *, clock: Clock | None = None) -> None:
        self.rate_limit = rate_limit or RateLimit()
        self._clock: Clock = clock or MonotonicClock()
        self._ledgers = {
            "read": Ledger("read", self.rate_limit, self._clock),
            "write": Ledger("write", self.rate_limit, self._clock),
        }

    async def acquire(
        self, kind: Kind, *, lane: Lane = "interactive", max_wait: float | None = None
    ) -> Slot:
        """A slot for one request of ``kind`` (see ``Budget.acquire``).

        Args:
            kind: ``read`` or ``write``.
            lane: ``interactive`` or ``bulk``.
            max_wait: the longest wait in seconds (``None`` or ``math.inf``: no cap).

        Returns:
            The slot.

        Raises:
            BudgetExhaustedError: the wait would pass ``max_wait``.
        """
        check_lane(lane)
        waited = await self._ledgers[kind].acquire(lane, max_wait)
        return Slot(kind, waited, taken_at=self._clock.now(), lane=lane)

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        """Hand ``slot`` back with its request's outcome (see ``Budget.release``).

        Args:
            slot: the slot ``acquire`` gave.
            outcome: what came of the request.
        """
        ledger = self._ledgers[slot.kind]
        if outcome.sent:
            ledger.complete(outcome, slot.taken_at, slot.lane)
        else:
            ledger.cancel(slot.lane)

    def snapshot(self) -> BudgetStatus:
        """``status()`` without awaiting: a local budget knows at once."""
        now = self._clock.now()
        return BudgetStatus(self._ledgers["read"].status(now), self._ledgers["write"].status(now))

    async def status(self) -> BudgetStatus:
        """What each class has used, has left and waits for (see ``Budget.status``)."""
        return self.snapshot()

    def __repr__(self) -> str:
        r = self.rate_limit
        reserve = f", reserve={r.reserve:g}" if r.reserve else ""
        return f"LocalBudget(reads={r.reads}, writes={r.writes}, window={r.window:g}{reserve})"
