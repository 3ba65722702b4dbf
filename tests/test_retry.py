"""Retry decisions (pure functions) and the retry loop's bounds, against the sandbox."""

from __future__ import annotations

import time

import pytest

from getbill_async import APITimeoutError, GetBillClient, RateLimit, RetryPolicy, ServerError
from getbill_async.sandbox import FaultPlan, Sandbox
from getbill_async.transport._retry import MAX_RETRY_AFTER, retry_after_seconds, should_retry


@pytest.mark.parametrize(
    ("kind", "status", "sent", "expected"),
    [
        ("read", 429, True, True),
        ("read", 500, True, True),
        ("read", 502, True, True),
        ("read", 503, True, True),
        ("read", 504, True, True),
        ("read", 501, True, False),
        ("read", None, True, True),  # timeout, reset, garbled body
        ("read", 404, True, False),
        ("read", 400, True, False),
        ("write", 429, True, True),
        ("write", None, False, True),  # never left: safe
        ("write", None, True, False),  # may have happened: ambiguous
        ("write", 500, True, False),
        ("write", 422, True, False),
    ],
)
def test_should_retry(kind: str, status: int | None, sent: bool, expected: bool) -> None:
    assert should_retry(kind, status, sent) is expected  # type: ignore[arg-type]


def test_retry_after_sources_in_order() -> None:
    assert retry_after_seconds({"retry_after": 12}, {"Retry-After": "3"}) == 12.0
    assert retry_after_seconds({}, {"Retry-After": "3"}) == 3.0
    assert retry_after_seconds(None, {"X-RateLimit-Reset": "1000.5"}, now=990.0) == 10.5
    assert retry_after_seconds(None, {}) is None


def test_absurd_waits_are_ignored() -> None:
    assert retry_after_seconds({"retry_after": 1e12}, {"Retry-After": "4"}) == 4.0
    assert retry_after_seconds({}, {"Retry-After": "inf"}) is None
    assert retry_after_seconds({}, {"Retry-After": "nan"}) is None
    assert retry_after_seconds({"retry_after": True}, {}) is None
    assert retry_after_seconds({}, {"Retry-After": str(MAX_RETRY_AFTER + 1)}) is None


@pytest.mark.timeout(30)
async def test_max_time_counts_the_first_try_too() -> None:
    always_503 = FaultPlan(rate=1.0, kinds=("503",))
    async with Sandbox(followups=10, latency=0.1, faults=always_503) as sb:
        policy = RetryPolicy(max_tries=100, max_time=0.35, base=0.001, cap=0.001)
        rate = RateLimit(reads=10_000)
        async with GetBillClient(
            sb.token, base_url=sb.base_url, retry=policy, rate_limit=rate
        ) as c:
            started = time.monotonic()
            # The last try is cut short by the deadline (a timeout naming max_time), unless
            # the third answer came after the deadline already (a slow machine).
            with pytest.raises((ServerError, APITimeoutError)) as info:
                await c.followups.list()
            elapsed = time.monotonic() - started
        if isinstance(info.value, APITimeoutError):
            assert "max_time ran out" in str(info.value)
        assert 2 <= sb.stats.requests <= 4, sb.stats.requests
        assert elapsed < 0.35 + 0.15
        assert c.stats.retries == sb.stats.requests - 1
