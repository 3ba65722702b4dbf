"""RedisBudget on a real 3-node Redis Cluster: one budget in one hash slot, either kind of
client, wake-ups across nodes, and messages that say where it is.

The ledger's rules on a cluster are in tests/test_budget_conformance.py (the ``cluster`` cases).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from getbill_async import (
    BudgetUnavailableError,
    ConfigurationError,
    Outcome,
    RateLimit,
    RedisBudget,
)
from getbill_async.budget.fleet import budget_from_url
from tests.redis_fixtures import RedisCluster, free_port

pytestmark = pytest.mark.timeout(20)
OK = Outcome(status=200)


async def test_a_cluster_client_of_yours_is_used_and_left_open(
    redis_cluster: RedisCluster,
) -> None:
    client = AsyncRedisCluster.from_url(redis_cluster.url)
    try:
        key = f"getbill:{uuid.uuid4().hex[:8]}"
        budget = RedisBudget(client, key, RateLimit(reads=5, window=1.0))
        await budget.release(await budget.acquire("read"), OK)
        await budget.release(await budget.acquire("write"), OK)
        # Every key of the budget, of both classes, hashes to one slot: one node runs it all.
        keys = [k async for k in client.scan_iter(match=f"{{{key}}}:*")]
        assert len(keys) >= 4
        assert len({client.keyslot(k) for k in keys}) == 1
        assert repr(budget).startswith(f"RedisBudget(key={key!r}, cluster, reads=5")
        await budget.aclose()
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.skipif(
    not hasattr(AsyncRedisCluster, "pubsub"),
    reason="redis-py before 8.0 has no pub/sub on its asyncio cluster client: waiters poll",
)
async def test_a_release_wakes_a_waiter_that_came_through_another_node(
    redis_cluster: RedisCluster,
) -> None:
    key = f"getbill:{uuid.uuid4().hex[:8]}"
    rate = RateLimit(reads=2, window=60.0)
    # Each worker reaches the cluster through a different node.
    holder, waiter = (
        RedisBudget(node.url, key, rate, cluster=True, poll=30.0)
        for node in redis_cluster.nodes[:2]
    )
    try:
        await holder.release(await holder.acquire("read"), OK)
        slot = await holder.acquire("read")
        pending = asyncio.ensure_future(waiter.acquire("read"))
        await asyncio.sleep(0.3)
        assert not pending.done()
        await holder.release(slot, Outcome(sent=False))
        taken = await asyncio.wait_for(pending, 3)  # woken by the message, not the 30 s poll
        assert taken.waited < 1.5
    finally:
        await holder.aclose()
        await waiter.aclose()


async def test_an_unreachable_cluster_is_a_clear_error() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    async with budget_from_url(url, RateLimit(), key="getbill:acme", cluster=True) as budget:
        with pytest.raises(
            BudgetUnavailableError,
            match=rf"shared rate budget unavailable: Redis Cluster at 127\.0\.0\.1:{port} "
            r"\(key 'getbill:acme'\) failed while acquiring a read slot",
        ):
            await budget.acquire("read")


def test_a_key_with_its_own_hash_tag_keeps_it() -> None:
    from getbill_async.budget.fleet._conn import tagged

    assert tagged("getbill:acme") == "{getbill:acme}"
    assert tagged("{tenant-7}:getbill") == "{tenant-7}:getbill"
    assert tagged("odd{}key") == "{odd{}key}"  # an empty tag is no tag: Redis hashes it all


def test_cluster_urls_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"--redis-cluster needs a redis:// or rediss://"):
        budget_from_url("unix:///tmp/redis.sock", RateLimit(), cluster=True)
