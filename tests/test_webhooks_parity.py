"""One table of webhook cases, run through both adapters: aiohttp.web and ASGI under uvicorn.

Each case posts real HTTP on loopback and expects the same statuses and the same events
delivered, whichever adapter serves the receiver. Also here: the item-20 defects (a body a
middleware already read, signed events that do not decode) and ``decode_event``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import msgspec
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from getbill_async.errors import DecodeError
from getbill_async.webhooks import (
    SIGNATURE_HEADER,
    DebtCreated,
    DuplicateFilter,
    FollowupCreated,
    PaymentReceived,
    UndecodedEvent,
    UnknownEvent,
    WebhookEvent,
    WebhookReceiver,
    decode_event,
    make_asgi_app,
    parse_event,
)

from .asgi_server import serve_asgi
from .loopback import serve

SECRET = "whsec_parity_0123"
Adapter = Literal["aiohttp", "asgi"]
ADAPTERS: tuple[Adapter, ...] = ("aiohttp", "asgi")
FOLLOWUP = {"id": "f1", "debt_id": "d1", "status": "delivered", "type": "call"}


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event(kind: str, data: Any) -> bytes:
    return msgspec.json.encode({"type": kind, "data": data})


CREATED = event("followup.created", FOLLOWUP)
DURATION_AS_TEXT = event("followup.created", {**FOLLOWUP, "duration_ms": "180000"})
AMOUNT_AS_TEXT = event("debt.created", {"id": "d1", "status": "open", "amount": "12.50"})
UNKNOWN = event("invoice.sent", {"id": "inv_1"})
PAYMENT = event("payment.received", {"amount": 5})


@dataclass(frozen=True)
class Post:
    """One request: ``signature`` "good" signs the body, None sends no header."""

    body: bytes
    signature: str | None = "good"
    method: str = "POST"
    chunked: bool = False


@dataclass(frozen=True)
class Case:
    id: str
    posts: tuple[Post, ...]
    statuses: tuple[int, ...]
    delivered: tuple[type[Any], ...]  # the classes of the events the callback saw, in order
    options: tuple[tuple[str, Any], ...] = ()
    callback: Literal["ok", "fail once", "hang"] = "ok"


AFTER = (("acknowledge", "after"),)
CASES = (
    Case("typed event", (Post(CREATED),), (204,), (FollowupCreated,)),
    Case("typed event, acknowledged after", (Post(CREATED),), (204,), (FollowupCreated,), AFTER),
    Case(
        "acknowledged before the callback ends",
        (Post(CREATED),),
        (204,),
        (FollowupCreated,),
        callback="hang",
    ),
    Case("sha256= prefix", (Post(CREATED, "sha256=" + sign(CREATED)),), (204,), (FollowupCreated,)),
    Case("unknown type", (Post(UNKNOWN),), (204,), (UnknownEvent,)),
    Case("duration_ms as text", (Post(DURATION_AS_TEXT),), (204,), (UndecodedEvent,)),
    Case("amount as text, after", (Post(AMOUNT_AS_TEXT),), (204,), (UndecodedEvent,), AFTER),
    Case("signed non-JSON", (Post(b"not json"),), (204,), (UndecodedEvent,)),
    Case("signed JSON array", (Post(b"[1]"),), (204,), (UndecodedEvent,)),
    Case("no signature", (Post(CREATED, None),), (401,), ()),
    Case("not hex", (Post(CREATED, "deadbeef"),), (401,), ()),
    Case("another body's signature", (Post(CREATED, sign(UNKNOWN)),), (401,), ()),
    Case("another secret", (Post(CREATED, sign(CREATED, "whsec_other")),), (401,), ()),
    Case("over max_body", (Post(b"x" * 5000),), (413,), (), (("max_body", 4096),)),
    Case(
        "chunked over max_body",
        (Post(b"x" * 10_000, chunked=True),),
        (413,),
        (),
        (("max_body", 4096),),
    ),
    Case("GET", (Post(CREATED, method="GET"),), (405,), ()),
    Case(
        "callback fails, after: 500, the retry is handled",
        (Post(PAYMENT), Post(PAYMENT), Post(PAYMENT)),
        (500, 204, 204),
        (PaymentReceived, PaymentReceived),
        (*AFTER, ("duplicates", "filter")),
        "fail once",
    ),
    Case(
        "undecoded and the callback fails, after: 500, never 4xx",
        (Post(DURATION_AS_TEXT),),
        (500,),
        (UndecodedEvent,),
        AFTER,
        "fail once",
    ),
    Case(
        "callback past the deadline, after: 503",
        (Post(CREATED),),
        (503,),
        (FollowupCreated,),
        (*AFTER, ("deadline", 0.2)),
        "hang",
    ),
    Case(
        "no free slot before the deadline: 503",
        (Post(CREATED), Post(UNKNOWN)),
        (204, 503),
        (FollowupCreated,),
        (("max_concurrent", 1), ("deadline", 0.2)),
        "hang",
    ),
    Case(
        "duplicates run the callback once",
        (Post(CREATED), Post(CREATED)),
        (204, 204),
        (FollowupCreated,),
        (("duplicates", "filter"),),
    ),
)


class Callback:
    """Records each event it sees; can fail once, or hang until the test ends."""

    def __init__(self, behaviour: str) -> None:
        self.seen: list[WebhookEvent] = []
        self.fail = behaviour == "fail once"
        self.hang = behaviour == "hang"
        self.gate = asyncio.Event()

    async def __call__(self, event: WebhookEvent) -> None:
        self.seen.append(event)
        if self.hang:
            await self.gate.wait()
        if self.fail:
            self.fail = False
            raise RuntimeError("the ledger's database is down")


@asynccontextmanager
async def served(adapter: Adapter, receiver: WebhookReceiver) -> AsyncIterator[str]:
    """The receiver's endpoint URL; leaving the block waits for its callbacks."""
    if adapter == "aiohttp":
        app = web.Application()
        app.router.add_post("/hooks", receiver.handler)
        app.on_cleanup.append(receiver.on_cleanup)
        async with serve(app) as root:
            yield root + "/hooks"
    else:
        async with serve_asgi(make_asgi_app(receiver)) as root:
            yield root + "/hooks"


async def send(http: aiohttp.ClientSession, url: str, post: Post) -> int:
    headers = {}
    if post.signature is not None:
        headers[SIGNATURE_HEADER] = sign(post.body) if post.signature == "good" else post.signature

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(post.body), 1000):
            yield post.body[start : start + 1000]

    data = chunks() if post.chunked else post.body
    async with http.request(post.method, url, data=data, headers=headers) as resp:
        await resp.read()
        if resp.status == 503:
            assert resp.headers["Retry-After"] == "1"
        if resp.status == 405:
            assert resp.headers["Allow"] == "POST"
        return resp.status


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_both_adapters_answer_alike(adapter: Adapter, case: Case) -> None:
    callback = Callback(case.callback)
    options = dict(case.options)
    if options.get("duplicates") == "filter":
        options["duplicates"] = DuplicateFilter()
    receiver = WebhookReceiver(SECRET, callback, **options)
    async with served(adapter, receiver) as url:
        async with aiohttp.ClientSession() as http:
            statuses = tuple([await send(http, url, post) for post in case.posts])
        callback.gate.set()
    assert statuses == case.statuses
    assert tuple(type(e) for e in callback.seen) == case.delivered
    assert receiver.pending == 0
    assert receiver.rejected == sum(400 <= s < 500 and s != 405 for s in statuses)


# issue 19, item 20: a signed event is never lost ---------------------------------------------


async def test_a_body_that_a_middleware_read_first_is_still_checked() -> None:
    seen: list[WebhookEvent] = []

    @web.middleware
    async def reads_the_body(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        await request.read()  # as a logging or auditing middleware does
        return await handler(request)

    receiver = WebhookReceiver(SECRET, seen.append, max_body=4096)
    app = web.Application(middlewares=[reads_the_body])
    app.router.add_post("/hooks", receiver.handler)
    app.on_cleanup.append(receiver.on_cleanup)
    async with serve(app) as root, aiohttp.ClientSession() as http:
        url = root + "/hooks"
        assert await send(http, url, Post(CREATED)) == 204
        assert await send(http, url, Post(CREATED, sign(UNKNOWN))) == 401
        assert await send(http, url, Post(b"x" * 5000, chunked=True)) == 413
    assert [type(e) for e in seen] == [FollowupCreated]
    assert (receiver.received, receiver.rejected) == (1, 2)


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_signed_events_that_do_not_decode_arrive_with_their_raw_data(
    adapter: Adapter,
) -> None:
    seen: list[WebhookEvent] = []
    receiver = WebhookReceiver(SECRET, seen.append, acknowledge="after")
    async with served(adapter, receiver) as url, aiohttp.ClientSession() as http:
        for body in (DURATION_AS_TEXT, AMOUNT_AS_TEXT):
            assert await send(http, url, Post(body)) == 204
    duration, amount = seen
    assert isinstance(duration, UndecodedEvent) and isinstance(amount, UndecodedEvent)
    assert duration.type == "followup.created" and duration.data["duration_ms"] == "180000"
    assert duration.error.endswith("at `$.data.duration_ms`")
    assert duration.body == DURATION_AS_TEXT and duration.changes is None
    assert amount.type == "debt.created" and amount.data["amount"] == "12.50"
    assert "`$.data.amount`" in amount.error
    assert (receiver.received, receiver.undecoded, receiver.rejected) == (2, 2, 0)


def test_decode_event_is_parse_event_without_the_error() -> None:
    for body in (CREATED, UNKNOWN, event("debt.created", {"id": "d1", "amount": 12.5})):
        assert decode_event(body) == parse_event(body)
    assert isinstance(decode_event(event("debt.created", {"id": "d1"})), DebtCreated)


@pytest.mark.parametrize(
    ("body", "kind", "data", "error"),
    [
        (DURATION_AS_TEXT, "followup.created", {**FOLLOWUP, "duration_ms": "180000"}, "Expected"),
        (b'{"type":"debt.created","data":"nope"}', "debt.created", "nope", "Expected `object`"),
        (b'{"type":7,"data":[1]}', "", [1], "Expected `str`, got `int` - at `$.type`"),
        (b'{"data":{"a":1}}', "", {"a": 1}, "missing required field `type`"),
        (b"[1]", "", None, "Expected `object`, got `array`"),
        (b"not json", "", None, "malformed"),
        (b"", "", None, "truncated"),
        (b'{"type":"x","data":' + b"[" * 5000 + b"]" * 5000 + b"}", "", None, "recursion"),
    ],
)
def test_what_parse_event_refuses_decode_event_keeps(
    body: bytes, kind: str, data: Any, error: str
) -> None:
    undecoded = decode_event(body)
    assert isinstance(undecoded, UndecodedEvent)
    assert (undecoded.type, undecoded.data, undecoded.body) == (kind, data, body)
    assert error in undecoded.error


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=4,
)
kinds = st.sampled_from(["followup.created", "debt.created", "payment.received", "x.y", ""])
bodies = (
    st.binary(max_size=64)
    | st.builds(lambda k, d: msgspec.json.encode({"type": k, "data": d}), kinds, json_values)
    | st.builds(
        lambda k, d: msgspec.json.encode({"type": k, "data": {**FOLLOWUP, **d}}),
        kinds,
        st.dictionaries(st.sampled_from(list(FOLLOWUP) + ["duration_ms"]), json_values),
    )
)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(body=bodies)
def test_decode_event_never_raises_and_keeps_what_it_cannot_decode(body: bytes) -> None:
    event = decode_event(body)
    assert isinstance(event.type, str)
    try:
        assert parse_event(body) == event
    except DecodeError:
        assert isinstance(event, UndecodedEvent) and event.body == body and event.error
