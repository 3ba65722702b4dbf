"""A store that is down while the drainer polls it (a Redis restarting): the drain goes on,
and the log says so once, again at most once a minute, and once more when it works again,
not once per poll."""

from __future__ import annotations

import asyncio
import logging

import pytest

from getbill_async import GetBillClient, Outbox
from getbill_async.sandbox import Sandbox
from tests.redis_fixtures import RedisServer

pytestmark = pytest.mark.timeout(60)


async def test_a_store_that_is_down_is_news_once_not_once_per_poll(
    sandbox: Sandbox, client: GetBillClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="getbill_async.outbox")
    debt = sandbox.debt_ids()[0]
    with RedisServer() as server:
        async with Outbox(client, server.url, name="down", poll=0.02) as outbox:
            await outbox.create(debt_id=debt, type="call", call_id="before")
            await outbox.join(timeout=10)
            caplog.clear()
            server.stop()
            await asyncio.sleep(4)  # each claim retries for 1.3 s, then fails
            server.start()
            await asyncio.sleep(0.5)
            await outbox.create(debt_id=debt, type="call", call_id="after")
            await outbox.join(timeout=10)
    records = [r for r in caplog.records if r.name == "getbill_async.outbox"]
    failures = [r for r in records if r.getMessage() == "outbox drainer failure"]
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(failures) >= 2  # it failed, and failed again
    assert len([m for m in warnings if m.startswith("outbox drainer: OutboxStoreError")]) == 1
    assert len([m for m in warnings if m.startswith("outbox drainer: working again")]) == 1
    assert len(warnings) <= 4, warnings  # the lease renewal's and pruning's, if they failed
    assert sandbox.created_per_call_id() == {"before": 1, "after": 1}
