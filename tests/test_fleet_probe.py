"""RedisBudget back from its local fallback: what a local request spent while the one request
that tries Redis again was waiting for its shared slot reaches the shared ledger too (it was
recorded after the probe had taken what was spent before it, and then forgotten)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from getbill_async import Outcome, RateLimit, RedisBudget
from tests.redis_fixtures import RedisServer


def answered() -> Outcome:
    headers = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "19"}
    headers["X-RateLimit-Reset"] = str(int(time.time()) + 60)
    return Outcome(status=201, headers=headers, sent=True)


@pytest.mark.timeout(30)
async def test_local_spending_during_the_probe_reaches_the_shared_ledger() -> None:
    server = RedisServer()  # down at first: the budget falls back to its local share
    key = f"probe-{uuid.uuid4().hex[:8]}"
    rate = RateLimit(reads=100, writes=20, window=60.0)
    options = {"fallback": True, "expected_workers": 1, "timeout": 0.3, "poll": 0.05}
    budget = RedisBudget(server.url, key, rate, fallback_retry=0.5, **options)  # type: ignore[arg-type]
    other = RedisBudget(server.url, key, rate, **options)  # type: ignore[arg-type]
    try:
        local = await budget.acquire("write")  # Redis is down: a slot of the local share
        server.start()
        cold = await other.acquire("write")  # the ledger is cold: one write at a time
        await asyncio.sleep(0.6)  # time for the budget to try Redis again
        probe = asyncio.create_task(budget.acquire("write"))
        await asyncio.sleep(0.3)  # the probe waits behind the cold write
        assert not probe.done()
        await budget.release(local, answered())  # the local write is answered meanwhile
        await other.release(cold, answered())
        shared = await asyncio.wait_for(probe, 10)
        await budget.release(shared, answered())
        writes = (await other.status()).writes
        assert writes.used == 3  # the cold one, the local one, the probe's
    finally:
        await budget.aclose()
        await other.aclose()
        server.close()
