"""Webhooks: signatures, typed events, the aiohttp handler, and the sandbox's deliveries."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from getbill_async import DecodeError, Followup, GetBillClient
from getbill_async.sandbox import Sandbox
from getbill_async.sandbox._cli import add_arguments
from getbill_async.webhooks import (
    SIGNATURE_HEADER,
    DebtStatusChanged,
    FollowupCompleted,
    FollowupCreated,
    FollowupFailed,
    FollowupUpdated,
    PaymentReceived,
    ReportGenerated,
    UnknownEvent,
    WebhookEvent,
    WebhookReceiver,
    parse_event,
    verify_signature,
    webhook_handler,
)

from .loopback import serve

SECRET = "whsec_test_0123"
FOLLOWUP = {
    "id": "f1",
    "debt_id": "d1",
    "status": "delivered",
    "type": "sms",
    "call_date": "2024-01-22T10:30:00+00:00",
    "a_field_from_the_future": True,
}


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(kind: str, data: Any, changes: Any = None) -> bytes:
    payload: dict[str, Any] = {"type": kind, "data": data}
    if changes is not None:
        payload["changes"] = changes
    return msgspec.json.encode(payload)


# verify_signature ----------------------------------------------------------------------------


def test_signature_accepts_the_documented_form_and_its_variants() -> None:
    body = b'{"type":"followup.created"}'
    good = sign(body)
    assert verify_signature(body, good, SECRET)
    assert verify_signature(body, f"sha256={good}", SECRET)
    assert verify_signature(body, f"  SHA256={good.upper()} ", SECRET)


@pytest.mark.parametrize(
    "signature",
    ["", " ", "sha256=", "zz" * 32, "abc", "0" * 64, "0" * 65, "é" * 64, "sha256=\x00"],
)
def test_signature_refuses_anything_else(signature: str) -> None:
    assert verify_signature(b"{}", signature, SECRET) is False


def test_signature_depends_on_body_and_secret() -> None:
    body = b'{"a":1}'
    assert not verify_signature(body + b" ", sign(body), SECRET)
    assert not verify_signature(body, sign(body, "other"), SECRET)
    assert not verify_signature(body, sign(body, ""), "")


# parse_event -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("followup.created", FollowupCreated),
        ("followup.updated", FollowupUpdated),
        ("followup.completed", FollowupCompleted),
        ("followup.failed", FollowupFailed),
    ],
)
def test_followup_events_carry_a_followup(kind: str, cls: type[Any]) -> None:
    event = parse_event(event_body(kind, FOLLOWUP, {"status": "delivered"}))
    assert type(event) is cls and event.type == kind
    assert isinstance(event.data, Followup) and event.data.id == "f1"
    assert event.data.call_date is not None and event.data.call_date.tzinfo is not None
    assert event.changes == {"status": "delivered"}


def test_debt_events_carry_a_debt() -> None:
    data = {"id": "d1", "status": "my_custom_status", "amount": 10, "due_date": "2024-02-01"}
    event = parse_event(event_body("debt.status_changed", data, {"status": ["a", "b"]}))
    assert isinstance(event, DebtStatusChanged)
    assert event.data.status == "my_custom_status" and event.data.amount == 10.0
    assert event.type == "debt.status_changed"


def test_events_without_documented_fields_keep_a_dict() -> None:
    event = parse_event(event_body("payment.received", {"amount": 5, "x": [1]}))
    assert isinstance(event, PaymentReceived) and event.data == {"amount": 5, "x": [1]}
    assert isinstance(parse_event(event_body("report.generated", {})), ReportGenerated)


def test_an_unknown_type_is_an_unknown_event_never_an_error() -> None:
    event = parse_event(b'{"type":"invoice.sent","data":[1,{"a":null}],"extra":1}')
    assert event == UnknownEvent(type="invoice.sent", data=[1, {"a": None}])
    assert parse_event(b'{"type":"x"}') == UnknownEvent(type="x")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "truncated"),
        (b"not json", "malformed"),
        (b"[]", "Expected `object`"),
        (b'{"data":{}}', "missing required field `type`"),
        (b'{"type":7}', "Expected `str`"),
        (b'{"type":"followup.created","data":{"id":"f"}}', "missing required field"),
        (b'{"type":"debt.created","data":"nope"}', "Expected `object`"),
        (b'{"type":"x","data":' + b"[" * 5000 + b"]" * 5000 + b"}", ""),
    ],
)
def test_malformed_bodies_raise_decode_error(body: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=f"webhook body is not a documented event.*{why}"):
        parse_event(body)


# the handler -------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def slow(self, event: WebhookEvent) -> None:
        self.started.set()
        await self.release.wait()
        self.events.append(event)


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[str, WebhookReceiver, Recorder]]:
    recorder = Recorder()
    receiver = WebhookReceiver(SECRET, recorder.slow, max_body=4096)
    app = web.Application()
    app.router.add_post("/hooks", receiver.handler)
    app.on_cleanup.append(receiver.on_cleanup)
    async with serve(app) as root:
        yield root + "/hooks", receiver, recorder
        recorder.release.set()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=headers or {}) as resp:
            await resp.read()
            return resp.status


async def test_handler_answers_before_the_callback_runs(
    receiver_url: tuple[str, WebhookReceiver, Recorder],
) -> None:
    url, receiver, recorder = receiver_url
    body = event_body("followup.created", FOLLOWUP)
    # The callback blocks until released: the 2xx must come anyway.
    status = await asyncio.wait_for(post(url, body, {SIGNATURE_HEADER: sign(body)}), 5)
    assert status == 204
    await asyncio.wait_for(recorder.started.wait(), 5)
    assert receiver.pending == 1 and recorder.events == []
    recorder.release.set()
    await receiver.aclose()
    assert receiver.pending == 0
    assert isinstance(recorder.events[0], FollowupCreated)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, b'{"type":"x"}', 401),
        ({SIGNATURE_HEADER: "deadbeef"}, b'{"type":"x"}', 401),
        ({SIGNATURE_HEADER: sign(b'{"type":"y"}')}, b'{"type":"x"}', 401),
        ({SIGNATURE_HEADER: sign(b"x" * 5000)}, b"x" * 5000, 413),
    ],
)
async def test_handler_refuses(
    receiver_url: tuple[str, WebhookReceiver, Recorder],
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    url, receiver, recorder = receiver_url
    assert await post(url, body, headers) == status
    assert receiver.pending == 0 and receiver.received == 0 and receiver.rejected == 1


async def test_handler_caps_a_chunked_body_without_content_length(
    receiver_url: tuple[str, WebhookReceiver, Recorder],
) -> None:
    url, receiver, _ = receiver_url
    body = b"x" * 10_000

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=chunks(), headers={SIGNATURE_HEADER: sign(body)}) as resp:
            assert resp.status == 413
            assert "Content-Length" not in resp.request_info.headers
    assert receiver.received == 0


async def test_sync_callbacks_run_and_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def callback(event: WebhookEvent) -> None:
        seen.append(event.type)
        if event.type == "boom":
            raise RuntimeError("callback exploded")

    receiver = WebhookReceiver(SECRET, callback)
    app = web.Application()
    app.router.add_post("/", receiver.handler)
    caplog.set_level(logging.ERROR, logger="getbill_async.webhooks")
    async with serve(app) as root:
        for kind in ("boom", "fine"):
            body = event_body(kind, {})
            assert await post(root + "/", body, {SIGNATURE_HEADER: sign(body)}) == 204
        await receiver.aclose()
    assert seen == ["boom", "fine"]
    failed = [r for r in caplog.records if r.name == "getbill_async.webhooks"]
    assert len(failed) == 1 and "callback failed on a boom event" in failed[0].getMessage()
    assert failed[0].exc_info is not None


def test_receiver_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="secret must not be empty"):
        WebhookReceiver("", print)
    with pytest.raises(ValueError, match="max_body"):
        WebhookReceiver("s", print, max_body=0)


# the sandbox sends them ------------------------------------------------------------------------


async def test_sandbox_delivers_signed_events_for_creates_and_updates() -> None:
    events: list[WebhookEvent] = []
    app = web.Application()
    app.router.add_post("/hooks", webhook_handler(SECRET, events.append, app=app))
    async with serve(app) as root:
        async with Sandbox(followups=100, seed=3, webhook_url=root + "/hooks") as sb:
            sb.add_webhook(root + "/hooks", SECRET)
            sb.add_webhook(root + "/nowhere", SECRET)  # answered 404: a failed delivery
            async with GetBillClient(sb.token, base_url=sb.base_url) as client:
                created = await client.followups.create(
                    debt_id=sb.debt_ids()[0], type="call", call_id="c-1"
                )
                updated = await client.followups.update(created.id, status="deal_found")
            await sb.webhooks_idle()
            deliveries = sb.webhook_deliveries
            stats = sb.stats
    # The first endpoint used the default secret: refused with 401, like the 404 one.
    assert [(d.event, d.status) for d in deliveries] == [
        ("followup.created", 401),
        ("followup.created", 204),
        ("followup.created", 404),
        ("followup.updated", 401),
        ("followup.updated", 204),
        ("followup.updated", 404),
    ]
    assert stats.webhooks_delivered == 2 and stats.webhooks_failed == 4
    first, second = events
    assert isinstance(first, FollowupCreated) and first.changes is None
    assert first.data.id == created.id and first.data.call_id == "c-1"
    assert isinstance(second, FollowupUpdated)
    assert second.data == updated and second.changes == {"status": "deal_found"}


async def test_a_slow_endpoint_never_delays_the_api() -> None:
    gate = asyncio.Event()

    async def stalled(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/", stalled)
    async with serve(app) as root:
        async with Sandbox(followups=50, seed=3, webhook_url=root + "/") as sb:
            async with GetBillClient(sb.token, base_url=sb.base_url) as client:
                debt = sb.debt_ids()[0]
                for _ in range(3):
                    await asyncio.wait_for(client.followups.create(debt_id=debt, type="sms"), 2)
            assert sb.webhook_deliveries == []
            gate.set()
            await sb.webhooks_idle()
            assert [d.ok for d in sb.webhook_deliveries] == [True, True, True]


async def test_unreachable_endpoint_is_a_counted_failure() -> None:
    async with serve(web.Application()) as root:
        dead = root  # the server stops when the block ends: nothing listens afterwards
    async with Sandbox(followups=20, seed=3, webhook_url=dead + "/hooks") as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            await client.followups.create(debt_id=sb.debt_ids()[0], type="sms")
        await sb.webhooks_idle()
        assert sb.stats.webhooks_failed == 1
        assert sb.webhook_deliveries[0].error == "ClientConnectorError"


def test_sandbox_cli_takes_webhook_options() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--webhook-url", "http://127.0.0.1:9/h", "--webhook-secret", "s"])
    assert (args.webhook_url, args.webhook_secret) == ("http://127.0.0.1:9/h", "s")
    assert parser.parse_args([]).webhook_url is None


@pytest.mark.timeout(60)
async def test_webhook_service_example_runs_the_whole_loop() -> None:
    examples = Path(__file__).resolve().parents[1] / "examples"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(examples / "webhook_service.py"),
        cwd=examples,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "6 events received, 6 delivered" in out.decode()
    assert "changed: status, summary" in out.decode()
