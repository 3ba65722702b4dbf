"""GetBill's webhooks: check the signature, decode typed events, serve them with aiohttp.

GetBill POSTs ``{"type": "...", "data": {...}, "changes": {...}?}`` to your endpoint with
``X-GetBill-Signature``, the hex HMAC-SHA256 of the raw body under your webhook secret, and
wants a 2xx within 10 seconds. ``WebhookReceiver`` answers at once and runs your callback
afterwards::

    from aiohttp import web
    from getbill_async.webhooks import FollowupCreated, WebhookEvent, webhook_handler

    async def on_event(event: WebhookEvent) -> None:
        if isinstance(event, FollowupCreated):
            print("new followup", event.data.id)

    app = web.Application()
    receiver = WebhookReceiver(secret, on_event)
    app.router.add_post("/getbill/webhooks", receiver.handler)
    app.on_cleanup.append(receiver.on_cleanup)  # waits for callbacks still running

or, in one line, ``app.router.add_post("/getbill/webhooks", webhook_handler(secret, on_event,
app=app))``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import logging
import string
from collections.abc import Awaitable, Callable
from typing import Any, Union, get_args

import msgspec
from aiohttp import web

from .errors import DecodeError
from .models import Debt, Followup

__all__ = [
    "DEFAULT_MAX_BODY",
    "SIGNATURE_HEADER",
    "CompanyCreditsLow",
    "DebtCreated",
    "DebtStatusChanged",
    "DebtUpdated",
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
    "UnknownEvent",
    "WebhookCallback",
    "WebhookEvent",
    "WebhookReceiver",
    "parse_event",
    "verify_signature",
    "webhook_handler",
]

log = logging.getLogger("getbill_async.webhooks")

SIGNATURE_HEADER = "X-GetBill-Signature"
DEFAULT_MAX_BODY = 1 << 20
_HEX = frozenset(string.hexdigits)


def verify_signature(body: bytes, signature: str, secret: str) -> bool:
    """Whether ``signature`` is the hex HMAC-SHA256 of ``body`` under ``secret``.

    Compared in constant time; a ``sha256=`` prefix, surrounding spaces and the case of the
    hex digits are tolerated. An empty, non-hex or wrong-length signature is ``False``.
    """
    if not isinstance(signature, str) or not secret:
        return False
    given = signature.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:].strip()
    if len(given) != 64 or not _HEX.issuperset(given):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.lower())


class _Event(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """Base of the documented events; ``type`` is the event's name (``"followup.created"``)."""

    changes: dict[str, Any] | None = None

    @property
    def type(self) -> str:
        tag = self.__struct_config__.tag
        return tag if isinstance(tag, str) else ""


class _FollowupEvent(_Event):
    data: Followup


class FollowupCreated(_FollowupEvent, tag="followup.created"):
    """A followup was created; ``data`` is the followup."""


class FollowupUpdated(_FollowupEvent, tag="followup.updated"):
    """A followup was updated; ``changes`` holds the fields that changed."""


class FollowupCompleted(_FollowupEvent, tag="followup.completed"):
    """A followup was carried out."""


class FollowupFailed(_FollowupEvent, tag="followup.failed"):
    """A followup failed."""


class _DebtEvent(_Event):
    data: Debt


class DebtCreated(_DebtEvent, tag="debt.created"):
    """A debt was created."""


class DebtUpdated(_DebtEvent, tag="debt.updated"):
    """A debt was updated."""


class DebtStatusChanged(_DebtEvent, tag="debt.status_changed"):
    """A debt's status changed (an open set: companies add their own statuses)."""


# The docs name these events but not their fields: their data stays a dict.
class _DataEvent(_Event):
    data: dict[str, Any]


class PaymentReceived(_DataEvent, tag="payment.received"):
    pass


class PaymentFailed(_DataEvent, tag="payment.failed"):
    pass


class PaymentPlanCreated(_DataEvent, tag="payment_plan.created"):
    pass


class PaymentPlanCompleted(_DataEvent, tag="payment_plan.completed"):
    pass


class PaymentPlanCanceled(_DataEvent, tag="payment_plan.canceled"):
    pass


class CompanyCreditsLow(_DataEvent, tag="company.credits_low"):
    pass


class ReportGenerated(_DataEvent, tag="report.generated"):
    pass


class UnknownEvent(msgspec.Struct, kw_only=True, gc=False):
    """An event type this version of the SDK does not know: its name and raw data."""

    type: str
    data: Any = None
    changes: Any = None


_KnownEvent = Union[  # noqa: UP007 - msgspec needs a runtime Union of the tagged structs
    FollowupCreated,
    FollowupUpdated,
    FollowupCompleted,
    FollowupFailed,
    DebtCreated,
    DebtUpdated,
    DebtStatusChanged,
    PaymentReceived,
    PaymentFailed,
    PaymentPlanCreated,
    PaymentPlanCompleted,
    PaymentPlanCanceled,
    CompanyCreditsLow,
    ReportGenerated,
]
WebhookEvent = Union[_KnownEvent, UnknownEvent]  # noqa: UP007
KNOWN_TYPES: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag) for cls in get_args(_KnownEvent)
)

_known_decoder: msgspec.json.Decoder[_KnownEvent] = msgspec.json.Decoder(_KnownEvent)
_unknown_decoder = msgspec.json.Decoder(UnknownEvent)


def parse_event(body: bytes) -> WebhookEvent:
    """The typed event in a webhook body.

    A documented type decodes to its struct; a type this SDK does not know decodes to
    ``UnknownEvent`` (never an error). A body that is not a JSON object with a string
    ``type``, or a documented event whose data does not fit, raises ``DecodeError``.
    """
    try:
        return _known_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as known_error:
        first = known_error
    try:
        event = _unknown_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        event = None
    if event is not None and event.type not in KNOWN_TYPES:
        return event
    raise DecodeError(f"webhook body is not a documented event ({first})", body=body) from None


WebhookCallback = Callable[[WebhookEvent], Union[Awaitable[None], None]]  # noqa: UP007


class WebhookReceiver:
    """Receives GetBill's webhooks: ``handler`` is the aiohttp.web handler.

    Answers 413 when the body is over ``max_body`` bytes, 401 when the signature is missing
    or wrong, 400 when the body is not an event, else 204 at once; the callback then runs in
    a task the receiver keeps (a plain function runs on the loop too: keep it quick, or hand
    slow work to ``asyncio.to_thread``). A callback that raises is logged on
    ``getbill_async.webhooks``. ``await receiver.aclose()`` (or
    ``app.on_cleanup.append(receiver.on_cleanup)``) waits for the callbacks still running.
    """

    def __init__(
        self, secret: str, callback: WebhookCallback, *, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret is empty")
        if max_body < 1:
            raise ValueError(f"max_body must be >= 1, got {max_body!r}")
        self._secret = secret
        self._callback = callback
        self.max_body = max_body
        self._tasks: set[asyncio.Task[None]] = set()
        self.received = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Callbacks started and not finished yet."""
        return len(self._tasks)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp.web handler: ``app.router.add_post(path, receiver.handler)``."""
        body = await self._read(request)
        if body is None:
            return self._refuse(413, "body too large")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not verify_signature(body, signature, self._secret):
            return self._refuse(401, "missing or invalid signature")
        try:
            event = parse_event(body)
        except DecodeError:
            return self._refuse(400, "not a webhook event")
        self.received += 1
        # Answer first: GetBill wants a 2xx within 10 s whatever the callback does.
        response = web.Response(status=204)
        await response.prepare(request)
        await response.write_eof()
        task = asyncio.get_running_loop().create_task(self._run(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return response

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or None when it is over ``max_body`` (told or found while reading)."""
        length = request.content_length
        if length is not None and length > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.rejected += 1
        log.warning("webhook refused with %d: %s", status, reason)
        return web.json_response({"error": True, "message": reason, "code": status}, status=status)

    async def _run(self, event: WebhookEvent) -> None:
        try:
            result = self._callback(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("webhook callback failed on a %s event", event.type)

    async def aclose(self) -> None:
        """Wait for the callbacks still running (new ones may start until the server stops)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def on_cleanup(self, app: web.Application) -> None:
        """For ``app.on_cleanup``: wait for pending callbacks when the app shuts down."""
        await self.aclose()


def webhook_handler(
    secret: str,
    callback: WebhookCallback,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    app: web.Application | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp.web handler that checks, decodes and acknowledges GetBill's webhooks.

    ``app.router.add_post("/webhooks", webhook_handler(secret, on_event, app=app))``; with
    ``app``, its cleanup waits for the callbacks still running. See ``WebhookReceiver`` for
    what the handler answers and how the callback runs.
    """
    receiver = WebhookReceiver(secret, callback, max_body=max_body)
    if app is not None:
        app.on_cleanup.append(receiver.on_cleanup)
    return receiver.handler
