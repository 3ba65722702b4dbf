"""Webhooks that cannot lose an event: acknowledge-after, deadline, concurrency bound, duplicates.

Every test posts real HTTP to a receiver served on loopback, as a retrying sender would.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from getbill_async.webhooks import (
    SIGNATURE_HEADER,
    DuplicateFilter,
    PaymentReceived,
    WebhookEvent,
    WebhookReceiver,
)

from .helpers import FakeClock
from .loopback import serve

SECRET = "whsec_ack_test"


def payment(n: int) -> bytes:
    return msgspec.json.encode({"type": "payment.received", "data": {"amount": n}})


def signed(body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


@asynccontextmanager
async def receiving(receiver: WebhookReceiver) -> AsyncIterator[aiohttp.ClientSession]:
    """The receiver on loopback, and a session whose relative URLs reach it."""
    app = web.Application()
    app.router.add_post("/hooks", receiver.handler)
    app.on_cleanup.append(receiver.on_cleanup)
    async with serve(app) as root:
        async with aiohttp.ClientSession(base_url=root) as http:
            yield http


async def deliver(http: aiohttp.ClientSession, body: bytes) -> tuple[int, dict[str, Any]]:
    async with http.post("/hooks", data=body, headers=signed(body)) as resp:
        text = await resp.read()
        answer = msgspec.json.decode(text) if text else {}
        if resp.status == 503:
            assert resp.headers["Retry-After"] == "1"
        return resp.status, answer


class Ledger:
    """A callback that records payments, fails while told to, and can be held at a gate."""

    def __init__(self, failures: int = 0) -> None:
        self.amounts: list[int] = []
        self.failures = failures
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.peak = 0
        self.cancelled = 0

    async def settled_at(self, running: int) -> None:
        """Wait until ``running`` callbacks are in, and a moment more for any extra one."""
        while self.running < running:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)

    async def __call__(self, event: WebhookEvent) -> None:
        assert isinstance(event, PaymentReceived)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gate.wait()
            if self.failures:
                self.failures -= 1
                raise RuntimeError("the ledger's database is down")
            self.amounts.append(event.data["amount"])
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def test_a_failing_callback_gets_a_5xx_and_the_redelivery_is_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = Ledger(failures=1)
    receiver = WebhookReceiver(SECRET, ledger, acknowledge="after", duplicates=DuplicateFilter())
    caplog.set_level(logging.ERROR, logger="getbill_async.webhooks")
    async with receiving(receiver) as http:
        assert await deliver(http, payment(7)) == (
            500,
            {"error": True, "message": "callback failed", "code": 500},
        )
        assert ledger.amounts == [] and receiver.failed == 1
        # The failure was not remembered as handled: the sender's retry runs the callback.
        assert (await deliver(http, payment(7)))[0] == 204
        assert (await deliver(http, payment(7)))[0] == 204
    assert ledger.amounts == [7]
    assert (receiver.received, receiver.repeated, receiver.failed) == (3, 1, 1)
    assert "callback failed on a payment.received event" in caplog.records[0].getMessage()


async def test_a_callback_past_the_deadline_is_cancelled_and_answered_503() -> None:
    ledger = Ledger()
    ledger.gate.clear()
    receiver = WebhookReceiver(SECRET, ledger, acknowledge="after", deadline=0.3)
    async with receiving(receiver) as http:
        started = asyncio.get_running_loop().time()
        status, answer = await deliver(http, payment(1))
        waited = asyncio.get_running_loop().time() - started
        assert status == 503 and answer["message"] == "callback passed its deadline"
        assert 0.3 <= waited < 5
        assert ledger.cancelled == 1 and ledger.running == 0 and receiver.pending == 0
        ledger.gate.set()
        assert (await deliver(http, payment(1)))[0] == 204
    assert ledger.amounts == [1] and receiver.failed == 1


async def test_acknowledge_after_runs_at_most_max_concurrent_callbacks() -> None:
    ledger = Ledger()
    ledger.gate.clear()
    receiver = WebhookReceiver(SECRET, ledger, acknowledge="after", max_concurrent=2)
    async with receiving(receiver) as http:
        sent = [asyncio.ensure_future(deliver(http, payment(n))) for n in (1, 2, 3)]
        await ledger.settled_at(2)
        # The third waits for a slot (within its deadline), not for a 503.
        assert ledger.running == 2 and not any(task.done() for task in sent)
        ledger.gate.set()
        assert [s for s, _ in await asyncio.gather(*sent)] == [204, 204, 204]
    assert sorted(ledger.amounts) == [1, 2, 3] and ledger.peak == 2


async def test_acknowledge_before_answers_503_when_no_slot_frees_in_time() -> None:
    ledger = Ledger()
    ledger.gate.clear()
    receiver = WebhookReceiver(SECRET, ledger, max_concurrent=2, deadline=0.3)
    async with receiving(receiver) as http:
        assert [(await deliver(http, payment(n)))[0] for n in (1, 2)] == [204, 204]
        # Both slots are held by callbacks already acknowledged: the third cannot start.
        status, answer = await deliver(http, payment(3))
        assert (status, answer["message"]) == (503, "busy, send again later")
        queued = asyncio.ensure_future(deliver(http, payment(4)))
        await asyncio.sleep(0.05)
        ledger.gate.set()
        assert (await queued)[0] == 204
        await receiver.aclose()
    assert sorted(ledger.amounts) == [1, 2, 4] and ledger.peak == 2 and receiver.busy == 1


async def test_duplicates_run_the_callback_once() -> None:
    ledger = Ledger()
    ledger.gate.clear()
    receiver = WebhookReceiver(SECRET, ledger, acknowledge="after", duplicates=DuplicateFilter())
    async with receiving(receiver) as http:
        # Two copies at once: the second waits for the first's outcome.
        both = [asyncio.ensure_future(deliver(http, payment(5))) for _ in range(2)]
        await ledger.settled_at(1)
        assert ledger.running == 1
        ledger.gate.set()
        assert [s for s, _ in await asyncio.gather(*both)] == [204, 204]
        assert (await deliver(http, payment(5)))[0] == 204  # a later copy
        assert (await deliver(http, payment(6)))[0] == 204  # another event
    assert ledger.amounts == [5, 6]
    assert (receiver.received, receiver.repeated) == (4, 2)
    assert receiver.duplicates is not None and len(receiver.duplicates) == 2


async def test_a_copy_of_a_failing_event_is_answered_5xx_too() -> None:
    ledger = Ledger(failures=1)
    ledger.gate.clear()
    receiver = WebhookReceiver(SECRET, ledger, acknowledge="after", duplicates=DuplicateFilter())
    async with receiving(receiver) as http:
        both = [asyncio.ensure_future(deliver(http, payment(8))) for _ in range(2)]
        await ledger.settled_at(1)
        ledger.gate.set()
        assert sorted(s for s, _ in await asyncio.gather(*both)) == [500, 503]
        assert (await deliver(http, payment(8)))[0] == 204
    assert ledger.amounts == [8]


async def test_acknowledge_before_remembers_the_event_when_it_answers() -> None:
    ledger = Ledger(failures=1)
    receiver = WebhookReceiver(SECRET, ledger, duplicates=DuplicateFilter())
    async with receiving(receiver) as http:
        assert (await deliver(http, payment(9)))[0] == 204
        await receiver.aclose()
        # Acknowledged, then failed: the sender will not resend, and a copy is a duplicate.
        assert (await deliver(http, payment(9)))[0] == 204
    assert ledger.amounts == [] and receiver.failed == 1 and receiver.repeated == 1


def test_duplicate_filter_forgets_after_ttl_and_stays_bounded() -> None:
    clock = FakeClock()
    seen = DuplicateFilter(ttl=60, max_entries=3, clock=clock.now)
    a, b, c, d = (DuplicateFilter.digest(payment(n)) for n in range(4))
    seen.add(a)
    clock.t += 30
    seen.add(b)
    assert a in seen and b in seen and len(seen) == 2
    clock.t += 30
    assert a not in seen and b in seen
    seen.add(c)
    seen.add(d)
    seen.add(a)
    assert len(seen) == 3 and b not in seen  # the oldest went first
    assert DuplicateFilter.digest(b"x") == hashlib.sha256(b"x").digest()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"acknowledge": "later"}, "acknowledge must be 'before' or 'after', got 'later'"),
        ({"deadline": 0}, r"deadline must be in \(0, 3600\] seconds, got 0"),
        ({"max_concurrent": 0}, "max_concurrent must be >= 1, got 0"),
    ],
)
def test_receiver_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookReceiver(SECRET, print, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"ttl": 0}, "ttl must be > 0 seconds, got 0"), ({"max_entries": 0}, "max_entries")],
)
def test_duplicate_filter_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DuplicateFilter(**options)
