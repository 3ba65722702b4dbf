"""Faults cost time, never records: the fault matrix and the server's sliding window."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from getbill_async import (
    AmbiguousWriteError,
    Followup,
    GetBillClient,
    NotFoundError,
    RateLimit,
    RetryPolicy,
    ServerError,
)
from getbill_async.sandbox import ALL_KINDS, STATIC_CLIENT, FaultPlan, Sandbox
from tests.helpers import max_in_window

FAST_RETRY = RetryPolicy(max_tries=10, base=0.002, cap=0.05)
ROOMY = RateLimit(reads=100_000, writes=100_000, window=3600.0)


def every_kind(rate: float, seed: int) -> FaultPlan:
    # Each kind pinned once early, then a random mix: every kind is certain to be exercised.
    pinned = {2 + 3 * i: kind for i, kind in enumerate(ALL_KINDS)}
    return FaultPlan(rate=rate, seed=seed, at=pinned, slow_seconds=0.6, storm_length=3)


@pytest.fixture
async def faulty() -> AsyncIterator[Sandbox]:
    async with Sandbox(
        followups=10_000, seed=11, reads=100_000, writes=100_000, faults=every_kind(0.12, 5)
    ) as sb:
        yield sb


def client_for(sb: Sandbox, **kw: object) -> GetBillClient:
    options: dict[str, object] = dict(
        base_url=sb.base_url, rate_limit=ROOMY, retry=FAST_RETRY, timeout=0.3
    )
    options.update(kw)
    return GetBillClient(sb.token, **options)  # type: ignore[arg-type]


@pytest.mark.timeout(120)
async def test_iterate_10000_under_every_fault_gets_each_id_once_in_order(
    faulty: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    expected = faulty.followup_ids()
    caplog.set_level(logging.DEBUG, logger="getbill_async")
    async with client_for(faulty) as client:
        walk = client.followups.iterate(limit=100, concurrency=4)
        ids = [f.id async for f in walk]
    assert len(ids) == 10_000 and ids == expected
    injected = faulty.stats.faults_injected
    assert set(injected) == set(ALL_KINDS), f"every kind must have fired: {injected}"
    assert walk.stats.retries >= sum(injected.values()) - injected.get("storm429", 0)
    assert any("retrying GET /followups page" in r.getMessage() for r in caplog.records)
    assert all(faulty.token not in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(120)
async def test_1000_creates_with_call_ids_land_exactly_once() -> None:
    async with Sandbox(
        followups=300, seed=3, reads=100_000, writes=100_000, faults=every_kind(0.1, 9)
    ) as sb:
        debts = sb.debt_ids()
        async with client_for(sb) as client:
            gate = asyncio.Semaphore(16)

            async def make(i: int) -> Followup:
                async with gate:
                    return await client.followups.create(
                        debt_id=debts[i % len(debts)], type="call", call_id=f"call-{i:05d}"
                    )

            made = await asyncio.gather(*(make(i) for i in range(1000)))
        counts = sb.created_per_call_id()
        assert len(counts) == 1000 and set(counts.values()) == {1}, "none lost, none twice"
        assert sorted(f.call_id or "" for f in made) == sorted(counts)
        assert len({f.id for f in made}) == 1000
        faults = sb.stats.faults_injected
        assert {"reset_after", "commit_500", "slow", "truncated", "500"} <= set(faults)


@pytest.mark.timeout(120)
async def test_ambiguous_creates_without_call_id_all_surface() -> None:
    async with Sandbox(
        followups=100, seed=4, reads=100_000, writes=100_000, faults=every_kind(0.15, 21)
    ) as sb:
        debt = sb.debt_ids()[0]
        before = set(sb.followup_ids())
        async with client_for(sb) as client:
            results = await asyncio.gather(
                *(
                    client.followups.create(debt_id=debt, type="sms", summary=f"m{i}")
                    for i in range(300)
                ),
                return_exceptions=True,
            )
        ok = {r.summary for r in results if isinstance(r, Followup)}
        ambiguous = [r for r in results if isinstance(r, AmbiguousWriteError)]
        others = [r for r in results if not isinstance(r, (Followup, AmbiguousWriteError))]
        assert not others, others
        assert ambiguous, "the faults must have made some creates ambiguous"
        assert len(ok) + len(ambiguous) == 300
        assert all(a.fields["debt_id"] == debt and a.fields["type"] == "sms" for a in ambiguous)
        stored = {
            (sb.followup(i) or {}).get("summary") for i in sb.followup_ids() if i not in before
        }
        maybe = {a.fields["summary"] for a in ambiguous}
        assert ok <= stored, "every create reported done is on the server"
        assert stored <= ok | maybe, "every create on the server was reported done or ambiguous"


async def test_ambiguous_update_is_not_retried() -> None:
    async with Sandbox(followups=10, faults=FaultPlan(at={2: "commit_500"})) as sb:
        target = sb.followup_ids()[0]
        async with client_for(sb) as client:
            await client.followups.get(target)
            with pytest.raises(AmbiguousWriteError, match="may have happened") as info:
                await client.followups.update(target, notes="changed")
        assert info.value.fields == {"notes": "changed"}
        assert isinstance(info.value.cause, ServerError)
        assert sb.stats.requests == 2
        assert (sb.followup(target) or {})["notes"] == "changed"


async def test_client_errors_are_not_retried(sandbox: Sandbox, client: GetBillClient) -> None:
    with pytest.raises(NotFoundError):
        await client.followups.get("nosuchthing1")
    assert sandbox.stats.requests == 1


async def test_reads_give_up_after_max_tries() -> None:
    plan = FaultPlan(at={n: "503" for n in range(1, 10)})
    async with Sandbox(followups=10, faults=plan) as sb:
        async with client_for(sb, retry=RetryPolicy(max_tries=3, base=0.001)) as client:
            with pytest.raises(ServerError) as info:
                await client.followups.list()
        assert info.value.status == 503 and sb.stats.requests == 3


async def test_a_429_pauses_every_task_for_retry_after() -> None:
    async with Sandbox(followups=50, reads=3, window=0.5) as sb:
        # The client thinks it has plenty; the server's 429 (and headers) must rein it in.
        async with client_for(sb, rate_limit=RateLimit(reads=1000, window=0.5)) as client:
            pages = await asyncio.gather(*(client.followups.list(limit=5) for _ in range(12)))
        assert len(pages) == 12
        assert max_in_window(sb.arrivals(STATIC_CLIENT, "read"), 0.5) <= 3


@pytest.mark.timeout(60)
async def test_window_100_requests_8_tasks_no_429_and_near_ideal() -> None:
    limit, window, total = 40, 4.0, 100
    async with Sandbox(followups=500, reads=limit, window=window) as sb:
        rate = RateLimit(reads=limit, window=window)
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in range(total):
                queue.put_nowait(n % 5 + 1)

            async def worker() -> None:
                while not queue.empty():
                    await client.followups.list(page=queue.get_nowait(), limit=10)

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(8)))
            elapsed = time.monotonic() - started
        arrivals = sb.arrivals(STATIC_CLIENT, "read")
        assert sb.stats.by_status.get(429, 0) == 0
        assert len(arrivals) == total
        assert max_in_window(arrivals, window) <= limit
        ideal = (total - 1) // limit * window  # the last batch may start after two windows
        assert elapsed <= 1.2 * ideal, f"{elapsed:.2f}s vs ideal {ideal:.2f}s"
