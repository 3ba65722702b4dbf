"""The outbox against the real sandbox: merging, order, dead letters, backpressure, bad input.

Every case runs on each store the ``store`` fixture gives: an SQLite file, and a Redis
database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from aiohttp import web

from getbill_async import GetBillClient, Outbox, OutboxFullError
from getbill_async.errors import ValidationError
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import WriteLog, fast_client
from tests.redis_fixtures import RedisServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh outbox store: an SQLite file, or an emptied Redis database (db 9 of the
    session's redis-server; the tests run one at a time)."""
    if request.param == "sqlite":
        return str(tmp_path / "outbox.db")
    server: RedisServer = request.getfixturevalue("redis_server")
    url = server.url.rpartition("/")[0] + "/9"
    with redis.Redis.from_url(url) as conn:
        conn.flushdb()
    return url


@pytest.fixture
async def writes(sandbox: Sandbox) -> AsyncIterator[WriteLog]:
    async with WriteLog() as log:
        sandbox.add_webhook(log.url)
        yield log
        await sandbox.webhooks_idle()


def call(debt: str, call_id: str, **fields: object) -> dict[str, object]:
    return {"debt_id": debt, "type": "call", "status": "in_progress", "call_id": call_id, **fields}


async def test_pending_create_and_updates_merge_into_one_write(
    sandbox: Sandbox, client: GetBillClient, store: str, writes: WriteLog
) -> None:
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, store, drain=False) as producer:
        await producer.create(**call(debt, "m-1"))
        await producer.update("m-1", status="no_answer")
        await producer.update("m-1", status="deal_found", duration_ms=9000)
        await producer.create(**call(debt, "m-1", summary="replayed"))  # a duplicate: no-op
        status = await producer.status()
        assert (status.pending, status.merged) == (1, 2)
    async with Outbox(client, store, poll=0.05) as drainer:
        await drainer.join(timeout=10)
        assert (await drainer.status()).done == 1
    await sandbox.webhooks_idle()
    assert writes.per_call("m-1") == [("followup.created", "deal_found")]
    assert sandbox.created_per_call_id()["m-1"] == 1


async def test_pending_updates_merge_later_fields_win(
    sandbox: Sandbox, client: GetBillClient, store: str, writes: WriteLog
) -> None:
    target = sandbox.followup_ids()[0]  # a followup the outbox never created: key = its id
    async with Outbox(client, store, drain=False) as producer:
        await producer.update(target, status="no_answer", summary="first")
        await producer.update(target, status="deal_found")
        await producer.update(target, status="deal_found")  # nothing new: not even merged
        assert (await producer.status()).merged == 1
    async with Outbox(client, store, poll=0.05) as drainer:
        await drainer.join(timeout=10)
    await sandbox.webhooks_idle()
    assert writes.count() == {"followup.updated": 1}
    record = sandbox.followup(target)
    assert record is not None
    assert (record["status"], record["summary"]) == ("deal_found", "first")


async def test_update_of_a_create_in_flight_waits_then_goes_as_a_put(
    store: str, writes: WriteLog, tmp_path: Path
) -> None:
    async with Sandbox(followups=50, latency=0.4) as slow, WriteLog() as log:
        slow.add_webhook(log.url)
        async with fast_client(slow) as client, Outbox(client, store, poll=0.02) as outbox:
            await outbox.create(**call(slow.debt_ids()[0], "f-1"))
            for _ in range(200):
                if (await outbox.status()).in_flight:
                    break
                await asyncio.sleep(0.01)
            await outbox.update("f-1", status="deal_found")
            await outbox.join(timeout=10)
            assert (await outbox.status()).merged == 0
        await slow.webhooks_idle()
        assert log.per_call("f-1") == [
            ("followup.created", "in_progress"),
            ("followup.updated", "deal_found"),
        ]


async def test_per_key_order_and_many_keys(
    sandbox: Sandbox, client: GetBillClient, store: str, writes: WriteLog
) -> None:
    debts = sandbox.debt_ids()[:5]
    async with Outbox(client, store, concurrency=8, poll=0.02) as outbox:
        for i in range(40):
            await outbox.create(**call(debts[i % 5], f"o-{i}"))
        for i in range(40):
            await outbox.update(f"o-{i}", status="no_answer")
            await outbox.update(f"o-{i}", summary=f"done {i}")
        await outbox.join(timeout=20)
    await sandbox.webhooks_idle()
    for i in range(40):
        events = writes.per_call(f"o-{i}")
        assert events[0][0] == "followup.created"
        assert [e for e, _ in events[1:]] == ["followup.updated"] * (len(events) - 1)
        assert events[-1][1] == "no_answer"
    assert sorted(sandbox.created_per_call_id()[f"o-{i}"] for i in range(40)) == [1] * 40


async def test_status_counts_pending_creates_without_call_id(
    sandbox: Sandbox, client: GetBillClient, store: str
) -> None:
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, store, drain=False) as producer:
        await producer.create(debt_id=debt, type="call")
        await producer.create(debt_id=debt, type="sms")
        await producer.create(**call(debt, "k-1"))
        status = await producer.status()
        assert (status.pending, status.unkeyed) == (3, 2)
    async with Outbox(client, store, poll=0.05) as drainer:
        await drainer.join(timeout=10)
        status = await drainer.status()
        assert (status.done, status.pending, status.unkeyed) == (3, 0, 0)


async def test_a_redis_store_from_before_its_index_counts_creates_without_call_id(
    sandbox: Sandbox, client: GetBillClient, redis_server: RedisServer
) -> None:
    url = redis_server.url.rpartition("/")[0] + "/9"
    with redis.Redis.from_url(url) as conn:
        conn.flushdb()
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, url, name="older", drain=False) as producer:
        await producer.create(debt_id=debt, type="call")
        await producer.create(debt_id=debt, type="email")
    with redis.Redis.from_url(url) as conn:  # as a store written before the index was
        conn.delete("{getbill-outbox:older}:unkeyed")
        conn.hdel("{getbill-outbox:older}:meta", "unkeyed", "indexed")
    async with Outbox(client, url, name="older", drain=False) as again:
        assert (await again.status()).unkeyed == 2


async def test_unknown_debt_is_a_dead_letter_and_the_rest_drain(
    sandbox: Sandbox, client: GetBillClient, store: str
) -> None:
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, store, poll=0.02) as outbox:
        await outbox.create(**call("no-such-debt", "d-bad"))
        await outbox.update("d-bad", status="deal_found")
        for i in range(5):
            await outbox.create(**call(debt, f"d-{i}"))
        await outbox.join(timeout=10)
        status = await outbox.status()
        assert (status.done, status.dead, status.pending) == (5, 1, 0)
        dead = await outbox.dead()
        assert [(d.key, d.op) for d in dead] == [("d-bad", "create")]
        assert dead[0].fields["status"] == "deal_found"  # the update was merged into it
        assert dead[0].status == 422
        assert dead[0].message == "Validation failed"
        assert "debt_id" in dead[0].details
        assert await outbox.requeue("d-bad") == 1
        await outbox.join(timeout=10)
        assert (await outbox.status()).dead == 1  # refused again: still dead, nothing lost
    assert "d-bad" not in sandbox.created_per_call_id()


class NotFoundThenFixed:
    """A small API: POST /followups answers 404 (as a real server may for an unknown debt)
    until ``fixed``, then 201; counts the creates it committed."""

    def __init__(self) -> None:
        self.fixed = False
        self.created: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/followups", self.create)

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        headers = {"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "400"}
        headers |= {"X-RateLimit-Reset": "0", "X-RateLimit-Window": "3600"}
        if not self.fixed:
            answer = {"error": True, "message": "Debt not found", "code": 404}
            return web.json_response(answer, status=404, headers=headers)
        self.created.append(body["call_id"])
        data = {"id": f"f{len(self.created)}", "status": "on_hold", **body}
        answer = {"error": False, "message": "Followup created successfully", "data": data}
        return web.json_response(answer, status=201, headers=headers)


async def test_a_404_is_dead_and_a_requeue_after_the_fix_creates_once(store: str) -> None:
    api = NotFoundThenFixed()
    runner = web.AppRunner(api.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with GetBillClient("t0k", base_url=base, allow_insecure=True) as client:
            async with Outbox(client, store, poll=0.02) as outbox:
                await outbox.create(debt_id="d1", type="call", call_id="nf-1")
                await outbox.join(timeout=10)
                [dead] = await outbox.dead()
                assert (dead.status, dead.message) == (404, "Debt not found")
                api.fixed = True
                assert await outbox.requeue(dead.id) == 1
                await outbox.join(timeout=10)
                assert (await outbox.status()).dead == 0
                assert await outbox.requeue() == 0
    finally:
        await runner.cleanup()
    assert api.created == ["nf-1"]


async def test_backpressure_waits_or_raises_and_drops_nothing(
    sandbox: Sandbox, client: GetBillClient, store: str
) -> None:
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, store, drain=False, max_pending=10, when_full="raise") as full:
        for i in range(10):
            await full.create(**call(debt, f"b-{i}"))
        with pytest.raises(OutboxFullError, match="10 entries pending"):
            await full.create(**call(debt, "b-10"))
    async with Outbox(client, store, drain=False, max_pending=10) as waiting:
        eleventh = asyncio.create_task(waiting.create(**call(debt, "b-10")))
        await asyncio.sleep(0.3)
        assert not eleventh.done()
        async with Outbox(client, store, poll=0.02) as drainer:
            await asyncio.wait_for(eleventh, 10)
            await drainer.join(timeout=10)
    assert sorted(sandbox.created_per_call_id()) == sorted(f"b-{i}" for i in range(11))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"status": "won"}, "status"),
        ({"type": "fax"}, "type"),
        ({"call_date": "yesterday"}, "call_date"),
        ({"call_date": "2024-01-22T10:30:00"}, "call_date"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_enqueued(
    sandbox: Sandbox, client: GetBillClient, store: str, fields: dict[str, object], named: str
) -> None:
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, store, drain=False) as outbox:
        with pytest.raises(ValidationError, match=named) as caught:
            await outbox.create(**{**call(debt, "x-1"), **fields})
        assert caught.value.field == named
        with pytest.raises(ValidationError, match=named):
            await outbox.update("x-1", **fields)
        assert (await outbox.status()).pending == 0


async def test_bad_options_name_the_option(client: GetBillClient, store: str) -> None:
    with pytest.raises(ValidationError, match="when_full: invalid value 'drop'; allowed: wait"):
        Outbox(client, store, when_full="drop")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="max_pending: must be an integer > 0"):
        Outbox(client, store, max_pending=0)
    with pytest.raises(ValidationError, match="lease"):
        Outbox(client, store, lease=-1)


async def test_done_entries_are_pruned_after_retention(
    sandbox: Sandbox, client: GetBillClient, store: str
) -> None:
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, store, poll=0.02, retention=0.2) as outbox:
        await outbox.create(**call(debt, "p-1"))
        await outbox.join(timeout=10)
        assert (await outbox.status()).done == 1
        await asyncio.sleep(0.3)
        assert await outbox._store.prune(time.time() - 0.2) == 1
        assert (await outbox.status()).done == 0
