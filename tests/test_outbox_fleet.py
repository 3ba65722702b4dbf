"""A fleet on one Redis outbox: three drainer processes, one SIGKILLed mid-drain; the entries
it held are taken by the others when its lease ends, looked up, and sent if absent: 0 lost,
0 doubled. The same on one Redis node and on the 3-node cluster. Also: the persistence check
and the missing extra."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from getbill_async import GetBillClient, Outbox
from getbill_async.outbox._redis_store import persistence_warning
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import fast_client
from tests.redis_fixtures import RedisCluster, RedisServer

SERVICE = str(Path(__file__).with_name("outbox_service.py"))
ENTRIES = 160
LEASE = 1.5


async def spawn(sb: Sandbox, url: str, name: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "GETBILL_TOKEN": sb.token}
    args = ["drain", url, "--name", name, "--lease", str(LEASE), "--concurrency", "8"]
    return await asyncio.create_subprocess_exec(
        sys.executable, SERVICE, *args, "--base-url", sb.base_url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def pids_in_flight(url: str, name: str, cluster: bool) -> set[int]:
    """The pids of the processes whose leases hold entries now (read straight from Redis)."""
    conn = AsyncRedisCluster.from_url(url) if cluster else AsyncRedis.from_url(url)
    try:
        entries = await conn.hvals("{getbill-outbox:" + name + "}:entries")
    finally:
        await conn.aclose()
    owners = [json.loads(raw).get("owner") for raw in entries]
    return {int(owner.split(":")[1]) for owner in owners if owner}


async def fleet_drains(url: str, *, cluster: bool) -> str:
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    async with Sandbox(followups=100, latency=0.3) as sb:
        debts = sb.debt_ids()[:10]
        async with fast_client(sb) as client, Outbox(client, url, name=name, drain=False) as box:
            for i in range(ENTRIES):
                await box.create(debt_id=debts[i % 10], type="call", call_id=f"fl-{i}")
            procs = [await spawn(sb, url, name) for _ in range(3)]
            for proc in procs:
                assert proc.stdout is not None
                assert await proc.stdout.readline() == b"draining\n"
            while procs[0].pid not in await pids_in_flight(url, name, cluster):
                await asyncio.sleep(0.02)
            procs[0].send_signal(signal.SIGKILL)  # it holds entries in flight
            await procs[0].wait()
            outputs = [await asyncio.wait_for(p.communicate(), 40) for p in procs[1:]]
            for proc, (_, err) in zip(procs[1:], outputs, strict=True):
                assert proc.returncode == 0, err.decode()[-2000:]
            status = await box.status()
        assert (status.pending, status.in_flight, status.dead, status.held) == (0, 0, 0, 0)
        assert status.done == ENTRIES
        created = sb.created_per_call_id()
        assert sorted(created) == sorted(f"fl-{i}" for i in range(ENTRIES))
        assert set(created.values()) == {1}  # 0 lost, 0 doubled
        report = " | ".join(out.decode().strip() for out, _ in outputs)
        looked_up = sum(int(out.split()[-1]) for out, _ in outputs)
        assert looked_up > 0  # the killed drainer's entries were taken over and looked up
        return report


@pytest.mark.timeout(60)
async def test_three_drainers_on_one_redis_one_killed(redis_server: RedisServer) -> None:
    report = await fleet_drains(redis_server.url, cluster=False)
    print(f"fleet on one node: {report}")


@pytest.mark.timeout(60)
async def test_three_drainers_on_the_cluster_one_killed(redis_cluster: RedisCluster) -> None:
    report = await fleet_drains(redis_cluster.url, cluster=True)
    print(f"fleet on the cluster: {report}")


def test_persistence_warning_says_what_a_restart_loses() -> None:
    assert "appendonly is off" in str(persistence_warning({"appendonly": "no"}))
    everysec = persistence_warning({"appendonly": "yes", "appendfsync": "everysec"})
    assert "last second" in str(everysec)
    assert persistence_warning({"appendonly": "yes", "appendfsync": "always"}) is None


async def test_an_unpersisted_redis_is_warned_about(
    redis_server: RedisServer, client: GetBillClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with Outbox(client, redis_server.url, name=f"w-{uuid.uuid4().hex[:6]}", drain=False):
        pass
    assert "appendonly is off" in caplog.text


@pytest.mark.timeout(60)
async def test_without_the_redis_extra_a_redis_store_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import getbill_async\n"
        "from getbill_async import GetBillClient, Outbox\n"
        "from getbill_async.errors import MissingExtraError\n"
        "try:\n"
        "    Outbox(GetBillClient('t'), 'redis://127.0.0.1:1/0', name='x')\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert "pip install 'getbill-async[redis]'" in out.decode()
