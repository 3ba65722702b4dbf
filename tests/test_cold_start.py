"""A fresh budget mid-window, after another program spent most of it: no 429s.

Against the sandbox (a strict sliding window on loopback): another client spends 36 of 40 reads
and 18 of 20 writes, then a fresh client, with a budget that has heard nothing yet, sends 16
concurrent ``list()`` calls and a ``create_many(concurrency=16)``. Its first answer of each
class tells what the other one spent, so nothing is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from getbill_async import Budget, GetBillClient, LocalBudget, RateLimit, RedisBudget
from getbill_async.sandbox import Sandbox
from tests.redis_fixtures import RedisServer
from tests.test_redis_budget import fresh_key

READS, WRITES, WINDOW = 40, 20, 2.0
RATE = RateLimit(reads=READS, writes=WRITES, window=WINDOW)


async def spend(sb: Sandbox, reads: int, writes: int) -> None:
    """Another program on the same OAuth client, with its own budget."""
    async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=RATE) as other:
        debt = sb.debt_ids()[0]
        await asyncio.gather(
            *(other.followups.list(limit=1) for _ in range(reads)),
            *(other.followups.create(debt_id=debt, type="call") for _ in range(writes)),
        )


async def burst(sb: Sandbox, budget: Budget) -> dict[str, Any]:
    """16 concurrent lists and 16 concurrent creates from a fresh client."""
    debts = sb.debt_ids()
    items = [{"debt_id": debts[i % len(debts)], "type": "email"} for i in range(16)]
    async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=budget) as client:

        async def creates() -> list[Any]:
            return [r async for r in client.followups.create_many(items, concurrency=16)]

        lists, made = await asyncio.gather(
            asyncio.gather(*(client.followups.list(limit=1) for _ in range(16))), creates()
        )
    return {"lists": len(lists), "created": sum(r.error is None for r in made)}


async def cold_start_429s(make_budget: Callable[[], Awaitable[Budget]]) -> int:
    async with Sandbox(followups=200, reads=READS, writes=WRITES, window=WINDOW) as sb:
        await spend(sb, 36, 18)
        refused_before = sb.stats.rate_limited
        done = await asyncio.wait_for(burst(sb, await make_budget()), 20)
        assert done == {"lists": 16, "created": 16}
        return sb.stats.rate_limited - refused_before


@pytest.mark.timeout(30)
async def test_a_fresh_local_budget_mid_window_meets_no_429() -> None:
    async def local() -> Budget:
        return LocalBudget(RATE)

    assert await cold_start_429s(local) == 0


@pytest.mark.timeout(30)
async def test_a_fresh_redis_budget_mid_window_meets_no_429(redis_server: RedisServer) -> None:
    made: list[RedisBudget] = []

    async def shared() -> Budget:
        made.append(RedisBudget(redis_server.url, fresh_key(), RATE))
        return made[-1]

    try:
        assert await cold_start_429s(shared) == 0
    finally:
        for budget in made:
            await budget.aclose()
