"""One set of ledger cases for every budget: ``LocalBudget``, ``RedisBudget`` on one node, and
``RedisBudget`` on a 3-node Redis Cluster, so the Python ledger and the Lua one cannot drift.

Real time, short windows: the Redis ledger runs on Redis's clock, which no test can fake. The
local budget is one instance (one process); the Redis ones are a new client per ``make()`` on
one key, like separate workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from getbill_async import (
    Budget,
    BudgetExhaustedError,
    LocalBudget,
    Outcome,
    RateLimit,
    RedisBudget,
    Slot,
)

OK = Outcome(status=200)
Make = Callable[..., Budget]
pytestmark = pytest.mark.timeout(20)


@pytest.fixture(params=["local", "redis", "cluster"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    """``make(**rate)``: a budget on the one ledger of this test (same rate every time)."""
    made: list[RedisBudget] = []
    local: list[LocalBudget] = []
    key = f"conformance:{uuid.uuid4().hex[:12]}"
    url = ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url

    def factory(**rate: Any) -> Budget:
        limit = RateLimit(**{"reads": 10, "writes": 10, "window": 1.0, **rate})
        if request.param == "local":
            if not local:
                local.append(LocalBudget(limit))
            return local[0]
        budget = RedisBudget(url, key, limit, cluster=request.param == "cluster", poll=0.5)
        made.append(budget)
        return budget

    yield factory
    for budget in made:
        await budget.aclose()


async def warm(budget: Budget) -> float:
    """End both classes' cold start with one answer each; when the read one came."""
    for kind in ("write", "read"):
        await budget.release(await budget.acquire(kind), OK)
    return time.monotonic()


async def pending(task: asyncio.Future[Any], seconds: float = 0.15) -> bool:
    await asyncio.sleep(seconds)
    return not task.done()


async def test_the_next_slot_opens_a_window_after_the_oldest_answer(make: Make) -> None:
    budget = make(reads=3, window=0.4)
    answered = await warm(budget)
    for _ in range(2):
        await budget.release(await budget.acquire("read"), OK)
    await asyncio.wait_for(make(reads=3, window=0.4).acquire("read"), 2)
    assert 0.38 <= time.monotonic() - answered < 0.65


async def test_requests_in_flight_hold_slots(make: Make) -> None:
    one, other = make(reads=3), make(reads=3)
    await warm(one)
    flying = [await one.acquire("read") for _ in range(2)]
    waiter = asyncio.ensure_future(other.acquire("read"))
    assert await pending(waiter)
    status = (await other.status()).reads
    assert (status.used, status.in_flight, status.remaining) == (1, 2, 0)
    await one.release(flying[0], Outcome(sent=False))  # never sent: the slot comes back
    await asyncio.wait_for(waiter, 1.5)
    await one.release(flying[1], OK)


async def test_server_headers_reveal_requests_from_elsewhere(make: Make) -> None:
    one, other = make(reads=10, window=0.4), make(reads=10, window=0.4)
    headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "2", "X-RateLimit-Window": "1"}
    await one.release(await one.acquire("read"), Outcome(status=200, headers=headers))
    status = (await other.status()).reads
    assert (status.cold, status.used, status.remaining, status.window) == (False, 8, 2, 1.0)
    assert status.lanes["other"] == 7
    await asyncio.sleep(1.05)  # they free a (server) window after they were seen
    assert (await other.status()).reads.remaining == 10


async def test_a_429_pauses_the_class_for_everyone(make: Make) -> None:
    one, other = make(reads=100), make(reads=100)
    await warm(one)
    slot = await one.acquire("read")
    answered = time.monotonic()
    await one.release(slot, Outcome(status=429, retry_after=0.3))
    blocked = (await other.status()).reads.blocked_for
    assert 0.3 - (time.monotonic() - answered) - 0.02 <= blocked <= 0.3
    await other.release(await asyncio.wait_for(other.acquire("write"), 1), OK)  # writes go on
    await asyncio.wait_for(other.acquire("read"), 2)
    # Reads wait out the pause (measured from the 429, not from this acquire: on a loaded
    # machine the write above may take most of the pause's 0.3 s).
    assert time.monotonic() - answered >= 0.3 - 0.02


async def test_a_429_that_says_the_window_is_full_holds_it_full(make: Make) -> None:
    # A window long beside the pause, so a slow machine's round trips cannot blur the two.
    one, other = make(reads=10, window=3.0), make(reads=10, window=3.0)
    headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"}
    refused = Outcome(status=429, headers=headers, retry_after=0.1)
    await one.release(await one.acquire("read"), refused)  # the first answer, mid-window
    await asyncio.sleep(0.2)  # past the pause: the oldest request elsewhere has freed, but
    # the others may be brand new, so none of them is taken for free
    status = (await other.status()).reads
    assert (status.cold, status.remaining) == (False, 0)
    assert status.next_slot_in > 1.5  # counted from the 429, not freed with the pause


async def test_cold_start_one_at_a_time_until_an_answer(make: Make) -> None:
    one, other = make(reads=10), make(reads=10)
    assert (await one.status()).reads.cold
    first = await one.acquire("read")
    second = asyncio.ensure_future(other.acquire("read"))
    assert await pending(second), "a second request before any answer"
    write = await asyncio.wait_for(other.acquire("write"), 1)  # each class on its own
    await one.release(first, Outcome(status=502))  # maybe a proxy's: proves nothing
    taken = await asyncio.wait_for(second, 1.5)
    third = asyncio.ensure_future(one.acquire("read"))
    assert await pending(third), "still cold after a 502"
    await other.release(taken, OK)  # an answer without headers ends the cold start too
    await asyncio.wait_for(third, 1.5)
    together = [await asyncio.wait_for(other.acquire("read"), 1) for _ in range(3)]
    status = (await one.status()).reads
    assert (status.cold, status.in_flight) == (False, 4)
    for slot in [third.result(), *together]:
        await one.release(slot, OK)
    await other.release(write, Outcome(sent=False))


async def test_max_wait_refuses_at_once_with_when_a_slot_opens(make: Make) -> None:
    budget = make(reads=1, window=5.0)
    await warm(budget)
    started = time.monotonic()
    with pytest.raises(BudgetExhaustedError, match=r"read budget exhausted: next slot in [45]\.\d"):
        await budget.acquire("read", max_wait=1.0)
    assert time.monotonic() - started < 0.5


async def test_a_cancelled_waiter_leaves_nothing_behind(make: Make) -> None:
    one, other = make(reads=2), make(reads=2)
    await warm(one)
    held = await one.acquire("read")
    waiter = asyncio.ensure_future(other.acquire("read"))
    assert await pending(waiter)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await one.release(held, Outcome(sent=False))
    await asyncio.sleep(0.1)  # a Redis waiter hands back what it may have taken, in a task
    assert (await one.status()).reads.in_flight == 0
    await one.release(await asyncio.wait_for(other.acquire("read"), 1), OK)


async def test_bulk_stops_at_the_reserve_and_interactive_may_use_it(make: Make) -> None:
    bulk, service = make(reads=5, reserve=0.4), make(reads=5, reserve=0.4)
    await warm(service)  # one interactive slot counted: bulk may take 2 more (cap 3)
    taken = [await bulk.acquire("read", lane="bulk") for _ in range(2)]
    third = asyncio.ensure_future(bulk.acquire("read", lane="bulk"))
    assert await pending(third), "bulk past limit x (1 - reserve)"
    mine = [await asyncio.wait_for(service.acquire("read"), 1) for _ in range(2)]
    status = (await service.status()).reads
    assert (status.reserved, status.remaining) == (2, 0)
    assert (status.lanes["interactive"], status.lanes["bulk"]) == (3, 2)
    for slot in [*taken, *mine]:
        await service.release(slot, Outcome(sent=False))
    await asyncio.wait_for(third, 1.5)
    await bulk.release(third.result(), OK)


async def test_a_waiting_interactive_request_goes_before_waiting_bulk_ones(make: Make) -> None:
    bulk, service = make(reads=2), make(reads=2)
    await warm(service)
    held = await service.acquire("read", lane="bulk")
    waiting_bulk = asyncio.ensure_future(bulk.acquire("read", lane="bulk"))
    assert await pending(waiting_bulk)
    waiting_person = asyncio.ensure_future(service.acquire("read"))
    assert await pending(waiting_person)
    await service.release(held, Outcome(sent=False))  # one slot frees: whose is it?
    person: Slot = await asyncio.wait_for(waiting_person, 1.5)
    assert await pending(waiting_bulk, 0.3), "bulk went ahead of a waiting interactive call"
    await service.release(person, Outcome(sent=False))
    await bulk.release(await asyncio.wait_for(waiting_bulk, 1.5), OK)


async def test_an_interactive_request_that_gives_up_holds_no_bulk_back(make: Make) -> None:
    bulk, service = make(reads=2), make(reads=2)
    await warm(service)
    held = await bulk.acquire("read", lane="bulk")
    waiting_bulk = asyncio.ensure_future(bulk.acquire("read", lane="bulk"))
    assert await pending(waiting_bulk)
    with pytest.raises(BudgetExhaustedError):
        await service.acquire("read", max_wait=0.2)  # refused: it leaves, unserved
    await asyncio.sleep(0.1)  # a Redis one takes its mark back in a task
    await bulk.release(held, Outcome(sent=False))
    await bulk.release(await asyncio.wait_for(waiting_bulk, 0.5), OK)


def test_reserve_is_validated() -> None:
    with pytest.raises(ValueError, match=r"RateLimit.reserve must be a number >= 0 and < 1"):
        RateLimit(reserve=1.0)
    with pytest.raises(ValueError, match=r"RateLimit.reserve .* got -0.1"):
        RateLimit(reserve=-0.1)
    with pytest.raises(ValueError, match=r"RateLimit.reserve .* got '0.2'"):
        RateLimit(reserve="0.2")  # type: ignore[arg-type]


async def test_lanes_are_validated() -> None:
    with pytest.raises(ValueError, match=r"lane must be 'interactive' or 'bulk', got 'urgent'"):
        await LocalBudget().acquire("read", lane="urgent")  # type: ignore[arg-type]


async def test_the_window_follows_the_servers_latest_word_not_its_largest(make: Make) -> None:
    one, other = make(reads=3, window=0.5), make(reads=3, window=0.5)
    said = [("5", "2"), ("5", "1"), ("0.3", "0")]  # a window of 5 s, then the server says 0.3
    for window, remaining in said:
        headers = {
            "X-RateLimit-Limit": "3",
            "X-RateLimit-Remaining": remaining,
            "X-RateLimit-Window": window,
        }
        await one.release(await one.acquire("read"), Outcome(status=200, headers=headers))
    answered = time.monotonic()
    status = (await other.status()).reads
    assert (status.window, status.remaining) == (0.3, 0)
    # Every slot counted so far frees 0.3 s after the last answer at the latest, not 5 s.
    assert 0.0 < status.next_slot_in <= 0.3
    await asyncio.sleep(max(0.0, 0.35 - (time.monotonic() - answered)))
    assert (await other.status()).reads.remaining == 3
