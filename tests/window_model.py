"""An exact model of a strict sliding-window server, and a driver that runs a budget against it.

The server counts a request when it arrives, somewhere between its send and its answer, and
answers with the ``X-RateLimit-Remaining`` of that moment, computed from the exact sliding
window: the client's requests and those of other programs sharing the OAuth client.

The driver sends greedily (every request as soon as the budget admits it, up to a concurrency)
and records, at each arrival, how many requests the budget could have known were in the
server's window: its own, and the other programs' requests that some answer already reported
when it admitted this one (those that arrived before a request whose answer had come). A sound
budget keeps that count at the limit or under.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from getbill_async import Budget, BudgetExhaustedError, Outcome, Slot

# Events at one instant: arrivals first (the server counts), then answers, then admissions.
ARRIVE, ANSWER, TRY = 0, 1, 2


@dataclass(frozen=True)
class Trip:
    """One request's trip: ``latency`` seconds from send to answer; it reaches the server
    ``reach`` (0 to 1) of the way."""

    latency: float
    reach: float


@dataclass
class Run:
    """What happened: per arrival of ours, the known count in the server's window."""

    limit: int
    window: float
    others: Sequence[float]
    known: list[int] = field(default_factory=list)
    counted: list[int] = field(default_factory=list)  # the server's whole count, per arrival
    ours: list[float] = field(default_factory=list)  # our arrivals
    sent: int = 0

    def in_window(self, times: Sequence[float], at: float) -> int:
        return sum(1 for t in times if at - self.window < t <= at)


@dataclass
class _Flight:
    slot: Slot
    revealed: float  # other programs' requests up to here were reported before this was sent
    arrived: float = 0.0
    remaining: int = 0
    refused: bool = False


class _Driver:
    def __init__(
        self,
        budget: Budget,
        run: Run,
        now: Callable[[], float],
        advance_to: Callable[[float], Awaitable[None]],
    ) -> None:
        self.budget, self.run, self.now, self.advance_to = budget, run, now, advance_to
        self.events: list[tuple[float, int, int, int]] = []
        self.flights: dict[int, _Flight] = {}
        self.ids = itertools.count()
        self.revealed = -float("inf")  # the latest arrival whose answer came

    def at(self, time: float, kind: int, flight: int = -1) -> None:
        heapq.heappush(self.events, (time, kind, next(self.ids), flight))

    async def admit(self, trips: list[Trip], concurrency: int) -> None:
        while trips and len(self.flights) < concurrency:
            try:
                slot = await self.budget.acquire("read", max_wait=0.0)
            except BudgetExhaustedError:
                status = (await self.budget.status()).reads
                if status.next_slot_in > 0:
                    self.at(self.now() + status.next_slot_in, TRY)
                return
            trip, sent = trips.pop(0), self.now()
            key = next(self.ids)
            self.flights[key] = _Flight(slot, self.revealed)
            self.at(sent + trip.latency * trip.reach, ARRIVE, key)
            self.at(sent + trip.latency, ANSWER, key)
            self.run.sent += 1

    def arrive(self, key: int, at: float) -> None:
        run, flight = self.run, self.flights[key]
        run.ours.append(at)
        mine = run.in_window(run.ours, at)
        others = run.in_window(run.others, at)
        known = run.in_window([t for t in run.others if t <= flight.revealed], at)
        run.counted.append(mine + others)
        run.known.append(mine + known)
        flight.remaining = max(0, run.limit - mine - others)
        flight.refused = mine + others > run.limit
        flight.arrived = at  # this answer reports the server's window at this arrival

    async def answer(self, key: int) -> None:
        flight = self.flights.pop(key)
        self.revealed = max(self.revealed, flight.arrived)
        headers = {
            "X-RateLimit-Limit": str(self.run.limit),
            "X-RateLimit-Remaining": str(flight.remaining),
        }
        status = 429 if flight.refused else 200
        retry = self.run.window / self.run.limit if flight.refused else None
        await self.budget.release(flight.slot, Outcome(status, headers, retry_after=retry))


async def drive(
    budget: Budget,
    run: Run,
    trips: Sequence[Trip],
    concurrency: int,
    clock: tuple[Callable[[], float], Callable[[float], Awaitable[None]]],
) -> Run:
    """Send ``trips`` through ``budget`` to the model server; ``clock``: now, and advance to."""
    driver = _Driver(budget, run, *clock)
    waiting = list(trips)
    driver.at(driver.now(), TRY)
    while driver.events:
        time, kind, _, key = heapq.heappop(driver.events)
        if kind == TRY and not waiting:
            continue  # all sent: no need to wait for it
        if time > driver.now():
            await driver.advance_to(time)
        if kind == ARRIVE:
            driver.arrive(key, time)
        elif kind == ANSWER:
            await driver.answer(key)
            driver.at(driver.now(), TRY)
        else:
            await driver.admit(waiting, concurrency)
    return run
