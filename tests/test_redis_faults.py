"""RedisBudget through faults of the client and the process: releases lost while Redis pauses,
a worker process paused (SIGSTOP/SIGCONT), a client that fails with odd errors, keys with
braces on a cluster, and ``--expected-workers`` from the shell.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from getbill_async import (
    BudgetUnavailableError,
    ConfigurationError,
    GetBillClient,
    Outcome,
    RateLimit,
    RedisBudget,
)
from getbill_async.sandbox import Sandbox
from tests.redis_fixtures import RedisCluster, RedisServer, free_port
from tests.test_redis_budget import ROOT, fresh_key

OK = Outcome(status=200)
PAUSED = "import sys; from tests.test_redis_faults import paused_main; paused_main(sys.argv[1])"


async def in_flight(budget: RedisBudget) -> int:
    return (await budget.status()).reads.in_flight


# --- 6. failed releases ----------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_releases_lost_while_redis_paused_land_when_it_answers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    key, rate = fresh_key(), RateLimit(reads=10, window=30.0)
    async with (
        RedisBudget(redis_server.url, key, rate, lease=60.0, timeout=0.3) as budget,
        RedisBudget(redis_server.url, key, rate) as watcher,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        await budget.release(await budget.acquire("read"), OK)
        slots = [await budget.acquire("read") for _ in range(3)]
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # type: ignore[no-untyped-call]
        paused = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="getbill_async"):
            for slot in slots:
                await budget.release(slot, OK)  # times out: queued, and no error
        assert time.monotonic() - paused < 1.5, "the releases ended within the pause"
        assert "sent again once Redis answers" in caplog.text
        await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - paused)))
        deadline = time.monotonic() + 3.0
        while await in_flight(watcher):
            assert time.monotonic() < deadline, "the slots stayed in flight after the pause"
            await asyncio.sleep(0.05)
        assert (await watcher.status()).reads.used == 4


# --- 7. a paused process ---------------------------------------------------------------------


def paused_main(config_json: str) -> None:
    """A worker process that takes and gives back slots until told to stop (stdin)."""
    print(json.dumps(asyncio.run(_paused_work(json.loads(config_json)))), flush=True)


async def _paused_work(config: dict[str, Any]) -> dict[str, Any]:
    rate = RateLimit(reads=1_000_000, window=1.0)
    errors: list[str] = []
    rounds = 0
    async with RedisBudget(config["redis"], config["key"], rate, timeout=0.3) as budget:
        await budget.release(await budget.acquire("read"), OK)
        print("ready", flush=True)
        stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        while not stop.done():
            try:
                await budget.release(await budget.acquire("read"), OK)
                rounds += 1
            except BudgetUnavailableError as exc:
                errors.append(str(exc))
        await stop
    return {"rounds": rounds, "errors": errors}


@pytest.mark.timeout(30)
async def test_a_paused_worker_meets_no_unavailable_budget_while_redis_is_healthy(
    redis_server: RedisServer,
) -> None:
    config = {"redis": redis_server.url, "key": fresh_key()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PAUSED, json.dumps(config), cwd=ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
        for _ in range(3):
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGSTOP)  # mid-call, most likely: it calls Redis nonstop
            await asyncio.sleep(0.8)
            proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.3)
        out, err = await asyncio.wait_for(proc.communicate(b"stop\n"), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["errors"] == []
    assert result["rounds"] > 10


# --- 8. every failure of the client ----------------------------------------------------------


class RestartingNodeClient(aioredis.Redis):
    """A real client that fails the way redis-py's cluster client did while the node that owns
    the budget's slot restarted (a bare AttributeError): ``faults`` says, call by call, which
    script calls fail (then the calls go through)."""

    faults: list[bool] = []

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        if self.faults and self.faults.pop(0):
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
        return await super().evalsha(*args, **kwargs)


@pytest.mark.timeout(20)
async def test_any_client_failure_is_unavailable_and_never_replaces_a_result(
    redis_server: RedisServer,
) -> None:
    client = RestartingNodeClient(host="127.0.0.1", port=redis_server.port)
    try:
        async with (
            Sandbox(followups=20) as sb,
            RedisBudget(client, fresh_key(), RateLimit(reads=10)) as budget,
            GetBillClient(sb.token, base_url=sb.base_url, rate_limit=budget) as api,
        ):
            client.faults = [True]
            with pytest.raises(BudgetUnavailableError, match="AttributeError|writelines"):
                await budget.acquire("read")
            client.faults = [False, True]  # the acquire goes through, its release fails
            page = await api.followups.list(limit=5)
            assert len(page.data) == 5  # the request's own result stands
            assert client.faults == []
            deadline = time.monotonic() + 3.0
            while await in_flight(budget):  # the failed release was sent again
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        async with RedisBudget(client, fresh_key(), fallback=True) as lenient:
            client.faults = [True]
            local = await lenient.acquire("read")
            assert local.token == ""  # the fallback's local share
            await lenient.release(local, OK)
    finally:
        await client.aclose()


# --- 9 and 10. keys with braces ----------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("odd", ["a{}b}", "{}{tenant}:getbill", "tenant{}:7}"])
async def test_keys_whose_first_tag_is_empty_work_on_a_cluster(
    redis_cluster: RedisCluster, odd: str
) -> None:
    key = f"{odd}-{uuid.uuid4().hex[:6]}"
    client = AsyncRedisCluster.from_url(redis_cluster.url)
    try:
        async with RedisBudget(client, key, RateLimit(reads=5, window=1.0)) as budget:
            await budget.release(await budget.acquire("read"), OK)
            assert (await budget.status()).reads.used == 1
        keys = [k async for k in client.scan_iter(match="*", count=1000) if b"-" in k]
        mine = [k for k in keys if key.encode() in k]
        assert len(mine) >= 2 and len({client.keyslot(k) for k in mine}) == 1
    finally:
        await client.aclose()


def test_a_key_that_is_another_keys_stored_form_is_refused() -> None:
    from getbill_async.budget.fleet._conn import hash_tag, tagged

    assert [hash_tag(k) for k in ("a{}b}", "{}{t}", "x{y}z", "{")] == [None, None, "y", None]
    assert tagged("getbill:acme") == "{getbill:acme}"
    assert tagged("{tenant-7}:getbill") == "{tenant-7}:getbill"
    assert tagged("a{}b}") == "{a{}b}}"
    with pytest.raises(
        ConfigurationError,
        match=r"key '\{getbill:acme\}' is how the key 'getbill:acme' is stored.*"
        r"pass key='getbill:acme'",
    ):
        RedisBudget("redis://127.0.0.1:1/0", "{getbill:acme}")


# --- 3. --expected-workers from the shell ------------------------------------------------------


@pytest.mark.timeout(60)
async def test_the_cli_sets_the_fleet_size_of_its_fallback(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with Sandbox(followups=30) as sb:
        env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}

        async def export(*extra: str) -> tuple[int, str]:
            command = [
                sys.executable, "-m", "getbill_async.cli", "export", "--out",
                str(tmp_path / "f.jsonl"), "--no-progress", "--redis", dead, *extra,
            ]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            _, err = await asyncio.wait_for(proc.communicate(), 40)
            assert proc.returncode is not None
            return proc.returncode, err.decode()

        code, err = await export("--redis-fallback", "--expected-workers", "6", "--reads", "60")
        assert code == 0, err
        assert "falling back to a local budget of 1/6 of the limits" in err
        before = sb.stats.requests
        code, err = await export("--redis-fallback", "--expected-workers", "0")
        assert code == 2
        assert "--expected-workers must be an integer >= 1, got 0" in err
        assert sb.stats.requests == before  # refused before any request
