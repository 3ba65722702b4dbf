"""A budget wrapper shared by the lanes tests and benchmarks/lanes.py."""

from __future__ import annotations

from getbill_async import Budget, BudgetStatus, Lane, Outcome, Slot
from getbill_async._budget import Kind

__all__ = ["OneLane"]


class OneLane:
    """A client's view of a shared budget with every request in ``lane``, whatever lane the
    pipeline asks for, so a test or a benchmark chooses the lanes of each client itself."""

    def __init__(self, budget: Budget, lane: Lane) -> None:
        self.budget, self.lane = budget, lane

    async def acquire(
        self, kind: Kind, *, lane: Lane = "interactive", max_wait: float | None = None
    ) -> Slot:
        return await self.budget.acquire(kind, lane=self.lane, max_wait=max_wait)

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        await self.budget.release(slot, outcome)

    async def status(self) -> BudgetStatus:
        return await self.budget.status()
