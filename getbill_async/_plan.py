"""How long a job will take, before it starts: export and bulk-log plans.

A plan costs one read: a ``limit=1`` probe of ``GET /followups`` (with the export's filters),
whose answer carries the total and the ``X-RateLimit-*`` headers (the budget takes them in)
and whose round trip times the network. The job is then simulated request by request: each
request takes a budget slot (slots free a window after they were taken; the ones already
used in the window are assumed spread over it, the probe's own freeing last) and one of
``concurrency`` connections, for one round trip plus the client's CPU per item. The plan is
an estimate: a budget shared with other programs, or followups arriving meanwhile, move it.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._budget import ClassStatus
from ._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT
from ._validate import fail, list_params

if TYPE_CHECKING:
    from ._client import GetBillClient

__all__ = ["ExportPlan", "plan_export", "plan_writes", "simulate"]

# The client's CPU per item on a page (decode, checks, writing): benchmarks/export_cpu.py
# measures 5-9 us on a small machine; the rounder figure keeps a fast network's plan honest.
CPU_PER_ITEM = 10e-6


@dataclass(frozen=True)
class ExportPlan:
    """What a job will cost: ``items``, ``requests``, the ``reads_left`` (writes, for a log
    plan) in the budget's window now, the estimated wall ``seconds``, and whether the budget,
    not the network, sets the pace (``budget_bound``)."""

    items: int
    requests: int
    reads_left: int
    seconds: float
    budget_bound: bool

    def describe(self, what: str = "export") -> str:
        pace = "budget-bound" if self.budget_bound else "network-bound"
        return (
            f"{what} plan: {self.items:,} items in {self.requests:,} requests; "
            f"{self.reads_left:,} left in the budget's window now; "
            f"about {_duration(self.seconds)} ({pace})"
        )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def simulate(
    requests: int,
    budget: ClassStatus,
    concurrency: int,
    seconds_each: float,
    probe_age: float | None,
) -> float:
    """Wall seconds for ``requests`` requests under ``budget``, ``concurrency`` at a time
    after the first (which goes alone). ``probe_age``: how long ago the probe took one of
    the used slots (None: the probe was of another class)."""
    if requests <= 0:
        return 0.0
    limit, window = budget.limit, budget.window
    used = max(0, limit - budget.remaining)
    # Slots taken before: the probe's frees last (a window after it was sent); any others
    # (other programs, earlier jobs) are taken to be spread evenly over the window.
    slots = [0.0] * (limit - used)
    others = used if probe_age is None else max(0, used - 1)
    slots += [window * (i + 1) / (others + 1) for i in range(others)]
    if used > others and probe_age is not None:
        slots.append(max(0.0, window - probe_age))
    heapq.heapify(slots)
    wait = max(budget.next_slot_in, budget.blocked_for)
    workers = [wait] * concurrency
    end = 0.0
    for number in range(requests):
        start = max(heapq.heappop(slots), heapq.heappop(workers))
        finish = start + seconds_each
        heapq.heappush(slots, start + window)
        heapq.heappush(workers, finish)
        if number == 0:  # the first goes alone (page 1 says how many pages there are)
            workers = [finish] * concurrency
        end = max(end, finish)
    return end


async def plan_export(
    client: GetBillClient,
    *,
    limit: int = DEFAULT_PAGE_LIMIT,
    concurrency: int = DEFAULT_CONCURRENCY,
    **filters: Any,
) -> ExportPlan:
    """The plan of ``client.followups.export(**filters)``: costs one read, a ``limit=1`` probe
    whose answer gives the total and the ``X-RateLimit-*`` headers. See the module docstring."""
    list_params(page=1, limit=limit, **filters)  # the export's own checks, before any request
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise fail("concurrency", f"must be an integer >= 1, got {concurrency!r}")
    started = time.monotonic()
    probe = await client.followups.list(page=1, limit=1, **filters)
    rtt = time.monotonic() - started
    items = probe.pagination.total
    requests = max(1, math.ceil(items / limit))
    reads = (await client.budget_status()).reads
    per_page = rtt + min(limit, max(items, 1)) * CPU_PER_ITEM
    # A walk keeps concurrency - 1 pages in flight while its consumer holds one.
    in_flight = max(1, concurrency - 1)
    seconds = simulate(requests, reads, in_flight, per_page, time.monotonic() - started)
    return ExportPlan(
        items=items,
        requests=requests,
        reads_left=reads.remaining,
        seconds=seconds,
        budget_bound=requests > reads.remaining,
    )


async def plan_writes(client: GetBillClient, writes: int, concurrency: int) -> ExportPlan:
    """The plan of ``writes`` creates, ``concurrency`` at a time: one read, a ``limit=1``
    probe that times the network and brings the server's headers; no write is sent."""
    started = time.monotonic()
    await client.followups.list(page=1, limit=1)
    rtt = time.monotonic() - started
    status = (await client.budget_status()).writes
    seconds = simulate(writes, status, concurrency, rtt, None)
    return ExportPlan(
        items=writes,
        requests=writes,
        reads_left=status.remaining,
        seconds=seconds,
        budget_bound=writes > status.remaining,
    )
