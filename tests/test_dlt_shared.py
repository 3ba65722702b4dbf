"""The dlt source's one client per run: the last resource to leave closes the client and the
budget *it* opened, never the one that a resource entering meanwhile opened."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from getbill_async import Budget, ConfigurationError, GetBillClient, RateLimit, RedisBudget
from getbill_async.dlt._shared import SharedClient
from getbill_async.sandbox import Sandbox
from tests.redis_fixtures import RedisServer


@pytest.mark.timeout(30)
async def test_a_resource_entering_while_the_last_one_closes_keeps_its_budget(
    redis_server: RedisServer,
) -> None:
    made: list[RedisBudget] = []

    def factory() -> RedisBudget:
        made.append(RedisBudget(redis_server.url, f"shared-{uuid.uuid4().hex[:8]}", RateLimit()))
        return made[-1]

    async with Sandbox(followups=10) as sb:

        def make(budget: RateLimit | Budget | None) -> GetBillClient:
            return GetBillClient(sb.token, base_url=sb.base_url, rate_limit=budget)

        shared = SharedClient(make, factory)
        leaving = asyncio.Event()

        async def first() -> None:
            async with shared.use() as client:
                await client.debts.list(limit=1)
                leaving.set()  # and out: its client closes, which takes a turn of the loop

        async def second() -> int:
            await leaving.wait()
            async with shared.use() as client:  # while the first's client is closing
                await client.debts.list(limit=1)
                await asyncio.sleep(0.1)  # the first has closed what it opened
                return len((await client.debts.list(limit=1)).data)

        _, read = await asyncio.gather(first(), second())
    assert read == 1
    assert len(made) == 2
    for budget in made:  # each closed by the resource that opened it
        with pytest.raises(ConfigurationError, match="closed"):
            await budget.acquire("read")
