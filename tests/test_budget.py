"""The sliding-window ledger, on a fake clock: no test here sleeps."""

from __future__ import annotations

import asyncio
import math

import pytest

from getbill_async import BudgetExhaustedError, LocalBudget, Outcome, RateLimit, Slot
from tests.helpers import FakeClock, max_in_window, settle

OK = Outcome(status=200)


async def make(
    reads: int = 3, writes: int = 2, window: float = 10.0, max_wait: float | None = None
) -> tuple[LocalBudget, FakeClock]:
    """A budget past its cold start: each class has had one answer, a window ago."""
    clock = FakeClock()
    rate = RateLimit(reads=reads, writes=writes, window=window, max_wait=max_wait)
    budget = LocalBudget(rate, clock=clock)
    await warm(budget, clock)
    return budget, clock


async def warm(budget: LocalBudget, clock: FakeClock) -> None:
    for kind in ("read", "write"):
        await budget.release(await budget.acquire(kind), OK)
    await clock.advance(budget.rate_limit.window)


async def test_admits_up_to_limit_then_waits_a_window_from_the_answer() -> None:
    budget, clock = await make(reads=3)
    slots = [await budget.acquire("read") for _ in range(3)]
    for slot in slots:
        await budget.release(slot, OK)
    waiter = asyncio.ensure_future(budget.acquire("read"))
    await settle()
    assert not waiter.done()
    await clock.advance(9.9)
    assert not waiter.done()
    await clock.advance(0.1)
    slot = await asyncio.wait_for(waiter, 1)
    assert slot.waited == pytest.approx(10.0)


async def test_slot_counts_from_the_answer_not_the_send() -> None:
    budget, clock = await make(reads=1)
    slot = await budget.acquire("read")
    await clock.advance(5.0)  # a slow answer: the request may have reached the server just now
    await budget.release(slot, OK)
    waiter = asyncio.ensure_future(budget.acquire("read"))
    await clock.advance(9.0)
    assert not waiter.done()
    await clock.advance(1.0)
    await asyncio.wait_for(waiter, 1)


async def test_in_flight_requests_hold_slots() -> None:
    budget, clock = await make(reads=2)
    first = await budget.acquire("read")
    await budget.acquire("read")
    waiter = asyncio.ensure_future(budget.acquire("read"))
    await clock.advance(100.0)
    assert not waiter.done(), "two in flight: a third would be over the limit"
    await budget.release(first, OK)
    await clock.advance(9.0)
    assert not waiter.done()
    await clock.advance(1.0)
    await asyncio.wait_for(waiter, 1)


async def test_reads_and_writes_are_counted_apart() -> None:
    budget, _ = await make(reads=1, writes=1)
    await budget.release(await budget.acquire("read"), OK)
    write = await asyncio.wait_for(budget.acquire("write"), 1)
    assert write.kind == "write"
    status = budget.snapshot()
    assert (status.reads.used, status.reads.remaining) == (1, 0)
    assert (status.writes.in_flight, status.writes.remaining) == (1, 0)
    assert status.reads.next_slot_in == pytest.approx(10.0)


async def test_never_over_limit_in_any_window_under_random_latency() -> None:
    import random

    rng = random.Random(3)
    budget, clock = await make(reads=5, window=10.0)
    sent: list[float] = []
    answered: list[float] = []

    async def one() -> None:
        slot = await budget.acquire("read")
        sent.append(clock.now())
        await clock.sleep(rng.uniform(0, 4))
        answered.append(clock.now())
        await budget.release(slot, OK)

    tasks = [asyncio.ensure_future(one()) for _ in range(40)]
    for _ in range(2000):
        await clock.advance(0.05)
        if all(t.done() for t in tasks):
            break
    assert all(t.done() for t in tasks)
    # The server sees each arrival somewhere between send and answer: both extremes stay within.
    assert max_in_window(sent, 10.0) <= 5
    assert max_in_window(answered, 10.0) <= 5


async def test_waiters_are_served_first_come_first_served() -> None:
    budget, clock = await make(reads=1)
    await budget.release(await budget.acquire("read"), OK)
    order: list[int] = []

    async def take(i: int) -> None:
        slot = await budget.acquire("read")
        order.append(i)
        await budget.release(slot, OK)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.ensure_future(take(i)))
        await settle(2)
    for _ in range(60):
        await clock.advance(1.0)
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert order == [0, 1, 2, 3, 4]


async def test_server_headers_reveal_requests_from_elsewhere() -> None:
    budget, clock = await make(reads=10)
    slot = await budget.acquire("read")
    # The server counts 8 used: 7 came from another program sharing the OAuth client.
    headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "2", "X-RateLimit-Window": "10"}
    await budget.release(slot, Outcome(status=200, headers=headers))
    assert budget.snapshot().reads.remaining == 2
    await clock.advance(9.99)
    assert budget.snapshot().reads.remaining == 2, "unseen slots free a window after now"
    await clock.advance(0.02)
    assert budget.snapshot().reads.remaining == 10


async def test_server_limit_and_window_tighten_the_ledger() -> None:
    budget, _ = await make(reads=10, window=10.0)
    headers = {"X-RateLimit-Limit": "4", "X-RateLimit-Remaining": "3", "X-RateLimit-Window": "20"}
    await budget.release(await budget.acquire("read"), Outcome(status=200, headers=headers))
    status = budget.snapshot().reads
    assert (status.limit, status.window, status.remaining) == (4, 20.0, 3)


async def test_a_429_pauses_the_class_for_every_task() -> None:
    budget, clock = await make(reads=100, writes=100)
    slot = await budget.acquire("read")
    await budget.release(slot, Outcome(status=429, retry_after=2.5))
    waiters = [asyncio.ensure_future(budget.acquire("read")) for _ in range(3)]
    write = await asyncio.wait_for(budget.acquire("write"), 1)  # writes are not paused
    assert write.kind == "write"
    await clock.advance(2.4)
    assert not any(w.done() for w in waiters)
    assert budget.snapshot().reads.blocked_for == pytest.approx(0.1)
    await clock.advance(0.1)
    await asyncio.wait_for(asyncio.gather(*waiters), 1)


async def test_max_wait_raises_at_once_with_when_the_next_slot_opens() -> None:
    budget, clock = await make(reads=1, max_wait=5.0)
    await budget.release(await budget.acquire("read"), OK)
    await clock.advance(2.0)
    with pytest.raises(BudgetExhaustedError, match=r"read budget exhausted: next slot in 8.0s"):
        await budget.acquire("read")
    await clock.advance(3.0)  # now 5 s away: within max_wait, so it waits
    waiter = asyncio.ensure_future(budget.acquire("read"))
    await clock.advance(5.0)
    await asyncio.wait_for(waiter, 1)


async def test_a_request_never_sent_gives_its_slot_back() -> None:
    budget, _ = await make(reads=1)
    slot = await budget.acquire("read")
    await budget.release(slot, Outcome(sent=False))
    assert budget.snapshot().reads.remaining == 1
    await asyncio.wait_for(budget.acquire("read"), 1)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    budget, clock = await make(reads=1)
    await budget.release(await budget.acquire("read"), OK)
    first = asyncio.ensure_future(budget.acquire("read"))
    await settle()
    second = asyncio.ensure_future(budget.acquire("read"))
    await settle()
    first.cancel()
    await clock.advance(10.0)
    assert isinstance(await asyncio.wait_for(second, 1), Slot)


async def test_pace_spreads_requests_evenly() -> None:
    budget = LocalBudget(RateLimit(reads=10, window=1.0, pace=True))
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(4):
        await budget.release(await budget.acquire("read"), OK)
        times.append(loop.time())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.08  # one per window/limit = 0.1 s, give or take the loop's clock


def test_rate_limit_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="RateLimit.reads must be an integer >= 1, got 0"):
        RateLimit(reads=0)
    with pytest.raises(ValueError, match="RateLimit.window must be > 0 seconds"):
        RateLimit(window=0)
    with pytest.raises(ValueError, match="max_wait must be >= 0"):
        RateLimit(max_wait=-1)


def counted(n: int, limit: int = 3) -> Outcome:
    """An answer whose server counted ``n`` requests in its window at the arrival."""
    headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - n)}
    return Outcome(status=200, headers=headers)


async def test_a_count_one_of_ours_may_have_left_holds_a_slot_until_a_later_answer() -> None:
    budget, clock = await make(reads=3, window=10.0)
    first = await budget.acquire("read")
    await clock.advance(1.0)
    await budget.release(first, OK)  # frees here at +11
    await clock.advance(9.5)
    second = await budget.acquire("read")  # sent at +10.5, before the first one freed
    await clock.advance(1.0)  # answered at +11.5: the first slot has freed here meanwhile
    # The server counted 2 at the second's arrival: the first (had it arrived after +0.5 and
    # the second before +11), or another program's request, which may be brand new.
    await budget.release(second, counted(2))
    reads = budget.snapshot().reads
    assert (reads.remaining, reads.lanes["other"]) == (1, 1)
    await clock.advance(0.1)
    third = await budget.acquire("read")  # sent after that answer: it arrives later
    await clock.advance(0.5)
    await budget.release(third, counted(2))  # the second and itself: nobody else
    reads = budget.snapshot().reads
    assert (reads.remaining, reads.lanes["other"]) == (1, 0), "no phantom slot for a window"


async def test_a_request_in_flight_at_a_count_stands_for_others_only_until_answered() -> None:
    budget, clock = await make(reads=4, window=10.0)
    await budget.release(await budget.acquire("read"), counted(1, 4))  # warm: 1 counted
    slow, quick = await budget.acquire("read"), await budget.acquire("read")
    await clock.advance(1.0)
    # 3 counted at the quick one's arrival: the first, itself, and the slow one (had it
    # arrived already) or another program's request.
    await budget.release(quick, counted(3, 4))
    reads = budget.snapshot().reads
    assert (reads.in_flight, reads.lanes["other"], reads.remaining) == (1, 1, 0)
    await clock.advance(1.0)
    await budget.release(slow, counted(3, 4))  # it had: nobody else was there
    reads = budget.snapshot().reads
    assert (reads.lanes["other"], reads.remaining) == (0, 1)
    assert await asyncio.wait_for(budget.acquire("read"), 1)


async def test_max_wait_per_call_overrides_the_budget_default() -> None:
    clock = FakeClock()
    budget = LocalBudget(RateLimit(reads=1, writes=1, window=10.0), clock=clock)
    await budget.release(await budget.acquire("read"), OK)
    with pytest.raises(BudgetExhaustedError, match="read"):
        await budget.acquire("read", max_wait=1.0)
    waiter = asyncio.ensure_future(budget.acquire("read", lane="bulk", max_wait=math.inf))
    await clock.advance(10.0)
    slot = await asyncio.wait_for(waiter, 1)
    assert slot.kind == "read"


# --- cold start: a fresh budget learns what others spent from its first answer -------------

HEADERS = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "6", "X-RateLimit-Window": "10"}


async def test_cold_start_admits_one_request_per_class_until_the_server_answers() -> None:
    clock = FakeClock()
    budget = LocalBudget(RateLimit(reads=10, writes=10, window=10.0), clock=clock)
    assert budget.snapshot().reads.cold
    first = await budget.acquire("read")
    second = asyncio.ensure_future(budget.acquire("read"))
    await clock.advance(100.0)
    assert not second.done(), "a second read before the first answer could be over the window"
    write = await asyncio.wait_for(budget.acquire("write"), 1)  # each class has its own start
    await budget.release(first, Outcome(status=200, headers=HEADERS))
    await asyncio.wait_for(second, 1)
    status = budget.snapshot().reads
    # The server counted 4: ours and 3 from elsewhere; the rest are free at once, together.
    assert (status.cold, status.used, status.in_flight, status.remaining) == (False, 4, 1, 5)
    more = [await asyncio.wait_for(budget.acquire("read"), 1) for _ in range(5)]
    assert len(more) == 5
    assert budget.snapshot().writes.cold
    await budget.release(write, Outcome(sent=False))


@pytest.mark.parametrize(
    ("outcome", "ends"),
    [
        (Outcome(status=200, headers=HEADERS), True),
        (Outcome(status=503, headers=HEADERS), True),  # a 5xx with headers came from the API
        (Outcome(status=429, retry_after=1.0), True),
        (Outcome(status=200), True),  # a server that never sends the headers is not held back
        (Outcome(status=404), True),
        (Outcome(status=401), False),  # answered before the server knew whose budget it is
        (Outcome(status=502), False),  # maybe a proxy's answer: nothing about the window
        (Outcome(status=None), False),  # no answer
        (Outcome(sent=False), False),
    ],
)
async def test_which_answers_end_the_cold_start(outcome: Outcome, ends: bool) -> None:
    clock = FakeClock()
    budget = LocalBudget(RateLimit(reads=10, window=10.0), clock=clock)
    await budget.release(await budget.acquire("read"), outcome)
    assert budget.snapshot().reads.cold is not ends


async def test_max_wait_bounds_the_wait_for_the_first_answer() -> None:
    clock = FakeClock()
    budget = LocalBudget(RateLimit(reads=10, window=10.0), clock=clock)
    first = await budget.acquire("read")
    waiter = asyncio.ensure_future(budget.acquire("read", max_wait=2.0))
    await settle()
    await clock.advance(1.0)
    assert not waiter.done(), "the first answer is a round trip away, not a window"
    await clock.advance(1.0)
    with pytest.raises(BudgetExhaustedError, match="over max_wait 2s"):
        await asyncio.wait_for(waiter, 1)
    await budget.release(first, OK)


@pytest.mark.timeout(10)
async def test_a_task_cancelled_while_paced_gives_its_slot_back() -> None:
    # Real time: the pacer is aiolimiter's, on the loop's clock. One request per 0.1 s.
    budget = LocalBudget(RateLimit(reads=2, window=0.2, pace=True))
    await budget.release(await budget.acquire("read"), OK)  # warm: the pacer is spent now
    for _ in range(3):  # more cancellations than the limit: each leak would be for good
        paced = asyncio.ensure_future(budget.acquire("read"))
        await asyncio.sleep(0.01)
        assert not paced.done()
        paced.cancel()
        with pytest.raises(asyncio.CancelledError):
            await paced
        assert budget.snapshot().reads.in_flight == 0
    slot = await asyncio.wait_for(budget.acquire("read"), 2)
    await budget.release(slot, OK)
