"""What the drainer makes of each answer: an unexpected 4xx (409, 410, 413 ...) is a dead
letter with the status and the API's message, at once (it is an answer, not a fault); 408, 425
and 429 are retried; an unavailable write budget is not an attempt.

The API here is a small aiohttp.web app on loopback that answers each create with a status the
test chooses, then 201.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from getbill_async import GetBillClient, Outbox, RateLimit, RedisBudget, RetryPolicy
from getbill_async.sandbox import Sandbox
from tests.redis_fixtures import RedisServer

pytestmark = pytest.mark.timeout(30)


def _limits() -> dict[str, str]:
    reset = str(int(time.time()) + 3600)
    return {"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "400", "X-RateLimit-Reset": reset}


class Answers:
    """POST /followups answers ``first`` (a list of statuses) in turn, then 201, but always
    ``refuse`` to a create whose ``call_id`` is ``refused``; records the creates it committed,
    by ``call_id``."""

    def __init__(self, first: list[int], refuse: int = 0, refused: str = "") -> None:
        self.first = list(first)
        self.refuse, self.refused = refuse, refused
        self.created: list[str | None] = []
        self.seen = 0
        self.app = web.Application()
        self.app.router.add_post("/followups", self.create)

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen += 1
        if self.first or (self.refuse and body.get("call_id") == self.refused):
            status = self.first.pop(0) if self.first else self.refuse
            headers = _limits()
            if status == 429:
                headers |= {"Retry-After": "0"}
            answer = {"error": True, "message": f"refused with {status}", "code": status}
            return web.json_response(answer, status=status, headers=headers)
        self.created.append(body.get("call_id"))
        data = {"id": f"f{len(self.created)}", "status": "on_hold", **body}
        answer = {"error": False, "message": "Followup created successfully", "data": data}
        return web.json_response(answer, status=201, headers=_limits())


async def serve(api: Answers | Updates) -> AsyncIterator[str]:
    runner = web.AppRunner(api.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def client_of(base: str) -> GetBillClient:
    retry = RetryPolicy(max_tries=1, base=0.01, cap=0.02)
    return GetBillClient("t0k", base_url=base, allow_insecure=True, retry=retry, timeout=5)


@pytest.mark.parametrize("status", [409, 410, 413, 418, 451])
async def test_an_unexpected_4xx_is_a_dead_letter_with_its_status_and_message(
    tmp_path: Path, status: int
) -> None:
    api = Answers([], refuse=status, refused="c-1")
    async for base in serve(api):
        async with client_of(base) as client, Outbox(client, tmp_path / "o.db", poll=0.02) as box:
            await box.create(debt_id="d1", type="call", call_id="c-1")
            await box.create(debt_id="d1", type="call", call_id="c-2")
            await box.join(timeout=5)
            [dead] = await box.dead()
            assert (dead.key, dead.state, dead.status) == ("c-1", "dead", status)
            assert dead.message == f"refused with {status}"
    assert api.created == ["c-2"]


@pytest.mark.parametrize("status", [408, 425, 429])
async def test_408_425_and_429_are_retried(tmp_path: Path, status: int) -> None:
    api = Answers([status, status])
    async for base in serve(api):
        async with client_of(base) as client, Outbox(client, tmp_path / "o.db", poll=0.02) as box:
            await box.create(debt_id="d1", type="call", call_id="r-1")
            await box.join(timeout=10)
            assert (await box.status()).dead == 0
    assert api.created == ["r-1"]


@pytest.mark.timeout(40)
async def test_an_unavailable_budget_is_not_an_attempt(tmp_path: Path) -> None:
    server = RedisServer()  # down for now: the shared write budget cannot be reached
    budget = RedisBudget(server.url, f"ob-{uuid.uuid4().hex[:8]}", RateLimit(), timeout=0.2)
    try:
        async with Sandbox(followups=20) as sb:
            client = GetBillClient(sb.token, base_url=sb.base_url, rate_limit=budget)
            async with client, Outbox(client, tmp_path / "o.db", poll=0.02, give_up_after=2) as box:
                await box.create(debt_id=sb.debt_ids()[0], type="call", call_id="bu-1")
                await asyncio.sleep(2.0)  # claimed again and again, never sent
                status = await box.status()
                assert (status.dead, status.pending + status.in_flight) == (0, 1)
                server.start()
                await box.join(timeout=20)
                assert (await box.status()).done == 1
            assert sb.created_per_call_id() == {"bu-1": 1}
    finally:
        await budget.aclose()
        server.close()


class Updates:
    """PUT /followups/{id}: refuses the first update (422), applies the rest to one record."""

    def __init__(self) -> None:
        self.record: dict[str, object] = {"id": "f1", "debt_id": "d1", "type": "call"}
        self.record |= {"status": "in_progress"}
        self.puts = 0
        self.app = web.Application()
        self.app.router.add_put("/followups/{id}", self.update)

    async def update(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.puts += 1
        if self.puts == 1:
            answer = {"error": True, "message": "Validation failed", "code": 422}
            return web.json_response(answer, status=422, headers=_limits())
        self.record |= body
        answer = {"error": False, "message": "Followup updated", "data": self.record}
        return web.json_response(answer, status=200, headers=_limits())


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "o.db")
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url.rpartition("/")[0] + "/8"


async def test_a_requeued_update_does_not_undo_the_later_ones(store: str) -> None:
    api = Updates()
    name = f"rq-{uuid.uuid4().hex[:8]}"
    async for base in serve(api):
        async with client_of(base) as client, Outbox(client, store, name=name, poll=0.02) as box:
            await box.update("f1", status="no_answer", summary="first call")
            await box.join(timeout=5)
            assert [d.status for d in await box.dead()] == [422]
            await box.update("f1", status="deal_found")
            await box.join(timeout=5)
            assert await box.requeue() == 1
            await box.join(timeout=5)
            assert await box.dead() == []
    assert (api.record["status"], api.record["summary"]) == ("deal_found", "first call")
