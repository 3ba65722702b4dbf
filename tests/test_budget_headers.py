"""The server's ``X-RateLimit-*`` headers, believed only within a sane range.

A window over a day, a Reset more than a day away, a negative or non-finite value: each is a
unit mistake or a broken proxy, ignored with one warning per header (not one per answer). The
window follows the server's latest word, not its largest.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from getbill_async import GetBillClient, LocalBudget, Outcome, RateLimit, RetryPolicy
from getbill_async.budget import parse_headers
from tests.helpers import FakeClock
from tests.loopback import serve

LOGGER = "getbill_async"


async def answer(budget: LocalBudget, headers: dict[str, str]) -> None:
    await budget.release(await budget.acquire("read"), Outcome(status=200, headers=headers))


async def test_the_window_follows_the_servers_latest_word_not_its_largest() -> None:
    clock = FakeClock()
    budget = LocalBudget(RateLimit(reads=10, window=2.0), clock=clock)
    # One answer said 2000 (milliseconds meant), the next ones 2.
    await answer(budget, {"X-RateLimit-Window": "2000", "X-RateLimit-Remaining": "9"})
    await answer(budget, {"X-RateLimit-Window": "2", "X-RateLimit-Remaining": "8"})
    assert budget.snapshot().reads.window == 2.0
    # The two slots counted so far free 2 s after their answers, not 2,000 s.
    await clock.advance(2.01)
    assert budget.snapshot().reads.remaining == 10


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-RateLimit-Window", "1e15"),
        ("X-RateLimit-Window", "86401"),
        ("X-RateLimit-Window", "-5"),
        ("X-RateLimit-Window", "nan"),
        ("X-RateLimit-Window", "inf"),
        ("X-RateLimit-Remaining", "-1"),
        ("X-RateLimit-Limit", "inf"),
        ("X-RateLimit-Reset", str(1_700_000_000 + 1000 + 86_400 * 400)),
    ],
)
async def test_values_out_of_range_are_ignored_with_one_warning(
    name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()  # wall() is 1_700_000_000 + 1000 at the start
    budget = LocalBudget(RateLimit(reads=10, window=5.0), clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(5):
            await answer(budget, {name: value})
    status = budget.snapshot().reads
    assert (status.window, status.limit) == (5.0, 10)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert warned[0].startswith(f"ignoring {name}: '{value}'")


def test_parse_headers_drops_what_is_out_of_range_and_keeps_the_rest() -> None:
    headers = {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "1e300",
        "X-RateLimit-Window": "3600",
    }
    assert parse_headers(headers) == (1000, None, 3600.0)
    assert parse_headers({"X-RateLimit-Window": "86400"}) == (None, None, 86400.0)
    assert parse_headers({"X-RateLimit-Window": "0"}) == (None, None, None)


@pytest.mark.timeout(15)
async def test_a_window_of_1e15_with_nothing_left_does_not_freeze_the_client() -> None:
    seen: list[float] = []
    window_answers = ["1e15", "1"]  # what the server says in X-RateLimit-Window, per answer

    async def page(request: web.Request) -> web.Response:
        seen.append(asyncio.get_running_loop().time())
        window = window_answers[min(len(seen) - 1, len(window_answers) - 1)]
        headers = {
            "X-RateLimit-Limit": "3",
            "X-RateLimit-Remaining": "0" if len(seen) == 1 else "2",
            "X-RateLimit-Window": window,
        }
        pagination = {"total": 0, "page": 1, "limit": 1, "pages": 0}
        body = {"error": False, "data": [], "pagination": pagination}
        return web.json_response(body, headers=headers)

    app = web.Application()
    app.router.add_get("/v1/followups", page)
    async with serve(app) as root:
        rate = RateLimit(reads=3, window=1.0)
        retry = RetryPolicy(max_tries=1)
        async with GetBillClient("t", base_url=root + "/v1", rate_limit=rate, retry=retry) as c:
            await c.followups.list(limit=1)  # Remaining 0: the window is full, for 1 s
            await asyncio.wait_for(c.followups.list(limit=1), 5)
            assert (await c.budget_status()).reads.window == 1.0
    assert len(seen) == 2 and 0.9 <= seen[1] - seen[0] < 3
