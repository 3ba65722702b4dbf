"""The async client on a second event loop: a new session there, the same budget; never a
bare "Event loop is closed". Refused, with the fix named, while the first loop is open."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from getbill_async import EventLoopError, GetBillClient, LocalBudget, RateLimit, RedisBudget
from tests.redis_fixtures import RedisServer
from tests.sync_helpers import ThreadedSandbox

client: GetBillClient | None = None


@pytest.fixture
def sb(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(followups=50, seed=7) as sandbox:
        monkeypatch.setenv("GETBILL_TOKEN", sandbox.token)
        monkeypatch.setenv("GETBILL_BASE_URL", sandbox.base_url)
        yield sandbox


@pytest.mark.timeout(20)
def test_a_client_cached_across_asyncio_run_calls_keeps_working(sb: ThreadedSandbox) -> None:
    # The reported snippet, as written: a Celery task runs its own loop each time.
    def task() -> int:
        async def go() -> int:
            global client
            client = client or GetBillClient()
            return (await client.followups.list(limit=1)).pagination.total

        return asyncio.run(go())

    assert task() == 50
    assert task() == 50  # was: RuntimeError: Event loop is closed
    assert task() == 50
    assert client is not None
    first_budget = client.budget
    assert client.stats.requests == 3 and client.budget is first_budget
    asyncio.run(client.close())  # from yet another loop: nothing left open, no warning
    assert client.session is not None and client.session.closed


@pytest.mark.timeout(20)
def test_a_budget_that_waited_on_one_loop_waits_on_the_next() -> None:
    # Three reads in a half-second window: the budget's lock and event wait, so they bind
    # to the first loop; the second loop's waits must work as well, and stay exact.
    with ThreadedSandbox(followups=50, seed=7, reads=3, window=0.5) as sb:
        budget = LocalBudget(RateLimit(reads=3, writes=3, window=0.5))
        shared = GetBillClient(sb.token, base_url=sb.base_url, rate_limit=budget)

        async def burst() -> list[int]:
            pages = await asyncio.gather(*(shared.followups.list(limit=1) for _ in range(5)))
            return [page.pagination.total for page in pages]

        assert asyncio.run(burst()) == [50] * 5
        assert asyncio.run(burst()) == [50] * 5
        asyncio.run(shared.close())
        assert sb.read(lambda s: s.answered(429)) == 0
        assert sb.read(lambda s: s.requests_made("read")) == 10


@pytest.mark.timeout(20)
def test_a_redis_budget_cached_across_asyncio_run_calls_connects_again(
    sb: ThreadedSandbox, redis_server: RedisServer
) -> None:
    budget = RedisBudget(redis_server.url, f"test:{uuid.uuid4().hex[:12]}", RateLimit())
    shared = GetBillClient(rate_limit=budget)

    async def task() -> int:
        return (await shared.followups.list(limit=1)).pagination.total

    assert [asyncio.run(task()) for _ in range(3)] == [50, 50, 50]

    async def end() -> int:
        used = (await shared.budget_status()).reads.used
        await shared.close()
        await budget.aclose()
        return used

    assert asyncio.run(end()) == 3


@pytest.mark.timeout(20)
def test_a_client_whose_loop_is_still_open_is_refused_with_the_fix(sb: ThreadedSandbox) -> None:
    first = asyncio.new_event_loop()
    shared = GetBillClient()
    try:
        first.run_until_complete(shared.followups.list(limit=1))

        async def elsewhere() -> None:
            await shared.followups.list(limit=1)

        with pytest.raises(EventLoopError, match=r"still open.*getbill_async\.sync"):
            asyncio.run(elsewhere())
    finally:
        first.run_until_complete(shared.close())
        first.close()
