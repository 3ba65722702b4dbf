"""GetBill's webhooks: check the signature, decode typed events, serve them (aiohttp or ASGI).

GetBill POSTs ``{"type": "...", "data": {...}, "changes": {...}?}`` to your endpoint with
``X-GetBill-Signature``, the hex HMAC-SHA256 of the raw body under your webhook secret, and
wants a 2xx within 10 seconds::

    from aiohttp import web
    from getbill_async.webhooks import (
        DuplicateFilter, PaymentReceived, WebhookEvent, WebhookReceiver)

    async def on_event(event: WebhookEvent) -> None:
        if isinstance(event, PaymentReceived):
            await ledger.record(event.data)        # raise, and the sender gets a 5xx

    receiver = WebhookReceiver(secret, on_event, acknowledge="after",
                               duplicates=DuplicateFilter(ttl=86_400))
    app = web.Application()
    app.router.add_post("/getbill/webhooks", receiver.handler)
    app.on_cleanup.append(receiver.on_cleanup)  # waits for callbacks still running

The same receiver is an ASGI application, for FastAPI, Starlette or Litestar::

    api = FastAPI(lifespan=receiver.lifespan)   # shutdown waits for callbacks still running
    api.mount("/getbill/webhooks", receiver.asgi)  # the URL for GetBill ends with a slash

A correctly signed body is never answered 4xx: one that does not decode as a documented event
reaches the callback as an ``UndecodedEvent`` (its raw parts, and why), so no signed event is
lost to a decoding rule. The aiohttp handler and the ASGI app are two thin adapters over one
core (``_core``): they answer alike, and share the counters and duplicate filter.

``secret`` may be several while it is rotated (the current one first): any one verifies.
``DuplicateFilter()`` remembers handled events per process; ``DuplicateFilter(redis=url)``
shares them through Redis, so one event runs once across workers and restarts.

``acknowledge="before"`` (the default) answers 204 at once and runs the callback afterwards:
quick, but an event whose callback fails, or whose process dies, is gone. ``"after"`` answers
2xx only when the callback succeeded within ``deadline`` (8 s, under GetBill's 10 s) and 5xx
otherwise, so a sender that retries delivers the event again.
"""

from ._asgi import WebhookAsgiApp
from ._core import DEFAULT_DEADLINE, DEFAULT_MAX_BODY, DEFAULT_MAX_CONCURRENT, WebhookCallback
from ._events import (
    KNOWN_TYPES,
    SIGNATURE_HEADER,
    CompanyCreditsLow,
    DebtCreated,
    DebtStatusChanged,
    DebtUpdated,
    FollowupCompleted,
    FollowupCreated,
    FollowupFailed,
    FollowupUpdated,
    PaymentFailed,
    PaymentPlanCanceled,
    PaymentPlanCompleted,
    PaymentPlanCreated,
    PaymentReceived,
    ReportGenerated,
    UndecodedEvent,
    UnknownEvent,
    WebhookEvent,
    decode_event,
    parse_event,
    verify_signature,
)
from ._receiver import WebhookReceiver, make_asgi_app, webhook_handler
from ._support import DuplicateFilter

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CONCURRENT",
    "KNOWN_TYPES",
    "SIGNATURE_HEADER",
    "CompanyCreditsLow",
    "DebtCreated",
    "DebtStatusChanged",
    "DebtUpdated",
    "DuplicateFilter",
    "FollowupCompleted",
    "FollowupCreated",
    "FollowupFailed",
    "FollowupUpdated",
    "PaymentFailed",
    "PaymentPlanCanceled",
    "PaymentPlanCompleted",
    "PaymentPlanCreated",
    "PaymentReceived",
    "ReportGenerated",
    "UndecodedEvent",
    "UnknownEvent",
    "WebhookAsgiApp",
    "WebhookCallback",
    "WebhookEvent",
    "WebhookReceiver",
    "decode_event",
    "make_asgi_app",
    "parse_event",
    "verify_signature",
    "webhook_handler",
]
