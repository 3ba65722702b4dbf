"""The ledger against an exact model of a strict server (see ``tests/window_model.py``).

The server counts a request when it arrives, somewhere between its send and its answer, and
its ``X-RateLimit-Remaining`` is that moment's exact sliding-window count, other programs'
requests included. The invariant: the ledger never admits a request that would put more than
the limit in any server window, counting its own requests and every other program's request
that an answer had already reported when the ledger admitted it. Other programs send before
the process starts and while it runs; both ledgers (``LocalBudget`` and the Lua one behind
``RedisBudget``) are held to it, and the cases that broke the rule before it are kept below.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from getbill_async import LocalBudget, RateLimit, RedisBudget
from tests.helpers import FakeClock
from tests.redis_fixtures import RedisServer
from tests.window_model import Run, Trip, drive

WINDOW = 10.0
START = 1000.0
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
pytestmark = pytest.mark.timeout(30)

halves = st.integers(0, 30).map(lambda n: n / 2)  # 0 to 15 s (a window and a half), by 0.5
trips = st.lists(
    st.builds(Trip, latency=halves, reach=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])),
    min_size=2,
    max_size=12,
)


async def run_local(limit: int, others: list[float], sent: list[Trip], concurrency: int) -> Run:
    clock = FakeClock(START)

    async def advance_to(time: float) -> None:
        await clock.advance(time - clock.t)

    budget = LocalBudget(RateLimit(reads=limit, window=WINDOW), clock=clock)
    run = Run(limit, WINDOW, [START + t for t in others])
    return await drive(budget, run, sent, concurrency, (clock.now, advance_to))


@SETTINGS
@given(
    limit=st.integers(2, 5),
    others=st.lists(st.integers(-19, -1).map(lambda n: n / 2), max_size=6),
    sent=trips,
    concurrency=st.integers(1, 4),
)
async def test_a_process_started_after_another_spent_the_window_never_overshoots(
    limit: int, others: list[float], sent: list[Trip], concurrency: int
) -> None:
    # Other programs sent before this process started (mid-window): the first answer tells.
    run = await run_local(limit, others, sent, concurrency)
    assert run.sent == len(sent)
    assert max(run.known) <= limit, run
    # Nothing else came, so the server's whole count holds too, but at the cold probe's
    # arrival: the first request cannot know what others spent.
    assert max(run.counted[1:], default=0) <= limit, run


# Enough examples to find the cases below against the rule they broke (200 did).
@settings(SETTINGS, max_examples=300)
@given(
    limit=st.integers(2, 5),
    others=st.lists(st.integers(-19, 50).map(lambda n: n / 2), max_size=8),
    sent=trips,
    concurrency=st.integers(1, 4),
)
async def test_other_programs_sending_during_the_run_never_push_a_known_count_over(
    limit: int, others: list[float], sent: list[Trip], concurrency: int
) -> None:
    # Other programs send before and while this process does: every request of theirs that an
    # answer reported before the ledger admitted one of ours is counted with ours.
    run = await run_local(limit, others, sent, concurrency)
    assert run.sent == len(sent)
    assert max(run.known) <= limit, run


# The Lua ledger runs on Redis's clock, so in real time: a short window, a few examples.
SCALE = 0.025  # model seconds to real ones: a window of 0.25 s


async def advance_in_real_time(time_to: float) -> None:
    await asyncio.sleep(max(0.0, time_to - time.monotonic()))


@settings(
    SETTINGS,
    max_examples=8,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(2, 4),
    others=st.lists(st.integers(-19, 30).map(lambda n: n / 2), max_size=6),
    sent=trips.map(lambda ts: [Trip(t.latency * SCALE, t.reach) for t in ts[:8]]),
    concurrency=st.integers(1, 3),
)
async def test_the_lua_ledger_holds_too(
    redis_server: RedisServer, limit: int, others: list[float], sent: list[Trip], concurrency: int
) -> None:
    window = WINDOW * SCALE
    rate = RateLimit(reads=limit, window=window)
    key = f"window-model:{uuid.uuid4().hex[:12]}"
    async with RedisBudget(redis_server.url, key, rate, poll=0.05) as budget:
        start = time.monotonic()
        run = Run(limit, window, [start + t * SCALE for t in others])
        clock = (time.monotonic, advance_in_real_time)
        await asyncio.wait_for(drive(budget, run, sent, concurrency, clock), 10)
    assert run.sent == len(sent)
    assert max(run.known) <= limit, run
    if all(t < 0 for t in others):  # all spent before the start: the whole count holds
        assert max(run.counted[1:], default=0) <= limit, run


INSTANT = Trip(0.0, 0.0)
# Times from the start, a window of 10 s. Each case: the limit, the other program's requests,
# the trips in the order they are sent, the concurrency, and our arrivals.
LATE_ANSWER = (
    # At 0 an instant request learns that another program sent one at 0 too. At 10, one
    # instant request, and one that reaches the server at once but is answered at 10.5. The
    # other program sends at 11. At 20 an instant request finds the server counting it and
    # that program's (Remaining 0); the ledger takes the count for that one and the slot
    # answered at 10.5, which the server dropped at 20. At 20.5 that slot frees and a fifth
    # request goes: three in the server's window (11, 20, 20.5), the one at 11 reported
    # before it was sent.
    2,
    [0.0, 11.0],
    [INSTANT, INSTANT, Trip(0.5, 0.0), INSTANT, INSTANT],
    1,
    [0.0, 10.0, 10.0, 20.0, 20.5],
)
IN_FLIGHT = (
    # Limit 3. At 0 an instant request; then two together: one arrives at 5 (answered at 5),
    # one arrives at 1 (answered at 2). The other program sends at 0.5. The answer at 2 says
    # 0 remain (0, 0.5 and 1): the ledger takes the count for its request in flight, which
    # the server had not seen yet. At 10 the first slot frees and a fourth request goes: four
    # in the server's window (0.5, 1, 5, 10), the one at 0.5 reported before it was sent.
    3,
    [0.5],
    [INSTANT, Trip(5.0, 1.0), Trip(2.0, 0.5), INSTANT],
    2,
    [0.0, 1.0, 5.0, 10.0],
)


@pytest.mark.parametrize(
    ("limit", "others", "sent", "concurrency", "arrivals"),
    [LATE_ANSWER, IN_FLIGHT],
    ids=["answered-late", "in-flight"],
)
async def test_a_count_is_not_explained_by_a_slot_the_server_may_not_hold(
    limit: int, others: list[float], sent: list[Trip], concurrency: int, arrivals: list[float]
) -> None:
    # Under the rule these cases were found against, the arrivals were ``arrivals``: the
    # last one went while the count it had taken for ours was another program's request.
    run = await run_local(limit, others, sent, concurrency)
    assert max(run.known) <= limit, run
    assert [round(t - START, 1) for t in run.ours][:-1] == arrivals[:-1]
    assert run.ours[-1] - START > arrivals[-1], "the last one waits for the other's slot"
