"""The sandbox's helpers for tests: what it created, served and delivered, and changes to its
data made on the server's side. Real HTTP on loopback, a real webhook receiver."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from getbill_async import GetBillClient, RateLimit
from getbill_async.sandbox import FaultPlan, Sandbox
from tests.loopback import serve


@pytest.mark.timeout(30)
async def test_the_helpers_count_what_was_created_served_and_delivered() -> None:
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve(app) as root, Sandbox(followups=30, seed=4, writes=2, window=60.0) as sb:
        sb.add_webhook(f"{root}/hook")
        debt = sb.debt_ids()[0]
        async with GetBillClient(
            sb.token, base_url=sb.base_url, rate_limit=RateLimit(writes=5, window=60.0)
        ) as client:
            made = await client.followups.create(debt_id=debt, type="call", call_id="a")
            await client.followups.create(debt_id=debt, type="sms")
            await client.followups.list(limit=5)
        # A third write over plain HTTP: the server's window (2) is spent, whatever a
        # client's own budget would allow.
        headers = {"Authorization": f"Bearer {sb.token}"}
        body = {"debt_id": debt, "type": "call", "call_id": "b"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{sb.base_url}/followups", json=body, headers=headers) as resp:
                assert resp.status == 429
        changed = sb.change_followup(made.id, status="deal_found", mood="calm")
        await sb.webhooks_idle()
        assert [f["id"] for f in sb.created_followups(call_id="a")] == [made.id]
        assert [f["type"] for f in sb.created_followups()] == ["call", "sms"]
        assert sb.created_followups()[0]["mood"] == "calm" == changed["mood"]
        assert sb.followup(made.id) == changed
        assert (sb.requests_made("write"), sb.requests_made("read"), sb.requests_made()) == (
            3,
            1,
            4,
        )
        assert (sb.answered(201), sb.answered(200), sb.answered(429)) == (2, 1, 1)
        assert sb.limits() == {"reads": 1000, "writes": 2, "window": 60.0}
        events = [d.event for d in sb.delivered_webhooks()]
        assert events == ["followup.created", "followup.created", "followup.updated"]
        assert len(sb.delivered_webhooks("followup.updated")) == len(received) - 2 == 1


async def test_bad_helper_input_names_the_field_and_allowed_values() -> None:
    async with Sandbox(followups=5, faults=FaultPlan()) as sb:
        some = sb.followup_ids()[0]
        with pytest.raises(ValueError, match=r"cls: invalid value 'get'; allowed: 'read'"):
            sb.requests_made("get")
        with pytest.raises(ValueError, match=r"status: invalid value 'done'; allowed: \("):
            sb.change_followup(some, status="done")
        with pytest.raises(ValueError, match="debt_id, id cannot change"):
            sb.change_followup(some, id="x", debt_id="y")
        with pytest.raises(ValueError, match="unknown followup_id 'nope'"):
            sb.change_followup("nope", notes="x")
        assert sb.requests_made() == 0
