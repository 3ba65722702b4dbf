"""The webhook receiver as an ASGI app: under uvicorn, in FastAPI and Starlette, its lifespan.

A real uvicorn server on loopback receives the sandbox's signed events; a FastAPI app that
mounts the receiver is called through httpx's ASGI transport; a Starlette app with the
receiver's lifespan helper shows that a shutdown waits for the callbacks still running.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import msgspec
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from getbill_async import GetBillClient
from getbill_async.sandbox import Sandbox
from getbill_async.webhooks import (
    SIGNATURE_HEADER,
    DuplicateFilter,
    FollowupCreated,
    FollowupUpdated,
    UndecodedEvent,
    WebhookEvent,
    WebhookReceiver,
    make_asgi_app,
)

from .asgi_server import serve_asgi

SECRET = "whsec_asgi_0123"
FOLLOWUP = {"id": "f1", "debt_id": "d1", "status": "delivered", "type": "call"}
CREATED = msgspec.json.encode({"type": "followup.created", "data": FOLLOWUP})


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {SIGNATURE_HEADER: hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


class Slow:
    """A callback that takes ``seconds`` and then records the event."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.done: list[WebhookEvent] = []

    async def __call__(self, event: WebhookEvent) -> None:
        await asyncio.sleep(self.seconds)
        self.done.append(event)


# uvicorn and the sandbox's sender ----------------------------------------------------------


async def test_uvicorn_receives_the_sandbox_signed_events() -> None:
    events: list[WebhookEvent] = []
    receiver = WebhookReceiver(
        SECRET, events.append, acknowledge="after", duplicates=DuplicateFilter()
    )
    async with serve_asgi(receiver.asgi) as root:
        url = root + "/getbill/webhooks"
        async with Sandbox(followups=50, seed=3, webhook_url=url, webhook_secret=SECRET) as sb:
            sb.add_webhook(url, "whsec_not_ours")  # signed with another secret: 401
            async with GetBillClient(sb.token, base_url=sb.base_url) as client:
                created = await client.followups.create(
                    debt_id=sb.debt_ids()[0], type="call", call_id="asgi-1"
                )
                updated = await client.followups.update(created.id, status="deal_found")
            await sb.webhooks_idle()
            deliveries = [(d.event, d.status) for d in sb.webhook_deliveries]
    assert deliveries == [
        ("followup.created", 204),
        ("followup.created", 401),
        ("followup.updated", 204),
        ("followup.updated", 401),
    ]
    first, second = events
    assert isinstance(first, FollowupCreated) and first.data.call_id == "asgi-1"
    assert isinstance(second, FollowupUpdated) and second.data == updated
    assert second.changes == {"status": "deal_found"}
    assert (receiver.received, receiver.rejected, receiver.failed) == (2, 2, 0)


async def test_a_failing_callback_answers_the_sandbox_a_5xx() -> None:
    def fails(event: WebhookEvent) -> None:
        raise RuntimeError("the ledger's database is down")

    receiver = WebhookReceiver(SECRET, fails, acknowledge="after")
    async with serve_asgi(receiver.asgi) as root:
        url = root + "/hooks"
        async with Sandbox(followups=20, seed=3, webhook_url=url, webhook_secret=SECRET) as sb:
            async with GetBillClient(sb.token, base_url=sb.base_url) as client:
                await client.followups.create(debt_id=sb.debt_ids()[0], type="sms")
            await sb.webhooks_idle()
            assert [d.status for d in sb.webhook_deliveries] == [500]
            assert sb.stats.webhooks_failed == 1
    assert (receiver.received, receiver.failed) == (1, 1)


async def test_uvicorn_shutdown_waits_for_the_callbacks_still_running() -> None:
    slow = Slow(0.3)
    receiver = WebhookReceiver(SECRET, slow)
    async with serve_asgi(make_asgi_app(receiver)) as root:
        async with aiohttp.ClientSession() as http:
            async with http.post(root + "/", data=CREATED, headers=signed(CREATED)) as resp:
                assert resp.status == 204
        assert slow.done == [] and receiver.pending == 1
    # uvicorn's lifespan.shutdown reached the app: it waited for the callback.
    assert len(slow.done) == 1 and receiver.pending == 0


# FastAPI through httpx's ASGI transport ----------------------------------------------------


async def test_fastapi_mount_answers_like_the_receiver() -> None:
    events: list[WebhookEvent] = []
    receiver = WebhookReceiver(SECRET, events.append, acknowledge="after", max_body=4096)
    api = FastAPI(lifespan=receiver.lifespan)
    api.mount("/getbill/webhooks", receiver.asgi)
    api.router.routes.append(Route("/exact/webhooks", receiver.asgi, methods=["POST"]))
    duration = msgspec.json.encode(
        {"type": "followup.created", "data": {**FOLLOWUP, "duration_ms": "180000"}}
    )
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://getbill.test") as http:
        mounted = "/getbill/webhooks/"
        answers = [
            await http.post(mounted, content=CREATED, headers=signed(CREATED)),
            await http.post("/exact/webhooks", content=CREATED, headers=signed(CREATED)),
            await http.post(mounted, content=duration, headers=signed(duration)),
            await http.post(mounted, content=CREATED, headers=signed(CREATED, "other")),
            await http.post(mounted, content=b"x" * 5000, headers=signed(b"x" * 5000)),
            await http.get(mounted),
        ]
    assert [a.status_code for a in answers] == [204, 204, 204, 401, 413, 405]
    assert answers[3].json() == {
        "error": True,
        "message": "missing or invalid signature",
        "code": 401,
    }
    assert answers[5].headers["Allow"] == "POST"
    assert [type(e) for e in events] == [FollowupCreated, FollowupCreated, UndecodedEvent]


async def test_fastapi_lifespan_helper_waits_for_running_callbacks() -> None:
    slow = Slow(0.2)
    receiver = WebhookReceiver(SECRET, slow)
    api = FastAPI(lifespan=receiver.lifespan)
    api.mount("/getbill/webhooks", receiver.asgi)
    transport = httpx.ASGITransport(app=api)
    async with api.router.lifespan_context(api):
        async with httpx.AsyncClient(transport=transport, base_url="http://getbill.test") as http:
            answer = await http.post("/getbill/webhooks/", content=CREATED, headers=signed(CREATED))
            assert answer.status_code == 204 and slow.done == []
    assert len(slow.done) == 1 and receiver.pending == 0


# Starlette under uvicorn -------------------------------------------------------------------


async def test_starlette_mount_under_uvicorn_waits_for_callbacks_on_shutdown() -> None:
    slow = Slow(0.3)
    receiver = WebhookReceiver(SECRET, slow)
    app = Starlette(
        routes=[Mount("/getbill/webhooks", app=receiver.asgi)], lifespan=receiver.lifespan
    )
    async with serve_asgi(app) as root:
        url = root + "/getbill/webhooks/"
        async with Sandbox(followups=20, seed=3, webhook_url=url, webhook_secret=SECRET) as sb:
            async with GetBillClient(sb.token, base_url=sb.base_url) as client:
                await client.followups.create(debt_id=sb.debt_ids()[0], type="sms")
            await sb.webhooks_idle()
            assert [d.status for d in sb.webhook_deliveries] == [204]
        assert slow.done == []
    assert [type(e) for e in slow.done] == [FollowupCreated]


# the ASGI protocol itself ------------------------------------------------------------------


async def test_other_scopes_are_closed_or_refused() -> None:
    receiver = WebhookReceiver(SECRET, print)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await receiver.asgi({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    with pytest.raises(ValueError, match="scope type must be 'http', 'lifespan' or 'websocket'"):
        await receiver.asgi({"type": "telepathy"}, receive, send)
    assert make_asgi_app(receiver) is receiver.asgi
    with pytest.raises(TypeError, match="receiver must be a WebhookReceiver, got str"):
        make_asgi_app("nope")  # type: ignore[arg-type]
    assert SECRET not in repr(receiver.asgi) and SECRET not in repr(receiver)


BLOCKER = """
import sys

class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fastapi", "starlette", "uvicorn", "httpx", "anyio"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _Blocker())
"""

PROBE = """
import asyncio, json, sys
import getbill_async
from getbill_async.webhooks import WebhookReceiver, make_asgi_app

sent = []
async def main():
    app = make_asgi_app(WebhookReceiver("s", print))
    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}
    async def send(message):
        sent.append(message.get("status"))
    await app({"type": "http", "method": "POST", "headers": []}, receive, send)
asyncio.run(main())
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"fastapi", "starlette", "uvicorn"})
print(json.dumps({"sent": sent, "loaded": loaded}))
"""


@pytest.mark.timeout(60)
def test_the_asgi_app_needs_no_framework(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"sent": [401, None], "loaded": []}
