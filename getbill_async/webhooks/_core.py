"""The webhook receiver's core: everything that does not depend on the web framework.

An adapter (the aiohttp handler, the ASGI app) reads the body with the ``max_body`` cap and
the signature header, calls ``_receive(body, signature)``, writes the ``_Reply`` it gets, and
then calls ``reply.begin()``, in a ``finally``, so a callback acknowledged before it runs
starts only once its 2xx is on its way, and always starts, even when the sender has hung up.
Invariants, whichever adapter serves the request:

- a body over ``max_body`` is 413 and a missing or wrong signature 401, before any decoding;
- a correctly signed body is never answered 4xx: it reaches the callback as its typed event,
  an ``UnknownEvent`` or an ``UndecodedEvent`` (see ``decode_event``);
- at most ``max_concurrent`` callbacks run at once, and every answer is due ``deadline``
  seconds after the request arrived.

Public through ``getbill_async.webhooks`` (``WebhookReceiver`` is this class with adapters).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Union

import msgspec

from ._events import UndecodedEvent, WebhookEvent, _checked_keys, _signed_by, decode_event
from ._marks import Marks, MarksUnavailable
from ._support import DuplicateFilter, _Slots

log = logging.getLogger("getbill_async.webhooks")

DEFAULT_MAX_BODY = 1 << 20
DEFAULT_DEADLINE = 8.0
DEFAULT_MAX_CONCURRENT = 64
_ACKNOWLEDGE = ("before", "after")
_LEASE_MARGIN = 5.0

WebhookCallback = Callable[[WebhookEvent], Union[Awaitable[None], None]]  # noqa: UP007


@dataclass(frozen=True)
class _Reply:
    """What to answer: a status, an error message (None: no body), and what starts after."""

    status: int
    message: str | None = None
    then: Callable[[], None] | None = None

    @property
    def body(self) -> bytes:
        if self.message is None:
            return b""
        envelope = {"error": True, "message": self.message, "code": self.status}
        return msgspec.json.encode(envelope)

    @property
    def headers(self) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json")] if self.message is not None else []
        if self.status == 503:
            headers.append(("Retry-After", "1"))
        return headers

    def begin(self) -> None:
        """Start what waits for the answer (a callback acknowledged before it runs)."""
        if self.then is not None:
            self.then()


_NO_CONTENT = _Reply(204)


class _ReceiverCore:
    """Checks, decodes, filters and dispatches one webhook body, whatever serves it."""

    def __init__(
        self,
        secret: str | Sequence[str],
        callback: WebhookCallback,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        acknowledge: Literal["before", "after"] = "before",
        deadline: float = DEFAULT_DEADLINE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        duplicates: DuplicateFilter | None = None,
    ) -> None:
        keys = _checked_keys(secret)
        if max_body < 1:
            raise ValueError(f"max_body must be >= 1, got {max_body!r}")
        if acknowledge not in _ACKNOWLEDGE:
            raise ValueError(f"acknowledge must be 'before' or 'after', got {acknowledge!r}")
        if not 0 < deadline <= 3600:
            raise ValueError(f"deadline must be in (0, 3600] seconds, got {deadline!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent!r}")
        self._keys = keys
        self._callback = callback
        self.max_body = max_body
        self.acknowledge = acknowledge
        self.deadline = deadline
        self.duplicates = duplicates
        self._slots = _Slots(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0
        self.received = 0
        self.rejected = 0
        self.repeated = 0
        self.failed = 0
        self.busy = 0
        self.undecoded = 0
        self.previous_secret = 0

    def __repr__(self) -> str:
        # Never the secret: the settings and the counters only.
        return (
            f"<{type(self).__name__} acknowledge={self.acknowledge!r} "
            f"received={self.received} pending={self._running}>"
        )

    @property
    def pending(self) -> int:
        """Callbacks started and not finished yet."""
        return self._running

    async def _receive(self, body: bytes | None, signature: str) -> _Reply:
        """The answer to one POST: ``body`` is None when it was over ``max_body``."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.deadline
        if body is None:
            return self._refuse(413, "body too large")
        key = _signed_by(body, signature, self._keys)
        if key is None:
            return self._refuse(401, "missing or invalid signature")
        if key > 0:
            self.previous_secret += 1
        event = decode_event(body)
        self.received += 1
        if isinstance(event, UndecodedEvent):
            self.undecoded += 1
            log.warning("webhook %r delivered undecoded: %s", event.type, event.error)
        if self.duplicates is None:
            return await self._dispatch(event, due)
        return await self._once(self.duplicates, body, event, due)

    async def _once(
        self, duplicates: DuplicateFilter, body: bytes, event: WebhookEvent, due: float
    ) -> _Reply:
        """Dispatch an event the filter has not seen handled, once, across its copies."""
        loop = asyncio.get_running_loop()
        marks = duplicates._marks
        digest = duplicates.digest(body)
        try:
            # The claim outlives the answer's deadline by a margin, and no more: a worker
            # that dies while it holds one lets the event go soon after.
            state = await marks.claim(digest, due - loop.time() + _LEASE_MARGIN)
            if state == "running":
                handled = await marks.outcome(digest, due - loop.time())
        except MarksUnavailable as exc:
            log.warning(
                "webhook %s answered 503: duplicate filter unavailable: %s", event.type, exc
            )
            return _Reply(503, "duplicate filter unavailable, send again later")
        if state == "done":
            return self._repeated(event)
        if state == "running":
            if handled:
                return self._repeated(event)
            return _Reply(503, "the same event is being handled, send again later")
        try:
            reply = await self._dispatch(event, due)
        except BaseException:
            await self._release(marks, digest)
            raise
        if reply.status >= 300:
            await self._release(marks, digest)  # not handled: a copy may run it
            return reply
        try:
            await marks.finish(digest)
        except MarksUnavailable as exc:
            # Handled (or, acknowledged before, about to be): a copy may run it again once
            # the claim expires. Nothing better is possible without Redis.
            log.error("webhook %s handled but not marked as handled: %s", event.type, exc)
        except BaseException:
            reply.begin()  # cancelled: a callback acknowledged before still starts
            raise
        return reply

    async def _release(self, marks: Marks, digest: bytes) -> None:
        try:
            await marks.release(digest)
        except MarksUnavailable as exc:
            log.warning("webhook claim not released (it expires on its own): %s", exc)

    async def _dispatch(self, event: WebhookEvent, due: float) -> _Reply:
        loop = asyncio.get_running_loop()
        if not await self._slots.take(due - loop.time()):
            self.busy += 1
            log.warning("webhook %s answered 503: %d callbacks busy", event.type, self._running)
            return _Reply(503, "busy, send again later")
        if self.acknowledge == "before":
            # Answer first: GetBill wants a 2xx within 10 s whatever the callback does. The
            # slot is the task's from here; the adapter starts it once the 204 is written.
            return _Reply(204, then=lambda: self._start(event))
        try:
            await asyncio.wait_for(self._call(event), max(due - loop.time(), 0.0))
        except asyncio.TimeoutError:
            self.failed += 1
            log.warning("webhook callback on a %s event passed its deadline", event.type)
            return _Reply(503, "callback passed its deadline")
        except Exception:
            self.failed += 1
            log.exception("webhook callback failed on a %s event", event.type)
            return _Reply(500, "callback failed")
        finally:
            self._slots.release()
        return _NO_CONTENT

    def _repeated(self, event: WebhookEvent) -> _Reply:
        self.repeated += 1
        log.info("webhook %s answered 204 without a callback: already handled", event.type)
        return _NO_CONTENT

    def _refuse(self, status: int, reason: str) -> _Reply:
        self.rejected += 1
        log.warning("webhook refused with %d: %s", status, reason)
        return _Reply(status, reason)

    def _start(self, event: WebhookEvent) -> None:
        task = asyncio.get_running_loop().create_task(self._run_and_release(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        """Wait for the callbacks still running (new ones may start until the server stops),
        then close the duplicate filter's Redis connections, if any."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.duplicates is not None:
            await self.duplicates.aclose()
