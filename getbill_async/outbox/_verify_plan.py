"""The cost model of ``Outbox.verify``: which list reads prove which followups, and what they cost.

The list endpoint answers up to 100 followups a read, filtered by day (``date_from`` =
``date_to`` = a call day) or by debt (``debt_id``). Each followup written is proved by one
*group* read in full:

- ``day:D``: every followup of call day D, ``ceil(total_D / 100)`` reads, where ``total_D``
  (the outbox's own followups of that day *and everyone else's*) comes from a ``limit=1``
  probe: one read;
- ``debt:X``: every followup of debt X: one read per 100 of them (planned as one);
- ``id:F``: ``GET /followups/F``, for a followup whose debt the outbox never knew (an
  update by followup id): one read.

Per day, the plan picks the cheaper of the day's pages and one read per debt of its
followups. A day whose followups all sit on one debt is not probed (its debt costs one read).
A probe is a read spent before knowing; it is spent only when it cannot make the whole run
cost more than one read per followup: when the day has fewer debts than followups, or when
the days planned so far saved a read. So a plan never counts more reads than followups, and
on days that hold few other followups it costs about ``followups / 100`` reads plus one probe
a day. Debts that must be read anyway (followups with no date) are planned first: their
other followups ride along.

A followup not found where it was written costs one read more when it is read: its debt's
list (or its id), to tell "missing" from "moved to another day".
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..budget import BudgetStatus
from ..export import simulate
from ._verify_types import Written

__all__ = ["Group", "VerifyPlan", "make_plan", "PAGE"]

PAGE = 100  # followups per list read, the API's maximum
DEFAULT_RTT = 0.2  # seconds a read is assumed to take when no probe timed one


@dataclass(frozen=True)
class Group:
    """One list read in full (``kind``: ``day``, ``debt`` or ``id``) and what it proves."""

    kind: str
    value: str
    reads: int
    followups: tuple[str, ...]  # the followup ids of the ``Written`` it proves

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class VerifyPlan:
    """What ``Outbox.verify`` will read, before it reads.

    Attributes:
        followups: followups to check.
        reads: reads planned, probes included (each followup then not found where it was
            written costs one more).
        probes: of them, the ``limit=1`` reads that counted a day's followups.
        by_day: days read in full.
        by_debt: debts read in full.
        by_id: followups read one by one (their debt unknown).
        reads_left: reads left in the budget's window now.
        seconds: the estimated wall time under the current budget.
        budget_bound: whether the budget, not the network, sets the pace.
        groups: the reads, in the order they run.
        totals: followups on each day probed (``YYYY-MM-DD``: count), kept for a resume.
    """

    followups: int
    reads: int
    probes: int
    by_day: int
    by_debt: int
    by_id: int
    reads_left: int
    seconds: float
    budget_bound: bool
    groups: tuple[Group, ...] = ()
    totals: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """The plan in one line: ``verify plan: N followups in R reads (...); ...``."""
        pace = "budget-bound" if self.budget_bound else "network-bound"
        ratio = self.reads / self.followups if self.followups else 0.0
        minutes = self.seconds / 60
        took = f"{self.seconds:.1f} s" if self.seconds < 60 else f"{minutes:.0f} min"
        return (
            f"verify plan: {self.followups:,} followups in {self.reads:,} reads "
            f"({ratio:.3f} a followup; {self.by_day} days, {self.by_debt} debts, "
            f"{self.by_id} by id, {self.probes} probes); {self.reads_left:,} reads left in "
            f"the budget's window now; about {took} ({pace})"
        )


Probe = Callable[[str], Awaitable[int]]  # a day (YYYY-MM-DD) -> followups on it


@dataclass
class _Choice:
    days: dict[str, list[Written]] = field(default_factory=dict)
    day_reads: dict[str, int] = field(default_factory=dict)
    debts: set[str] = field(default_factory=set)
    saved: int = 0  # reads saved so far against one read per followup
    probes: int = 0


async def _choose_days(
    dated: dict[str, list[Written]], choice: _Choice, totals: dict[str, int], probe: Probe
) -> None:
    """Day or debts, per day, most followups first (see the module docstring)."""
    for day in sorted(dated, key=lambda d: (-len(dated[d]), d)):
        left = [w for w in dated[day] if w.debt_id not in choice.debts]
        debts = {w.debt_id for w in left if w.debt_id is not None}
        n, k = len(left), len(debts)
        if n == 0:
            continue
        if k <= 1 or (k == n and choice.saved < 1):
            choice.debts |= debts
            choice.saved += n - k
            continue
        if day not in totals:
            totals[day] = await probe(day)
            choice.probes += 1
        choice.saved -= 1  # charged alike on a resume, so the choices come out the same
        pages = max(1, math.ceil(totals[day] / PAGE))
        if pages <= k:
            choice.days[day] = left
            choice.day_reads[day] = pages
            choice.saved += n - pages
        else:
            choice.debts |= debts
            choice.saved += n - k


def _groups(items: list[Written], choice: _Choice) -> list[Group]:
    by_debt: dict[str, list[str]] = defaultdict(list)
    by_day: dict[str, list[str]] = defaultdict(list)
    by_id: list[str] = []
    in_day = {w.followup_id: day for day, ws in choice.days.items() for w in ws}
    for w in items:
        if w.debt_id is None:
            by_id.append(w.followup_id)
        elif w.debt_id in choice.debts:
            by_debt[w.debt_id].append(w.followup_id)
        else:
            by_day[in_day[w.followup_id]].append(w.followup_id)
    groups = [Group("day", d, choice.day_reads[d], tuple(ids)) for d, ids in sorted(by_day.items())]
    groups += [Group("debt", d, 1, tuple(ids)) for d, ids in sorted(by_debt.items())]
    groups += [Group("id", fid, 1, (fid,)) for fid in by_id]
    return groups


async def make_plan(
    items: list[Written],
    *,
    totals: dict[str, int],
    probe: Probe,
    status: Callable[[], Awaitable[BudgetStatus]],
    concurrency: int,
    rtt: float | None = None,
) -> VerifyPlan:
    """The plan for ``items``: probes the days it needs (not those in ``totals``).

    Args:
        items: the followups to check.
        totals: followups per day already known (a resume's); probed days are added.
        probe: counts one day's followups (one read).
        status: the budget's status now.
        concurrency: reads in flight at once.
        rtt: a read's round trip, if known.

    Returns:
        The plan.
    """
    dated: dict[str, list[Written]] = defaultdict(list)
    choice = _Choice()
    for w in items:
        if w.debt_id is not None and w.day is None:
            choice.debts.add(w.debt_id)
    for w in items:
        if w.debt_id is not None and w.day is not None and w.debt_id not in choice.debts:
            dated[w.day.isoformat()].append(w)
    riding = sum(1 for w in items if w.debt_id in choice.debts)
    choice.saved = riding - len(choice.debts)
    started = time.monotonic()
    await _choose_days(dated, choice, totals, probe)
    if rtt is None:
        rtt = (time.monotonic() - started) / choice.probes if choice.probes else DEFAULT_RTT
    groups = _groups(items, choice)
    reads = sum(g.reads for g in groups)
    budget = (await status()).reads
    seconds = simulate(reads, budget, concurrency, rtt, None)
    return VerifyPlan(
        followups=len(items),
        reads=reads + choice.probes,
        probes=choice.probes,
        by_day=sum(g.kind == "day" for g in groups),
        by_debt=sum(g.kind == "debt" for g in groups),
        by_id=sum(g.kind == "id" for g in groups),
        reads_left=budget.remaining,
        seconds=seconds,
        budget_bound=reads > budget.remaining,
        groups=tuple(groups),
        totals=dict(totals),
    )
