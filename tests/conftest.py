from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from getbill_async import GetBillClient, RateLimit, RetryPolicy
from getbill_async.sandbox import Sandbox

pytest_plugins = ["tests.redis_fixtures"]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(followups=1000, seed=7) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[GetBillClient]:
    async with GetBillClient(
        sandbox.token,
        base_url=sandbox.base_url,
        rate_limit=RateLimit(reads=1000, writes=500, window=3600.0),
        retry=RetryPolicy(base=0.001, cap=0.01),
    ) as client:
        yield client
