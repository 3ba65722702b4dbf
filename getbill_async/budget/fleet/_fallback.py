"""``RedisBudget``'s fallback: a local share of the budget while Redis cannot be reached.

Each worker that falls back keeps ``1 / expected_workers`` of each limit in a ``LocalBudget``
(cold at first, like any fresh one), and believes only its share of what the server's headers
say is left, as every worker that fell back reads the same ``X-RateLimit-Remaining``. Every
``retry`` seconds one request (one, not every queued one) tries Redis again; the others go on
locally meanwhile.

The local ledger knows what this worker spent, the shared one does not: a worker that rejoins
Redis while its local slots still count at the server would let the fleet overrun the window.
So the fallback remembers when each local answer came (``spent``), and the budget brings the
slots still within a window into the shared ledger as it rejoins (``take_spent``); a local
request still in flight then is brought in when it answers.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from ..._constants import LOGGER_NAME
from .. import Kind, LocalBudget, Outcome, RateLimit, parse_headers

__all__ = ["Fallback"]

log = logging.getLogger(LOGGER_NAME)


class Fallback:
    """One budget's local share, when to try Redis again, and what was spent meanwhile."""

    __slots__ = ("local", "workers", "retry", "_until", "_probing", "_spent")

    def __init__(self, rate: RateLimit, workers: int, retry: float) -> None:
        self.local = LocalBudget(
            RateLimit(
                reads=max(1, rate.reads // workers),
                writes=max(1, rate.writes // workers),
                window=rate.window,
                max_wait=rate.max_wait,
                pace=rate.pace,
                reserve=rate.reserve,
            )
        )
        self.workers = workers
        self.retry = retry
        self._until: float | None = None  # monotonic end of the fallback, None: shared
        self._probing = False
        self._spent: dict[Kind, deque[float]] = {"read": deque(), "write": deque()}

    def shared(self) -> bool:
        """Whether the budget is on Redis (never fell back, or rejoined)."""
        return self._until is None

    def spent(self, kind: Kind, window: float) -> None:
        """A local request of ``kind`` was answered now: it counts at the server a window."""
        now = time.monotonic()
        spent = self._spent[kind]
        while spent and spent[0] <= now - window:
            spent.popleft()
        spent.append(now)

    def take_spent(self, kind: Kind, window: float) -> list[float]:
        """Seconds until each local slot of ``kind`` frees (those still counted), forgotten."""
        now = time.monotonic()
        left = [at + window - now for at in self._spent[kind] if at + window > now]
        self._spent[kind].clear()
        return left

    def keep_spent(self, kind: Kind, left: list[float], window: float) -> None:
        """Put back what ``take_spent`` gave, when it could not reach Redis."""
        now = time.monotonic()
        self._spent[kind].extendleft(reversed([now + s - window for s in left]))

    def active(self) -> bool:
        """Whether a request now goes to the local share: within the fallback, or while
        another request tries Redis again."""
        until = self._until
        return until is not None and (self._probing or time.monotonic() < until)

    def start_probe(self) -> bool:
        """Called when ``active()`` is false: True when this request is the one that tries
        Redis again after a fallback (then call ``end_probe``)."""
        self._probing = self._until is not None
        return self._probing

    def end_probe(self, answered: bool, where: str) -> None:
        self._probing = False
        if answered:
            log.warning("%s answers again: back to the shared budget", where)
            self._until = None

    def begin(self, reason: object) -> None:
        """Redis failed: go local for ``retry`` seconds (a WARNING the first time)."""
        if self._until is None:
            log.warning(
                "%s; falling back to a local budget of 1/%d of the limits (%r) and trying "
                "Redis again every %gs",
                reason,
                self.workers,
                self.local,
                self.retry,
            )
        self._until = time.monotonic() + self.retry

    def fair_share(self, outcome: Outcome) -> Outcome:
        """The outcome as this worker should believe it: its share of what is left."""
        remaining = parse_headers(outcome.headers)[1]
        if remaining is None or outcome.headers is None or self.workers == 1:
            return outcome
        headers = {**outcome.headers, "X-RateLimit-Remaining": str(remaining // self.workers)}
        return Outcome(outcome.status, headers, outcome.retry_after, outcome.sent)
