"""One client, and one budget, for every resource of a source run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from getbill_async import Budget, GetBillClient, LocalBudget, RateLimit

__all__ = ["BudgetFactory", "SharedClient"]


BudgetFactory = Callable[[], Budget]
"""A zero-argument callable that makes a ``Budget`` (such as a ``RedisBudget``) for one run."""


class SharedClient:
    """One ``GetBillClient`` at a time for every resource of a source run, and one budget.

    dlt runs a source's async resources on one event loop per run: the first resource to
    start opens the client on it, the last to end closes it. A ``RateLimit`` becomes one
    ``LocalBudget`` per loop, kept for the whole run (a client opened again after the first
    closed spends from the same ledger). A ``BudgetFactory`` is called when the client opens,
    and what it made is closed with the client (a ``RedisBudget``'s connections belong to the
    run's loop). A ``Budget`` instance never gets here: the source refuses it, since its
    locks and connections would outlive the run's loop.
    """

    def __init__(self, make: Callable[[RateLimit | Budget | None], GetBillClient], given: Any):
        self._make = make
        self._given = given
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: LocalBudget | None = None
        self._client: GetBillClient | None = None
        self._made: Budget | None = None  # what a BudgetFactory made for the open client
        self._users = 0

    def _budget(self) -> RateLimit | Budget | None:
        given = self._given
        if callable(given):
            self._made = cast(Budget, given())
            return self._made
        if self._local is None:
            self._local = LocalBudget(given)
        return self._local

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[GetBillClient]:
        """The shared client, opened on first use in this loop, closed after the last."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new run: nothing of the last one's loop is reused
            self._loop, self._local, self._client, self._users = loop, None, None, 0
        if self._client is None:
            self._client = self._make(self._budget())
        client = self._client
        self._users += 1
        try:
            yield client
        finally:
            self._users -= 1
            if self._users == 0:
                self._client = None
                await client.close()
                made, self._made = self._made, None
                closing = getattr(made, "aclose", None)
                if closing is not None:
                    await closing()
