"""``WebhookReceiver``: the aiohttp handler that checks, decodes and runs each delivery (see
the package docstring)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Union

from aiohttp import web

from ..errors import DecodeError
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
    UnknownEvent,
    WebhookEvent,
    parse_event,
    verify_signature,
)
from ._support import DuplicateFilter, _settle, _Slots

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
    "UnknownEvent",
    "WebhookCallback",
    "WebhookEvent",
    "WebhookReceiver",
    "parse_event",
    "verify_signature",
    "webhook_handler",
]

log = logging.getLogger("getbill_async.webhooks")

DEFAULT_MAX_BODY = 1 << 20
DEFAULT_DEADLINE = 8.0
DEFAULT_MAX_CONCURRENT = 64
_ACKNOWLEDGE = ("before", "after")

WebhookCallback = Callable[[WebhookEvent], Union[Awaitable[None], None]]  # noqa: UP007


class WebhookReceiver:
    """Receives GetBill's webhooks: ``handler`` is the aiohttp.web handler.

    Answers 413 when the body is over ``max_body`` bytes, 401 when the signature is missing
    or wrong, 400 when the body is not an event, 204 for a body the ``duplicates`` filter
    has seen handled. Otherwise, with ``acknowledge="before"`` (the default), 204 at once and
    the callback runs afterwards in a task the receiver keeps (its exceptions are logged on
    ``getbill_async.webhooks``); with ``"after"``, the callback runs first and the answer is
    204 when it returned within ``deadline`` seconds of the request's arrival, 500 when it
    raised, 503 when the deadline passed (it is then cancelled): a retrying sender sends the
    event again, and only a success is remembered as handled. A copy that arrives while the
    first is still running waits for its outcome instead of running the callback twice.

    At most ``max_concurrent`` callbacks run at once; a request that finds no free slot
    within the deadline is answered 503 with ``Retry-After``. A plain (non-async) callback
    runs on the loop and cannot be interrupted: keep it quick, or use ``asyncio.to_thread``.
    ``await receiver.aclose()`` (or ``app.on_cleanup.append(receiver.on_cleanup)``) waits for
    the callbacks still running.
    """

    def __init__(
        self,
        secret: str,
        callback: WebhookCallback,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        acknowledge: Literal["before", "after"] = "before",
        deadline: float = DEFAULT_DEADLINE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        duplicates: DuplicateFilter | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret is empty")
        if max_body < 1:
            raise ValueError(f"max_body must be >= 1, got {max_body!r}")
        if acknowledge not in _ACKNOWLEDGE:
            raise ValueError(f"acknowledge must be 'before' or 'after', got {acknowledge!r}")
        if not 0 < deadline <= 3600:
            raise ValueError(f"deadline must be in (0, 3600] seconds, got {deadline!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent!r}")
        self._secret = secret
        self._callback = callback
        self.max_body = max_body
        self.acknowledge = acknowledge
        self.deadline = deadline
        self.duplicates = duplicates
        self._slots = _Slots(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}
        self._running = 0
        self.received = 0
        self.rejected = 0
        self.repeated = 0
        self.failed = 0
        self.busy = 0

    @property
    def pending(self) -> int:
        """Callbacks started and not finished yet."""
        return self._running

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp.web handler: ``app.router.add_post(path, receiver.handler)``."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.deadline
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
        if self.duplicates is None:
            return await self._handle(request, event, due, None)
        digest = self.duplicates.digest(body)
        if digest in self.duplicates:
            return self._repeated(event)
        first = self._inflight.get(digest)
        if first is not None:
            return await self._follow(first, event, due)
        outcome: asyncio.Future[bool] = loop.create_future()
        self._inflight[digest] = outcome
        try:
            return await self._handle(request, event, due, digest)
        finally:
            del self._inflight[digest]
            _settle(outcome, False)

    async def _handle(
        self, request: web.Request, event: WebhookEvent, due: float, digest: bytes | None
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        if not await self._slots.take(due - loop.time()):
            self.busy += 1
            log.warning("webhook %s answered 503: %d callbacks busy", event.type, self._running)
            return self._failure(503, "busy, send again later")
        if self.acknowledge == "before":
            self._succeeded(digest)
            # The task owns the slot from here, even if the sender hangs up before the 204.
            task = loop.create_task(self._run_and_release(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            # Answer first: GetBill wants a 2xx within 10 s whatever the callback does.
            response = web.Response(status=204)
            await response.prepare(request)
            await response.write_eof()
            return response
        try:
            await asyncio.wait_for(self._call(event), max(due - loop.time(), 0.0))
        except asyncio.TimeoutError:
            self.failed += 1
            log.warning("webhook callback on a %s event passed its deadline", event.type)
            return self._failure(503, "callback passed its deadline")
        except Exception:
            self.failed += 1
            log.exception("webhook callback failed on a %s event", event.type)
            return self._failure(500, "callback failed")
        finally:
            self._slots.release()
        self._succeeded(digest)
        return web.Response(status=204)

    async def _follow(
        self, first: asyncio.Future[bool], event: WebhookEvent, due: float
    ) -> web.StreamResponse:
        """A copy of an event still being handled: answer with the first one's outcome."""
        timeout = max(due - asyncio.get_running_loop().time(), 0.0)
        try:
            ok = await asyncio.wait_for(asyncio.shield(first), timeout)
        except asyncio.TimeoutError:
            ok = False
        if ok:
            return self._repeated(event)
        return self._failure(503, "the same event is being handled, send again later")

    def _succeeded(self, digest: bytes | None) -> None:
        if digest is not None:
            assert self.duplicates is not None
            self.duplicates.add(digest)
            _settle(self._inflight[digest], True)

    def _repeated(self, event: WebhookEvent) -> web.Response:
        self.repeated += 1
        log.info("webhook %s answered 204 without a callback: already handled", event.type)
        return web.Response(status=204)

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
        return _error(status, reason)

    def _failure(self, status: int, reason: str) -> web.Response:
        response = _error(status, reason)
        if status == 503:
            response.headers["Retry-After"] = "1"
        return response

    async def _call(self, event: WebhookEvent) -> None:
        self._running += 1
        try:
            result = self._callback(event)
            if inspect.isawaitable(result):
                await result
        finally:
            self._running -= 1

    async def _run_and_release(self, event: WebhookEvent) -> None:
        try:
            await self._call(event)
        except Exception:
            self.failed += 1
            log.exception("webhook callback failed on a %s event", event.type)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        """Wait for the callbacks still running (new ones may start until the server stops)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def on_cleanup(self, app: web.Application) -> None:
        """For ``app.on_cleanup``: wait for pending callbacks when the app shuts down."""
        await self.aclose()


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": True, "message": reason, "code": status}, status=status)


def webhook_handler(
    secret: str,
    callback: WebhookCallback,
    *,
    app: web.Application | None = None,
    **options: Any,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp.web handler that checks, decodes and acknowledges GetBill's webhooks.

    ``app.router.add_post("/webhooks", webhook_handler(secret, on_event, app=app))``; with
    ``app``, its cleanup waits for the callbacks still running. ``options`` are
    ``WebhookReceiver``'s (``max_body``, ``acknowledge``, ``deadline``, ``max_concurrent``,
    ``duplicates``), and its docstring tells what the handler answers and how the callback runs.
    """
    receiver = WebhookReceiver(secret, callback, **options)
    if app is not None:
        app.on_cleanup.append(receiver.on_cleanup)
    return receiver.handler
