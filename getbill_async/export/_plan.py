"""How long a job will take, before it starts: export and bulk-log plans.

A plan is a pure estimate from the figures of one read (a ``Probe``): a ``limit=1`` probe of
``GET /followups`` (with the export's filters, made by ``resources.probe_list``), whose answer
carries the total and the ``X-RateLimit-*`` headers (the budget takes them in) and whose round
trip times the network. Each request of the job takes a budget slot (slots free a window
after they were taken; the ones already used in the window are assumed spread over it, the
probe's own freeing last) and one of ``concurrency`` connections, for one round trip plus
the client's CPU per item. The first two windows are worked out request by request, the rest
in closed form (the pace is periodic by then), so a plan of 10^12 items costs what one of
10^4 does. The plan is
an estimate: a budget shared with other programs, or followups arriving meanwhile, move it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT
from ..budget import BudgetStatus, ClassStatus

__all__ = ["ExportPlan", "Probe", "plan_export", "plan_writes", "simulate"]

# The client's CPU per item on a page (decode, checks, writing): benchmarks/export_cpu.py
# measures 5-9 us on a small machine; the rounder figure keeps a fast network's plan honest.
CPU_PER_ITEM = 10e-6


@dataclass(frozen=True)
class ExportPlan:
    """What a job will cost.

    Attributes:
        items: items to move.
        requests: requests needed.
        reads_left: reads (writes, for a log plan) left in the budget's window now.
        seconds: the estimated wall time.
        budget_bound: whether the budget, not the network, sets the pace.
    """

    items: int
    requests: int
    reads_left: int
    seconds: float
    budget_bound: bool

    def describe(self, what: str = "export") -> str:
        """The plan in one line.

        Args:
            what: the job's name in the line (``export``, ``log``).

        Returns:
            ``"<what> plan: N items in R requests; ...; about T (budget-bound)"``.
        """
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


def _initial_slots(budget: ClassStatus, probe_age: float | None) -> list[float]:
    """When each slot of the window is free, in order: the free ones now; the probe's a window
    after it was sent; any other used ones (other programs, earlier jobs) spread evenly over
    the window."""
    limit, window = budget.limit, budget.window
    used = max(0, limit - budget.remaining)
    slots = [0.0] * (limit - used)
    others = used if probe_age is None else max(0, used - 1)
    slots += [window * (i + 1) / (others + 1) for i in range(others)]
    if used > others and probe_age is not None:
        slots.append(max(0.0, window - probe_age))
    return sorted(slots)


def simulate(
    requests: int,
    budget: ClassStatus,
    concurrency: int,
    seconds_each: float,
    probe_age: float | None,
) -> float:
    """Wall seconds for ``requests`` requests under ``budget``, ``concurrency`` at a time
    after the first (which goes alone). ``probe_age``: how long ago the probe took one of
    the used slots (None: the probe was of another class).

    Request k starts when both a slot and a connection are free: its slot is the k-th of the
    window's (``_initial_slots``), then the one request k - limit took, a window later; its
    connection is the one request k - concurrency held, ``seconds_each`` later. The first
    two windows (and connections' worth) are worked out request by request; past them the
    pace is periodic, and the last start is the later of a whole number of windows and a whole
    number of connection rounds after a start already known: O(1) however large the job.

    Args:
        requests: how many requests the job makes.
        budget: the class's budget now (its limit, window, slots left, waits).
        concurrency: requests in flight at once after the first.
        seconds_each: one request's time, from its start to its answer.
        probe_age: seconds since the probe took a slot of this class, or None.

    Returns:
        The estimated seconds from now until the last answer.
    """
    if requests <= 0:
        return 0.0
    limit, window, each = budget.limit, budget.window, seconds_each
    slots = _initial_slots(budget, probe_age)
    known = min(requests, 2 * (limit + concurrency))
    starts: list[float] = []
    for k in range(known):
        slot = slots[k] if k < limit else starts[k - limit] + window
        if k == 0:
            connection = max(budget.next_slot_in, budget.blocked_for)
        else:  # the first goes alone (page 1 says how many pages there are)
            connection = starts[max(0, k - concurrency)] + each
        starts.append(max(slot, connection))
    last = requests - 1
    if last < known:
        return starts[last] + each
    windows = -(-(last - known + 1) // limit)
    rounds = -(-(last - known + 1) // concurrency)
    start = max(
        starts[last - windows * limit] + windows * window,
        starts[last - rounds * concurrency] + rounds * each,
    )
    return start + each


@dataclass(frozen=True)
class Probe:
    """What a ``limit=1`` probe of ``GET /followups`` told.

    Attributes:
        total: the followups under the probe's filters.
        rtt: its round trip, in seconds.
        sent_at: when it was sent (monotonic seconds).
        status: the budget's status right after its answer (its headers taken in).
    """

    total: int
    rtt: float
    sent_at: float
    status: BudgetStatus


def plan_export(
    probe: Probe, *, limit: int = DEFAULT_PAGE_LIMIT, concurrency: int = DEFAULT_CONCURRENCY
) -> ExportPlan:
    """The plan of an export whose probe said ``probe``: a pure estimate, no request.

    Args:
        probe: the figures of the export's ``limit=1`` probe.
        limit: items per page of the export.
        concurrency: pages in flight at once.

    Returns:
        The plan (see the module docstring for how it is simulated).
    """
    items = probe.total
    requests = max(1, math.ceil(items / limit))
    reads = probe.status.reads
    per_page = probe.rtt + min(limit, max(items, 1)) * CPU_PER_ITEM
    # A walk keeps concurrency - 1 pages in flight while its consumer holds one.
    in_flight = max(1, concurrency - 1)
    seconds = simulate(requests, reads, in_flight, per_page, time.monotonic() - probe.sent_at)
    return ExportPlan(
        items=items,
        requests=requests,
        reads_left=reads.remaining,
        seconds=seconds,
        budget_bound=requests > reads.remaining,
    )


def plan_writes(probe: Probe, writes: int, concurrency: int) -> ExportPlan:
    """The plan of ``writes`` creates, ``concurrency`` at a time: a pure estimate from a
    probe that timed the network and brought the server's headers.

    Args:
        probe: the figures of a ``limit=1`` read (its round trip stands for a write's).
        writes: how many creates.
        concurrency: creates in flight at once.

    Returns:
        The plan; ``reads_left`` holds the writes left in the window.
    """
    status = probe.status.writes
    seconds = simulate(writes, status, concurrency, probe.rtt, None)
    return ExportPlan(
        items=writes,
        requests=writes,
        reads_left=status.remaining,
        seconds=seconds,
        budget_bound=writes > status.remaining,
    )
