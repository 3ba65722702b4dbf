"""RedisBudget when Redis misbehaves: it evicts, loses part of the ledger, fails over to a
lagging replica, comes back after a fallback, or loses the cold start's probe.

Real redis-server processes (a primary and a replica for the failover, behind a loopback TCP
proxy that switches as a failover proxy does), real worker processes, and the sandbox counting
arrivals and 429s. Windows are short (3-4 s) and limits small.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from getbill_async import (
    BudgetExhaustedError,
    ConfigurationError,
    Outcome,
    RateLimit,
    RedisBudget,
)
from getbill_async.cli._budget import rows
from getbill_async.sandbox import STATIC_CLIENT, Sandbox
from tests.helpers import max_in_window
from tests.redis_fixtures import RedisServer
from tests.test_redis_budget import fleet, fresh_key, run_fleet

OK = Outcome(status=200)


class SwitchProxy:
    """A TCP proxy on loopback in front of one Redis; ``switch`` points it at another and
    drops every open connection, as a failover proxy (or a DNS flip) does."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def switch(self, upstream: int) -> None:
        self.upstream = upstream
        for writer in list(self._writers):
            writer.close()

    async def aclose(self) -> None:
        self.switch(0)
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)


async def wait_for(check: object, seconds: float) -> None:
    """Until ``check()`` (an async callable) is true, polling; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


# --- 1. eviction ----------------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_an_evicting_redis_is_refused_with_the_policy_and_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer(extra=("--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru")) as server:
        rate = RateLimit(reads=5, window=1.0)
        async with RedisBudget(server.url, fresh_key(), rate) as refused:
            with pytest.raises(
                ConfigurationError,
                match=r"has maxmemory-policy allkeys-lru, which evicts the budget's keys.*"
                r"set maxmemory-policy noeviction.*a Redis of its own.*accept_eviction=True",
            ):
                await refused.acquire("read")
        with caplog.at_level(logging.WARNING, logger="getbill_async"):
            async with RedisBudget(server.url, fresh_key(), rate, accept_eviction=True) as taken:
                await taken.release(await taken.acquire("read"), OK)
        assert "evicts keys (maxmemory-policy allkeys-lru)" in caplog.text


@pytest.mark.timeout(20)
async def test_a_redis_whose_config_command_is_renamed_is_used_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer(extra=("--rename-command", "CONFIG", "")) as server:
        with caplog.at_level(logging.WARNING, logger="getbill_async"):
            async with RedisBudget(server.url, fresh_key(), RateLimit(reads=5)) as budget:
                await budget.release(await budget.acquire("read"), OK)
    assert "cannot read maxmemory-policy" in caplog.text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("lost", ["slots", "inflight", "server"])
async def test_a_ledger_that_lost_one_of_its_keys_is_cold(
    redis_server: RedisServer, lost: str
) -> None:
    key = fresh_key()
    rate = RateLimit(reads=10, window=30.0)
    async with (
        RedisBudget(redis_server.url, key, rate, cold_lease=0.5) as first,
        RedisBudget(redis_server.url, key, rate, cold_lease=0.5) as second,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        for _ in range(4):
            await first.release(await first.acquire("read"), OK)
        held = await first.acquire("read")
        assert not (await second.status()).reads.cold
        await admin.delete(f"{{{key}}}:read:{lost}")  # what eviction does: whole keys go
        status = (await second.status()).reads
        assert status.cold, status
        # The cold start's one request, once the request in flight answers, or (as here, it is
        # held) once it had as long as a cold probe would have.
        probe = await asyncio.wait_for(second.acquire("read"), 2)
        with pytest.raises(BudgetExhaustedError, match="cold, waiting for the first answer"):
            await second.acquire("read", max_wait=0.2)
        await second.release(probe, Outcome(200, {"X-RateLimit-Remaining": "4"}))
        await first.release(held, OK)
        assert not (await second.status()).reads.cold


# --- 4. failover to a lagging replica -------------------------------------------------------


async def replica_of(primary: RedisServer) -> RedisServer:
    replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(primary.port)))
    replica.start()
    async with aioredis.Redis.from_url(replica.url) as r:

        async def synced() -> bool:
            info = await r.info("replication")
            return bool(info.get("master_link_status") == "up")

        await wait_for(synced, 10)
    return replica


@pytest.mark.timeout(60)
async def test_a_failover_to_a_lagging_replica_costs_at_most_one_429() -> None:
    primary = RedisServer()
    primary.start()
    replica = await replica_of(primary)
    proxy = SwitchProxy(primary.port)
    await proxy.start()
    try:
        async with Sandbox(followups=600, reads=40, window=4.0) as sb:
            configs = fleet(sb, proxy.url, 4, redis_timeout=4.0)

            async def fail_over_to_old_data() -> None:
                while len(sb.arrivals(STATIC_CLIENT, "read")) < 20:
                    await asyncio.sleep(0.01)
                async with aioredis.Redis.from_url(replica.url) as r:
                    await r.replicaof("NO", "ONE")  # its data stops here
                while len(sb.arrivals(STATIC_CLIENT, "read")) < 40:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)  # the window is spent, the fleet waits
                proxy.switch(replica.port)  # the promoted replica misses half of it

            results, _, _ = await run_fleet(configs, during=fail_over_to_old_data, timeout=45)
            refused = sb.stats.rate_limited
            arrivals = sb.arrivals(STATIC_CLIENT, "read")
    finally:
        await proxy.aclose()
        replica.close()
        primary.close()
    print(f"\nlagging replica: {refused} 429s, {max_in_window(arrivals, 4.0)} max in a window")
    assert [r["error"] for r in results] == [None] * 4
    assert [r["pages"] for r in results] == [30] * 4
    assert refused <= 1


# --- 2. back from the local fallback --------------------------------------------------------


@pytest.mark.timeout(60)
async def test_workers_back_from_their_fallback_bring_what_they_spent() -> None:
    server = RedisServer()  # down at start: every worker falls back to 1/6 of the limit
    try:
        async with Sandbox(followups=480, reads=36, window=2.0, latency=0.2) as sb:
            configs = fleet(
                sb, server.url, 6, reads=36, window=2.0, page_size=20, fallback=True,
                redis_timeout=0.3, fallback_retry=2.0, clock_probe=False,
            )  # fmt: skip

            async def redis_comes_back() -> None:
                await asyncio.sleep(3.0)
                server.start()

            results, errors, _ = await run_fleet(configs, during=redis_comes_back, timeout=45)
            refused = sb.stats.rate_limited
            arrivals = sb.arrivals(STATIC_CLIENT, "read")
    finally:
        server.close()
    print(f"\nback from fallback: {refused} 429s, {max_in_window(arrivals, 2.0)} max in a window")
    assert [r["error"] for r in results] == [None] * 6
    assert sum("answers again: back to the shared budget" in e for e in errors) >= 3
    assert refused <= 1


# --- 5. a lost cold-start probe ---------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_a_lost_cold_probe_holds_the_fleet_for_its_own_short_lease(
    redis_server: RedisServer,
) -> None:
    key = fresh_key()
    rate = RateLimit(reads=10, window=2.0)
    lost = RedisBudget(redis_server.url, key, rate, lease=60.0, cold_lease=1.0)
    await lost.acquire("read")  # the probe's answer never comes back (its worker died)
    await lost.aclose()
    async with RedisBudget(redis_server.url, key, rate, lease=60.0, cold_lease=1.0) as survivor:
        status = (await survivor.status()).reads
        assert status.cold and status.in_flight == 1
        assert 0.5 < status.next_slot_in <= 1.0  # until the probe's lease ends, not "0.0s"
        row = rows(await survivor.status())[0]  # what `getbill budget` shows
        assert row[5] == "cold, waiting for the first answer"
        with pytest.raises(
            BudgetExhaustedError,
            match=r"read budget exhausted: cold, waiting for the first answer, over max_wait",
        ):
            await survivor.acquire("read", max_wait=0.1)
        started = time.monotonic()
        slot = await asyncio.wait_for(survivor.acquire("read"), 10)
        frozen = time.monotonic() - started
        await survivor.release(slot, OK)
    print(f"\nlost cold probe: the fleet waited {frozen:.2f}s")
    assert frozen < 1.5
