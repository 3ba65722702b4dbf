"""A fleet on a real redis-server through its rough edges: Redis restarting mid-run, Redis
blackholed (SIGSTOP), a worker killed with SIGKILL mid-request, and a bulk worker and an
interactive service in two processes honouring one reserve.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from getbill_async import (
    GetBillClient,
    Outcome,
    RateLimit,
    RedisBudget,
)
from getbill_async.sandbox import STATIC_CLIENT, Sandbox
from tests.helpers import max_in_window
from tests.redis_fixtures import RedisServer, free_port
from tests.test_redis_budget import ROOT, fleet, fresh_key, run_fleet

OK = Outcome(status=200)
LANE_WORKER = "import sys; from tests.test_redis_fleet import lane_worker; lane_worker(sys.argv[1])"


@pytest.mark.timeout(60)
async def test_a_redis_restart_mid_run_costs_at_most_one_429() -> None:
    server = RedisServer()
    server.start()
    try:
        async with Sandbox(followups=600, reads=40, window=4.0) as sb:
            # A restart shorter than the budget's Redis timeout is ridden out; on a loaded
            # machine one takes up to a second or two.
            configs = fleet(sb, server.url, 4, redis_timeout=4.0)

            async def restart_when_busy() -> None:
                # The first window is spent and every worker waits for it to free: a ledger
                # that forgot it would let them all go at once.
                while len(sb.arrivals(STATIC_CLIENT, "read")) < 40:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)
                server.stop()  # no persistence: the ledger is gone when it comes back
                server.start()

            results, _, _ = await run_fleet(configs, during=restart_when_busy, timeout=40)
            arrivals = sb.arrivals(STATIC_CLIENT, "read")
            refused = sb.stats.rate_limited
    finally:
        server.close()
    print(f"\nrestart: {refused} 429s, {max_in_window(arrivals, 4.0)} max in a window")
    assert [r["error"] for r in results] == [None] * 4
    assert [r["pages"] for r in results] == [30] * 4
    assert refused <= 1
    assert max_in_window(arrivals, 4.0) <= 40


@pytest.mark.timeout(20)
async def test_a_blackholed_redis_costs_one_timeout_not_one_per_queued_task() -> None:
    server = RedisServer()
    server.start()
    rate = RateLimit(reads=100, window=10.0)
    budget = RedisBudget(
        server.url, fresh_key(), rate, fallback=True, timeout=0.4, fallback_retry=0.5
    )
    try:
        await budget.release(await budget.acquire("read"), OK)
        os.kill(server.pid, signal.SIGSTOP)  # connections open, nothing ever answers

        async def one() -> float:
            started = time.monotonic()
            slot = await budget.acquire("read")
            took = time.monotonic() - started
            await budget.release(slot, OK)
            return took

        took = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(8))), 10)
        assert max(took) < 0.8, f"each queued task tried Redis in turn: {took}"
        await asyncio.sleep(0.55)  # time to try Redis again: one task probes, alone
        took = sorted(await asyncio.wait_for(asyncio.gather(*(one() for _ in range(8))), 10))
        assert took[-1] >= 0.35, "the probe waited for Redis"
        assert took[-2] < 0.2, f"more than one probe, or the others waited for it: {took}"
    finally:
        os.kill(server.pid, signal.SIGCONT)
        await budget.aclose()
        server.close()


async def test_a_worker_on_its_fallback_share_believes_its_share_of_what_is_left() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    rate = RateLimit(reads=40, window=60.0)
    budget = RedisBudget(url, fresh_key(), rate, fallback=True, expected_workers=4, timeout=0.3)
    async with budget:
        slot = await budget.acquire("read")
        assert slot.token == ""  # a local slot: 1/4 of the limit
        headers = {"X-RateLimit-Limit": "40", "X-RateLimit-Remaining": "20"}
        await budget.release(slot, Outcome(status=200, headers=headers))
        status = (await budget.status()).reads
    # Every worker that fell back reads the same 20: each may take a quarter of them.
    assert (status.limit, status.remaining) == (10, 5)


def lane_worker(config_json: str) -> None:
    """A worker process: ``requests`` list calls in ``lane``, ``concurrency`` at a time, every
    ``every`` seconds when given; prints each call's budget wait and answer time."""
    config = json.loads(config_json)
    print(json.dumps(asyncio.run(_lane_work(config))), flush=True)


async def _lane_work(config: dict[str, Any]) -> dict[str, Any]:
    rate = RateLimit(reads=config["reads"], window=config["window"], reserve=config["reserve"])
    waits: list[float] = []
    answers: list[float] = []
    async with (
        RedisBudget(config["redis"], config["key"], rate, lease=config.get("lease", 120.0)) as rb,
        GetBillClient(config["token"], base_url=config["base_url"], rate_limit=rb) as owner,
    ):
        client = owner.with_options(priority=config["lane"])
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        pending = list(range(config["requests"]))

        async def calls() -> None:
            while pending:
                pending.pop()
                started = time.monotonic()
                before = client.stats.budget_wait_seconds
                await client.followups.list(limit=1)
                answers.append(time.monotonic())
                waits.append(client.stats.budget_wait_seconds - before)
                if config.get("every"):
                    await asyncio.sleep(max(0.0, config["every"] - (time.monotonic() - started)))

        await asyncio.gather(*(calls() for _ in range(config["concurrency"])))
    return {"waits": waits, "answers": answers}


@pytest.mark.timeout(60)
async def test_a_bulk_worker_and_a_service_in_two_processes_honour_one_reserve(
    redis_server: RedisServer,
) -> None:
    limit, window, reserve = 20, 2.0, 0.25  # bulk may take 15 of 20
    async with Sandbox(followups=200, reads=limit, window=window) as sb:
        common = dict(
            base_url=sb.base_url, token=sb.token, redis=redis_server.url, key=fresh_key(),
            reads=limit, window=window, reserve=reserve,
        )  # fmt: skip
        bulk = {**common, "lane": "bulk", "requests": 60, "concurrency": 8}
        service = {**common, "lane": "interactive", "requests": 20, "concurrency": 1}
        service["every"] = 0.45  # about 4 calls a window: within the reserve of 5
        results, _, _ = await run_fleet([bulk, service], code=LANE_WORKER, timeout=45)
        refused = sb.stats.rate_limited
        arrivals = sb.arrivals(STATIC_CLIENT, "read")
    bulk_done, person = results
    print(f"\nlanes: worst interactive wait {max(person['waits']):.3f}s, 429s {refused}")
    assert refused == 0
    assert max_in_window(arrivals, window) <= limit
    assert max_in_window(bulk_done["answers"], window) <= 15, "bulk took the reserve"
    assert max(person["waits"]) <= window / 8


@pytest.mark.timeout(30)
async def test_a_worker_killed_mid_request_frees_its_slot_at_lease_and_window(
    redis_server: RedisServer,
) -> None:
    lease, window = 1.0, 1.0
    key = fresh_key()
    async with Sandbox(followups=50, reads=10, window=window, latency=60.0) as sb:
        config = dict(
            base_url=sb.base_url, token=sb.token, redis=redis_server.url, key=key, reads=1,
            window=window, reserve=0.0, lane="interactive", requests=1, concurrency=1,
            lease=lease,
        )  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LANE_WORKER, json.dumps(config), cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rate = RateLimit(reads=1, window=window)
        async with RedisBudget(redis_server.url, key, rate, lease=lease) as survivor:
            try:
                assert proc.stdout is not None and proc.stdin is not None
                assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                while (await survivor.status()).reads.in_flight == 0:
                    await asyncio.sleep(0.01)
                taken = time.monotonic()  # the worker's request is out, and will never answer
                proc.send_signal(signal.SIGKILL)
                assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            slot = await asyncio.wait_for(survivor.acquire("read"), 10)
            freed = time.monotonic() - taken
            await survivor.release(slot, Outcome(sent=False))
    assert lease + window - 0.1 <= freed < lease + window + 0.8
